"""Model folders: tensors in safetensors files and everything else in ``config.json`` (loading runs no code)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file

FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def _version() -> str:
    from . import __version__

    return __version__


def save_folder(
    path: str | Path, files: dict[str, dict[str, torch.Tensor]], config, history: list[dict], overwrite: bool
) -> Path:
    """Write ``{file name: tensors}`` and ``config.json`` into a folder beside ``path``, then move it into place."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name, tensors in files.items():
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(state, tmp / name, metadata={"format": "pixnet", "format_version": str(FORMAT_VERSION)})
    record = {
        "format_version": FORMAT_VERSION,
        "pixnet_version": _version(),
        "config": asdict(config),
        "history": history,
    }
    (tmp / CONFIG).write_text(json.dumps(record, indent=2))
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    return path


def read_record(path: str | Path, files: list[str], method: str | None = None) -> dict:
    """``config.json`` of a saved model, after checking its files, format version and (if given) method."""
    path = Path(path)
    missing = [name for name in [CONFIG, *files] if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a saved pixnet model (needs {', '.join([CONFIG, *files])}).")
    record = json.loads((path / CONFIG).read_text())
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved by pixnet {record.get('pixnet_version', '?')} in model format {version}; this "
            f"pixnet ({_version()}) reads format {FORMAT_VERSION}. Load it with that version or train again."
        )
    saved = record["config"].get("method", "pixnet")
    if method is not None and saved != method:
        raise ValueError(f"{path} holds a {saved!r} model; load it with pixnet.model.load_model.")
    return record
