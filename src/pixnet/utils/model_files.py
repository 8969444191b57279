"""Model folders: tensors in safetensors files and everything else in ``config.json`` (loading runs no code).

A model folder is untrusted input: ``config.json`` is checked field by field, each file against the hash
recorded at save, and the tensor shapes in the safetensors headers against the network the config describes,
all before anything of the config's size is allocated.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..pp import NORMALIZATIONS
from .atomic import folder_lock, needs_recovery, recover_folder, replace_folder, resolve_target, staging_folder
from .version import VERSION

FORMAT_VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def save_folder(
    path: str | Path,
    files: dict[str, dict[str, torch.Tensor]],
    config,
    history: list[dict],
    overwrite: bool,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``{file name: tensors}`` and ``config.json`` beside ``path``, then swap the folder in.

    ``extra(folder)`` writes further files into the new folder before it is swapped in (training checkpoints
    keep their trainer state there, so that weights and state are one unit). A kill at any moment leaves the
    old folder or the new one (see :mod:`pixnet.utils.atomic`).
    """
    path = resolve_target(path)
    with folder_lock(path):
        recover_folder(path)
        check_model_target(path, overwrite)
        try:
            _write_and_swap(path, files, config, history, extra)
        except BaseException:
            with contextlib.suppress(Exception):  # finish a swap already journaled, else drop the staging
                recover_folder(path)
            raise
    return path


def check_model_target(path: str | Path, overwrite: bool) -> None:
    """Refuse to save a model over an existing path, unless ``overwrite`` and the path is a pixnet model folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) to replace it.")
    if path.exists() and not is_model_folder(path):
        raise FileExistsError(
            f"{path} exists and is not a pixnet model folder (it has no {CONFIG} written by pixnet): pixnet "
            "replaces only its own model folders, even with overwrite=True. Choose another folder, or remove "
            "this one yourself."
        )


def is_model_folder(path: Path) -> bool:
    """Whether ``path`` is an empty folder or one that pixnet saved a model into (what ``overwrite`` may replace)."""
    if not path.is_dir() or path.is_symlink():
        return False
    if not any(path.iterdir()):
        return True
    try:
        record = json.loads((path / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and "format_version" in record and isinstance(record.get("config"), dict)


def _write_and_swap(path: Path, files, config, history, extra) -> None:
    staged = staging_folder(path)
    hashes = {}
    for name, tensors in files.items():
        state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        save_file(state, staged / name, metadata={"format": "pixnet", "format_version": str(FORMAT_VERSION)})
        hashes[name] = _sha256(staged / name)
    record = {
        "format_version": FORMAT_VERSION,
        "pixnet_version": VERSION,
        "config": asdict(config),
        "files": hashes,
        "history": history,
    }
    (staged / CONFIG).write_text(json.dumps(record, indent=2))
    if extra is not None:
        extra(staged)
    replace_folder(staged, path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(path: str | Path, files: list[str], method: str | None = None) -> dict:
    """``config.json`` of a saved model, after checking its files, hashes, format version and (if given) method."""
    path = resolve_target(path)
    if not path.exists() and needs_recovery(path):  # a save was interrupted while swapping: finish it
        with folder_lock(path):
            recover_folder(path)
    missing = [name for name in [CONFIG, *files] if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a saved pixnet model (needs {', '.join([CONFIG, *files])}).")
    try:
        record = json.loads((path / CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path / CONFIG} is not valid JSON ({error}); the model folder is damaged.") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        raise ValueError(f"{path / CONFIG} has no 'config' object; it is not a pixnet model file.")
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} was saved by pixnet {record.get('pixnet_version', '?')} in model format {version}; this "
            f"pixnet ({VERSION}) reads format {FORMAT_VERSION}. Load it with that version or train again."
        )
    saved = record["config"].get("method", "pixnet")
    if method is not None and saved != method:
        raise ValueError(f"{path} holds a {saved!r} model; load it with pixnet.models.load_model.")
    for name, expected in (record.get("files") or {}).items():  # models saved before hashes have none
        if name in files and _sha256(path / name) != expected:
            raise ValueError(
                f"{path / name} does not match the hash recorded in {CONFIG} at save: the file was modified or "
                "damaged. Save the model again."
            )
    check_config(record["config"], path / CONFIG)
    check_history(record.get("history", []), path / CONFIG)
    return record


# name: (accepted types, check of the value, what it must be)
_FIELDS = {
    "genes": (
        list,
        lambda v: len(v) > 0 and all(isinstance(g, str) for g in v) and len(set(v)) == len(v),
        "a non-empty list of unique gene names",
    ),
    "microns_per_pixel": ((int, float), lambda v: 0.1 <= v <= 50, "a pixel size between 0.1 and 50 µm"),
    "patch_size": (int, lambda v: 32 <= v <= 4096, "an integer between 32 and 4096"),
    "decoder_width": (int, lambda v: 1 <= v <= 8192, "an integer between 1 and 8192"),
    "decoder_norm": (str, lambda v: v in ("channel", "batch"), "'channel' or 'batch'"),
    "embedding_dim": (int, lambda v: 0 <= v <= 8192, "an integer between 0 and 8192"),
    "output_stride": (int, lambda v: v in (1, 2, 4), "1, 2 or 4"),
    "n_models": (int, lambda v: 1 <= v <= 64, "an integer between 1 and 64"),
    "pixel_skip": (int, lambda v: 0 <= v <= 1024, "an integer between 0 and 1024"),
    "map_units": (str, lambda v: v in ("normalized", "counts"), "'normalized' or 'counts'"),
    "k": (int, lambda v: 1 <= v <= 10_000, "an integer between 1 and 10000"),
    "map_stride": (int, lambda v: 1 <= v <= 4096, "an integer between 1 and 4096"),
    "reference_area_px": ((int, float), lambda v: math.isfinite(v) and v > 0, "a positive number"),
    "encoder": (
        dict,
        lambda v: (
            isinstance(v.get("name"), str)
            and all(_finite_triple(v.get(k, (0.5, 0.5, 0.5))) for k in ("mean", "std"))
            and min(v.get("std", (0.5,))) > 0
        ),
        "an encoder record with a 'name' and three finite 'mean' values and three positive 'std' values",
    ),
    "normalization": (
        dict,
        lambda v: (
            v.get("method") in NORMALIZATIONS
            and all(_positive(v.get("params", {}).get(k, 1.0)) for k in ("target_sum", "reference_area_um2"))
        ),
        f"a normalisation record: 'method' one of {NORMALIZATIONS}, 'target_sum' and 'reference_area_um2' > 0",
    ),
    "gene_selection": (dict, lambda v: True, "a gene selection record"),
    "map_units_choice": (
        dict,
        lambda v: not v or v.get("chosen") in ("normalized", "counts"),
        "empty, or a record of the map units chosen on held-out tissue ('chosen': 'normalized' or 'counts')",
    ),
    "reliability": (
        dict,
        lambda v: (
            not v
            or (
                _numbers(v.get("pcc"), none=True)
                and all(_numbers(q) for k in ("residual_low", "residual_high") for q in v.get(k, []))
            )
        ),
        "empty, or a reliability record with per-gene 'pcc' and finite residual quantiles",
    ),
}


def _numbers(values, none: bool = False) -> bool:
    """A list of finite numbers (``None`` allowed with ``none``)."""
    return isinstance(values, list) and all(
        (none and x is None) or (isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x))
        for x in values
    )


def _finite_triple(values) -> bool:
    return (
        isinstance(values, list | tuple)
        and len(values) == 3
        and all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in values)
    )


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_history(history, source: Path) -> None:
    """Refuse a training history that is not a list of records (one dict per epoch)."""
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError(f"{source}: field 'history' must be a list of per-epoch records, got {str(history)[:80]!r}.")


def check_config(config: dict, source: Path) -> None:
    """Refuse a model config whose fields have the wrong type or an implausible value, naming the field."""
    for name, (types, valid, wanted) in _FIELDS.items():
        if name not in config:
            continue
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, types) or not valid(value):
            raise ValueError(f"{source}: field {name!r} must be {wanted}, got {str(value)[:80]!r}.")


def tensor_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the tensors in a safetensors file, read from its header (nothing is loaded)."""
    try:
        with safe_open(path, framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}).") from None


def check_shapes(expected: dict[str, torch.Size], path: Path) -> None:
    """Refuse a weights file whose tensors are not exactly those of the network its config describes."""
    found = tensor_shapes(path)
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold the network its {CONFIG} describes: missing tensors {missing[:5]}, unexpected "
            f"{unexpected[:5]}. The config and the weights come from different models."
        )
    for key, shape in expected.items():
        if tuple(shape) != found[key]:
            raise ValueError(
                f"{path}: tensor {key!r} has shape {found[key]}, but {CONFIG} describes {tuple(shape)} (for "
                "example a changed decoder_width or gene list). The config and the weights do not match."
            )


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; refuses NaN or infinite values."""
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}).") from None
    for key, value in state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ValueError(f"{path}: tensor {key!r} holds NaN or infinite values; the model cannot predict.")
    return state


def meta_state_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, torch.Size]:
    """Shapes of the state dict of ``build()``'s network, built on the meta device (no memory allocated)."""
    with torch.device("meta"):
        network = build()
    return {k: v.shape for k, v in network.state_dict().items()}
