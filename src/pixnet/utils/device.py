"""The torch device a call runs on."""

from __future__ import annotations

import torch

from .settings import settings

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> ``pixnet.settings.device``; ``"auto"`` -> cuda, mps or cpu, whichever is available first."""
    device = settings.device_for(device)
    if str(device) != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
