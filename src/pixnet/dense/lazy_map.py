"""The dense map as a lazy dask array: one task per tile, each reading its window of the image with a halo."""

from __future__ import annotations

import numbers

import dask
import dask.array as da
import numpy as np
import torch

from ..data.inputs import ResolvedImage
from ..data.raster import resample_window, source_box
from .map_cache import MapCache, map_fingerprint

__all__ = ["lazy_dense_map"]

_ALIGN = 32  # the network's stride: windows start on this grid so tiles see the same downsampling grid


def _predict_block(
    model, blocks, cut, src_origin, window, core, factor: float, dtype: str, extent, members: bool = False
) -> np.ndarray:
    source = np.block([[[np.asarray(b) for b in row] for row in channel] for channel in blocks])
    image = resample_window(source[(slice(0, 3), *cut)], src_origin, window, factor)
    tile = torch.from_numpy(image).permute(2, 0, 1).unsqueeze(0)
    extra = {"members": True} if members else {}
    density = model.predict_tiles(tile, offset=(window[0], window[2]), extent=extent, **extra)[0]
    y0, x0 = core[0] - window[0], core[2] - window[2]
    crop = density[..., y0 : y0 + core[1] - core[0], x0 : x0 + core[3] - core[2]].flatten(0, -3)
    return crop.cpu().numpy().astype(dtype, copy=False)


def _cached_block(cache: MapCache, key: tuple, *args) -> np.ndarray:
    chunk = cache.get(key)
    if chunk is None:
        chunk = _predict_block(*args)
        cache.put(key, chunk)
    return chunk


def _overlapping(bounds: np.ndarray, lo: int, hi: int) -> list[int]:
    """Indices of the chunks (edges ``bounds``) that overlap ``[lo, hi)``; at least one."""
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    last = max(int(np.searchsorted(bounds, hi, side="left")) - 1, first)
    return list(range(max(first, 0), min(last, len(bounds) - 2) + 1))


def map_shape(image: ResolvedImage, microns_per_pixel: float) -> tuple[int, int, float]:
    """Height and width of the map at ``microns_per_pixel`` covering ``image``, and map pixels per image pixel."""
    factor = image.microns_per_pixel / microns_per_pixel
    height, width = image.shape
    return int(np.ceil(height * factor - 1e-9)), int(np.ceil(width * factor - 1e-9)), factor


def check_tiles(tile_size, halo) -> None:
    """Refuse a ``tile_size`` (> 0) or ``halo`` (>= 0) that is not an integer multiple of the encoder's 32 pixels."""
    for name, value, least in (("tile_size", tile_size, _ALIGN), ("halo", halo, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least or value % _ALIGN:
            raise ValueError(
                f"{name} must be a multiple of {_ALIGN} map pixels{' (at least 32)' if least else ''}, got {value!r}."
            )


def map_settings(image: ResolvedImage, tile_size: int, halo: int, dtype: str) -> dict:
    """What, besides the model, decides a dense map's values (see :func:`~pixnet.dense.map_cache.map_fingerprint`).

    The image's dask name tokenises its source (a file, or the values of an in-memory array). Its pixel size
    is rounded: estimated from different shapes it differs in the last digits, which change no map pixel.
    """
    source = image.data.data
    return {
        "image": [image.name, image.level, source.name, float(f"{image.microns_per_pixel:.9g}")],
        "tiles": [tile_size, halo],
        "dtype": dtype,
    }


def lazy_dense_map(
    model,
    image: ResolvedImage,
    tile_size: int = 512,
    halo: int = 64,
    dtype: str = "float32",
    cache: MapCache | None = None,
    members: bool = False,
) -> tuple[da.Array, float]:
    """The model's dense map over ``image`` as a dask array ``(n_genes, height, width)``.

    Each ``tile_size`` chunk is one task: it reads the tile plus ``halo`` pixels on every side from the image
    level, resampled to the model's resolution, runs the network and keeps the centre, so the map does not
    show tile seams. The model runs once per chunk when the array is computed chunk by chunk; with ``cache``,
    once per chunk for all reads of the map. ``members``: every ensemble member's map, member-major channels
    ``(n_models * n_genes, height, width)``.

    Returns
    -------
    The map and its pixels per image-level pixel.

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example:

    >>> import pixnet
    >>> from pixnet.dense import lazy_dense_map
    >>> inputs = pixnet.resolve_inputs(sdata, shapes=[], target_microns_per_pixel=model.microns_per_pixel)
    >>> dense, factor = lazy_dense_map(model, inputs.image, tile_size=64)
    >>> dense[:, :64, :64].compute().shape == (len(model.genes), 64, 64)  # one tile: the model runs once
    True

    """
    check_tiles(tile_size, halo)
    height, width, factor = map_shape(image, model.microns_per_pixel)
    source = image.data.data
    # Tasks take the source's blocks as delayed objects of one graph: slicing the dask array per tile would
    # build its whole graph once per tile (seconds each for a lazily downsampled pyramid level).
    blocks = source.to_delayed()
    bounds = [np.cumsum((0, *c)) for c in source.chunks[1:]]
    model_key = dask.delayed(model, pure=True, traverse=False)
    n_genes = len(model.channels) * (model.config.n_models if members else 1)
    if cache is not None:
        fingerprint = map_fingerprint(model, map_settings(image, tile_size, halo, dtype))
    rows = []
    for y0 in range(0, height, tile_size):
        row = []
        for x0 in range(0, width, tile_size):
            core = (y0, min(y0 + tile_size, height), x0, min(x0 + tile_size, width))
            window = (max(y0 - halo, 0), min(core[1] + halo, height), max(x0 - halo, 0), min(core[3] + halo, width))
            sy0, sy1, sx0, sx1 = source_box(window, factor, image.shape)
            ys, xs = (_overlapping(b, lo, hi) for b, lo, hi in ((bounds[0], sy0, sy1), (bounds[1], sx0, sx1)))
            grid = [[[blocks[c, i, j] for j in xs] for i in ys] for c in range(blocks.shape[0])]
            cut = (
                slice(sy0 - bounds[0][ys[0]], sy1 - bounds[0][ys[0]]),
                slice(sx0 - bounds[1][xs[0]], sx1 - bounds[1][xs[0]]),
            )
            args = (model_key, grid, cut, (sy0, sx0), window, core, factor, dtype, (height, width), members)
            if cache is None:
                task = dask.delayed(_predict_block, pure=True)(*args)
            else:
                task = dask.delayed(_cached_block, pure=True)(cache, (fingerprint, y0, x0), *args)
            shape = (n_genes, core[1] - core[0], core[3] - core[2])
            row.append(da.from_delayed(task, shape=shape, dtype=dtype))
        rows.append(row)
    return da.block([rows]), factor
