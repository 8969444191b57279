"""Image elements: pyramid levels, the level for a working resolution, RGB channels and 8-bit values."""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr
from spatialdata import get_pyramid_levels
from xarray import DataTree

from .raster import scale_to_uint8, value_range

logger = logging.getLogger(__name__)

MAX_UPSAMPLING = 1.5
"""The most a working resolution may be finer than an image's own before pixnet says so (or, for a preset's
default, works at the image's resolution instead): upsampling creates no detail, only cost."""

__all__ = ["MAX_UPSAMPLING", "as_uint8", "choose_level", "is_blank", "pyramid_levels", "rgb_channels"]


def pyramid_levels(element) -> list[xr.DataArray]:
    """The levels of a multiscale image, finest first (a single-scale image is one level)."""
    if isinstance(element, DataTree):
        return list(get_pyramid_levels(element))
    return [element]


def choose_level(levels: list[xr.DataArray], level0_mpp: float, target: float | None) -> int:
    """The coarsest level whose pixels are no larger than ``target`` µm (level 0 without a target)."""
    if target is None:
        return 0
    best = 0
    for i, lv in enumerate(levels):
        if level0_mpp * levels[0].sizes["x"] / lv.sizes["x"] <= target * 1.001:
            best = i
    return best


def is_blank(element, max_spread: float = 4.0) -> bool:
    """Whether an image is (nearly) one colour: the standard deviation of its coarsest level below ``max_spread``.

    ``max_spread`` is in 8-bit units (images of other ranges are compared relative to their own range). Of a
    whole-slide level, 16 tiles are read, not the slide.
    """
    coarsest = pyramid_levels(element)[-1].data
    coarsest = coarsest[:3] if coarsest.shape[0] >= 3 else coarsest
    eight_bit = coarsest.dtype == np.uint8
    if coarsest.size > 3 * 4096**2 and hasattr(coarsest, "blocks"):
        rows, cols = coarsest.numblocks[1:]
        picks = np.random.default_rng(0).integers(0, (rows, cols), size=(16, 2))
        tiles = [np.asarray(coarsest.blocks[0, y, x]).reshape(coarsest.shape[0], -1) for y, x in picks]
        coarsest = np.concatenate(tiles, axis=1)
    values = np.asarray(coarsest, dtype=np.float64)
    scale = 1.0 if eight_bit else 255.0 / max(float(np.abs(values).max()), 1e-12)
    return float(values.std()) * scale < max_spread


def as_uint8(data: xr.DataArray, coarsest: xr.DataArray, name: str, image_range) -> xr.DataArray:
    """The image lazily mapped to uint8 0-255, its value range checked on the coarsest level."""
    if image_range is None:
        if data.dtype == np.uint8:
            return data
        low, high = value_range(np.asarray(rgb_channels(coarsest, name).data), name)
    else:
        low, high = (float(v) for v in image_range)
        if not high > low:
            raise ValueError(f"image_range must be (low, high) with high > low, got {image_range}.")
    return data.copy(data=data.data.map_blocks(scale_to_uint8, low, high, dtype=np.uint8))


def rgb_channels(data: xr.DataArray, name: str) -> xr.DataArray:
    """The image as ``(c, y, x)`` RGB, refusing anything but RGB or RGBA."""
    if "c" not in data.dims:
        raise ValueError(f"Image {name!r} has dims {data.dims}; expected (c, y, x).")
    data = data.transpose("c", "y", "x")
    n = data.sizes["c"]
    if n == 4:
        logger.info("Image %r is RGBA; using its RGB channels.", name)
        return data.isel(c=slice(0, 3))
    if n != 3:
        kind = "grayscale" if n == 1 else f"{n}-channel"
        raise ValueError(
            f"Image {name!r} is {kind} ({n} channels); pixnet needs an RGB H&E image (3 channels, or RGBA). "
            "Pass the H&E image element with image=."
        )
    return data
