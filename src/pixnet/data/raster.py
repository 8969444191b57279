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


def value_range(sample: np.ndarray, name: str) -> tuple[float, float]:
    """The value range that maps image ``name`` to 0-255, checked on ``sample`` (e.g. its coarsest level).

    ``uint8`` is 0-255 and floats are 0-1; other integer types span their type's range. An image whose values
    do not fit that reading (floats above 1, integers using a sixteenth of their range or less) is refused: it
    would come out white or black.
    """
    dtype = sample.dtype
    if dtype == np.uint8:
        return 0.0, 255.0
    finite = sample[np.isfinite(sample)] if np.issubdtype(dtype, np.floating) else sample
    top = float(finite.max()) if finite.size else 0.0
    if np.issubdtype(dtype, np.floating):
        if top > 1.0 + 1e-6:
            raise ValueError(
                f"Image {name!r} is {dtype} with values up to {top:.4g}; pixnet reads float images as 0-1. Pass "
                f"image_range=(0, 255) (resolve_kwargs= in pixnet.tl) if it holds 8-bit values, or scale it to 0-1."
            )
        return 0.0, 1.0
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"Image {name!r} has dtype {dtype}; expected uint8, another integer type or float.")
    full = float(np.iinfo(dtype).max)
    if 0 < top <= full / 16:
        raise ValueError(
            f"Image {name!r} is {dtype}, but its values reach only {top:.0f} of {full:.0f}: read as {dtype} it "
            f"would be nearly black. Pass image_range=(0, {255 if top <= 255 else int(top)}) (resolve_kwargs= in "
            "pixnet.tl) with the range it was stored in."
        )
    return 0.0, full


def scale_to_uint8(block: np.ndarray, low: float, high: float) -> np.ndarray:
    """``block`` mapped from ``low``-``high`` to 0-255 (clipped), as uint8."""
    if block.dtype == np.uint8 and (low, high) == (0.0, 255.0):
        return block
    scaled = (np.asarray(block, np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.nan_to_num(scaled), 0, 255).round().astype(np.uint8)


def _to_uint8(block: np.ndarray) -> np.ndarray:
    """``block`` read in its type's default range (see :func:`value_range`), without the range check."""
    if np.issubdtype(block.dtype, np.floating):
        return scale_to_uint8(block, 0.0, 1.0)
    return scale_to_uint8(block, 0.0, float(np.iinfo(block.dtype).max))
