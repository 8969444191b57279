"""Loading encoder weights safely: ``weights_only`` loads and an allow-listed unpickler for Lightning files."""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

__all__ = ["load_backbone", "load_checkpoint_file"]

CIGA_URL = (
    "https://github.com/ozanciga/self-supervised-histopathology/releases/download/tenpercent/tenpercent_resnet18.ckpt"
)


class _AttributeDict(dict):
    """Stand-in for Lightning's hyper-parameter dicts (plain data, no behaviour)."""


class _Namespace:
    """Stand-in for ``argparse.Namespace`` holding hyper-parameters."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


# Only data containers and torch's own tensor rebuilders: nothing here runs user code on load.
_ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("argparse", "Namespace"): _Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
}
_ATTRIBUTE_DICT_MODULES = (
    "pytorch_lightning.utilities.parsing",
    "lightning.pytorch.utilities.parsing",
    "lightning_fabric.utilities.data",
    "lightning.fabric.utilities.data",
)


class _AllowListUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if name == "AttributeDict" and module in _ATTRIBUTE_DICT_MODULES:
            return _AttributeDict
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        raise pickle.UnpicklingError(
            f"Refusing to unpickle {module}.{name}: only tensors and plain containers are allowed in a checkpoint."
        )


class _AllowListPickle:
    """A ``pickle_module`` for :func:`torch.load` whose unpickler only knows allow-listed names."""

    Unpickler = _AllowListUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "pixnet_allow_list_pickle"

    @staticmethod
    def load(file, **kwargs):
        return _AllowListUnpickler(file, **kwargs).load()


def load_checkpoint_file(path: str | Path) -> dict:
    """Load a weights file without executing code.

    ``.safetensors`` files load directly; torch files load with ``weights_only=True``, and Lightning checkpoints
    whose hyper-parameters need more are unpickled with an allow-list of plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    state = _read_weights(path)
    bad = [name for name, tensor in _tensors(state) if tensor.is_floating_point() and not tensor.isfinite().all()]
    if bad:  # would train on NaN losses or predict NaN maps, far from the file that caused it
        raise ValueError(f"{path} holds NaN or infinite weights in {len(bad)} tensors (e.g. {bad[:3]}); is it damaged?")
    return state


def _tensors(state, prefix: str = ""):
    """``(name, tensor)`` of every tensor in a (nested) checkpoint."""
    if isinstance(state, torch.Tensor):
        yield prefix, state
    elif isinstance(state, dict):
        for key, value in state.items():
            yield from _tensors(value, f"{prefix}.{key}" if prefix else str(key))


def _read_weights(path: Path):
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as err:
            raise ValueError(f"{path} is not a readable safetensors file ({err}); is it truncated?") from err
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as weights_only_error:
        logger.info("weights_only load of %s failed (%s); retrying with the allow-list", path, weights_only_error)
        try:
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_AllowListPickle)
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path} holds objects pixnet will not unpickle: {err}") from err
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a torch checkpoint: {err}") from err


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_backbone(module: torch.nn.Module, path: str | Path, drop: tuple[str, ...] = ("fc.",)) -> dict:
    """Load backbone weights from a file into ``module``; fail unless every backbone parameter loaded.

    Understands a plain (torchvision-style) state dict, one wrapped as ``{"state_dict": ...}``, DataParallel's
    ``module.`` prefix, and the Ciga et al. Lightning checkpoint (``model.resnet.*``, SimCLR head ``fc.*``
    dropped).

    Returns
    -------
    ``{"missing": [...], "unexpected": [...], "layout": "ciga" | "torchvision"}``.

    """
    state = load_checkpoint_file(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors.")
    layout = "torchvision"
    for prefix in ("model.resnet.", "module.", "backbone.", "encoder."):
        if any(k.startswith(prefix) for k in state):
            state = _strip(state, prefix)
            layout = "ciga" if prefix == "model.resnet." else layout
            break
    state = {k: v for k, v in state.items() if not k.startswith(drop)}
    expected = set(module.state_dict())
    result = module.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing:
        raise ValueError(
            f"{path} did not load the backbone: {len(missing)} of {len(expected)} parameters missing "
            f"(e.g. {missing[:3]}); unexpected keys: {unexpected[:3]}. Is it a ResNet18 state dict?"
        )
    if unexpected:
        logger.warning("Ignored %d unexpected keys in %s, e.g. %s", len(unexpected), path, unexpected[:3])
    logger.info("Loaded %d backbone tensors from %s", len(expected), path)
    return {"missing": missing, "unexpected": unexpected, "layout": layout}
