"""Reading image windows at the working resolution from a dask-backed pyramid level."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def source_box(box: tuple[int, int, int, int], factor: float, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixels of the source level (``shape`` = height, width) needed for ``box`` in working pixels.

    ``factor`` is working pixels per source pixel.
    """
    y0, y1, x0, x1 = box
    sy0, sx0 = max(int(np.floor(y0 / factor)), 0), max(int(np.floor(x0 / factor)), 0)
    sy1, sx1 = min(int(np.ceil(y1 / factor)) + 1, shape[0]), min(int(np.ceil(x1 / factor)) + 1, shape[1])
    return sy0, max(sy1, sy0), sx0, max(sx1, sx0)


def resample_window(block: np.ndarray, src_origin: tuple[int, int], box: tuple[int, int, int, int], factor: float):
    """Resample a ``(c, h, w)`` source block starting at ``src_origin`` and cut ``box`` (working pixels).

    Pixels outside the source are white. Returns ``(h, w, 3)`` uint8.
    """
    y0, y1, x0, x1 = box
    tensor = torch.from_numpy(_to_uint8(np.asarray(block[:3]))).float().unsqueeze(0)
    if factor != 1.0 and tensor.shape[-1] > 0 and tensor.shape[-2] > 0:
        size = (max(round(tensor.shape[-2] * factor), 1), max(round(tensor.shape[-1] * factor), 1))
        tensor = F.interpolate(tensor, size=size, mode="bilinear", antialias=factor < 1, align_corners=False)
    oy, ox = round(src_origin[0] * factor), round(src_origin[1] * factor)
    out = torch.full((3, y1 - y0, x1 - x0), 255.0)
    ty0, tx0 = max(y0 - oy, 0), max(x0 - ox, 0)
    part = tensor[0, :, ty0 : y1 - oy, tx0 : x1 - ox]
    dy, dx = ty0 + oy - y0, tx0 + ox - x0
    out[:, dy : dy + part.shape[-2], dx : dx + part.shape[-1]] = part
    return out.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()


def read_resampled(data, box: tuple[int, int, int, int], factor: float, strip_px: int = 2048) -> np.ndarray:
    """Read ``box`` (in working pixels) of a dask-backed ``(c, y, x)`` image resampled by ``factor``, in strips."""
    y0, y1, x0, x1 = box
    out = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
    shape = (data.shape[1], data.shape[2])
    for sy in range(y0, y1, strip_px):
        strip = (sy, min(sy + strip_px, y1), x0, x1)
        sy0, sy1, sx0, sx1 = source_box(strip, factor, shape)
        block = np.asarray(data[:3, sy0:sy1, sx0:sx1])
        out[sy - y0 : strip[1] - y0] = resample_window(block, (sy0, sx0), strip, factor)
    return out


def _to_uint8(block: np.ndarray) -> np.ndarray:
    if block.dtype == np.uint8:
        return block
    if np.issubdtype(block.dtype, np.floating):
        return (np.clip(block, 0, 1) * 255).round().astype(np.uint8)
    return (block.astype(np.float64) / np.iinfo(block.dtype).max * 255).round().astype(np.uint8)
