"""Expression on the tissue: measured vs predicted spots over the H&E, and the dense map as an overlay."""

from __future__ import annotations

# pyplot is imported where a figure is drawn: `import pixnet` does not start a matplotlib backend
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import dask.array as da
import numpy as np
import shapely
from matplotlib.axes import Axes
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Polygon, Rectangle
from spatialdata import SpatialData

from ..constants import Keys
from ..data.geometry import affine_matrix
from ..data.images import pyramid_levels
from ..data.inputs import ResolvedShapes, resolve_inputs
from ..data.pairing import paired_values
from ..data.tables import table_regions
from ..dense.threads import releases_threads
from ..metrics import gene_metrics
from ..pp import close_names
from ._utils import colorbar, finish, spread_label

__all__ = ["MapWindow", "dense_map", "expression", "map_window", "uncertainty"]

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in level-0 image pixels


def _background(sdata: SpatialData, image: str, box: Box, max_size: int) -> tuple[np.ndarray, list[float]]:
    """The H&E inside ``box`` at the finest level no larger than ``max_size`` px, and its imshow extent."""
    levels = pyramid_levels(sdata.images[image])
    width0 = levels[0].sizes["x"]
    side = max(box[2] - box[0], box[3] - box[1])
    level = next((lv for lv in levels if side * lv.sizes["x"] / width0 <= max_size), levels[-1])
    down = width0 / level.sizes["x"]
    x0, y0 = (max(int(np.floor(v / down)), 0) for v in box[:2])
    x1 = min(int(np.ceil(box[2] / down)), level.sizes["x"])
    y1 = min(int(np.ceil(box[3] / down)), level.sizes["y"])
    # no level small enough (e.g. a single-resolution image): every step-th pixel, so at most a screen's worth
    step = max(1, int(np.ceil(max(x1 - x0, y1 - y0) / max_size)))
    x1, y1 = x0 + (x1 - x0) // step * step, y0 + (y1 - y0) // step * step
    window = level.transpose("y", "x", "c").isel(c=slice(0, 3), y=slice(y0, y1, step), x=slice(x0, x1, step))
    rgb = window.values
    if rgb.dtype != np.uint8:
        rgb = np.clip(rgb / max(float(rgb.max()), 1e-12), 0, 1)
    return rgb, [x0 * down, x1 * down, y1 * down, y0 * down]


def _shape_patches(shapes: ResolvedShapes, positions: np.ndarray) -> list:
    if shapes.kind == "circle":
        return [Circle(tuple(shapes.centres[i]), shapes.half_size[i]) for i in positions]
    if shapes.kind == "square":
        h = shapes.half_size
        return [Rectangle(tuple(shapes.centres[i] - h[i]), 2 * h[i], 2 * h[i]) for i in positions]
    geometry = shapes.polygons.iloc[positions].to_numpy()
    return [Polygon(shapely.get_coordinates(shapely.get_exterior_ring(g))) for g in geometry]


def _shapes_box(shapes: ResolvedShapes, positions: np.ndarray, margin: float = 0.05) -> Box:
    reach = shapes.half_size[positions] if shapes.half_size is not None else 0.0
    c = shapes.centres[positions]
    if shapes.kind == "polygon":
        b = shapely.bounds(shapes.polygons.iloc[positions].to_numpy())
        lo, hi = b[:, :2].min(axis=0), b[:, 2:].max(axis=0)
    else:
        lo, hi = (c - np.c_[reach, reach]).min(axis=0), (c + np.c_[reach, reach]).max(axis=0)
    pad = margin * float(max(hi - lo))
    return lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad


def expression(
    sdata: SpatialData,
    genes: str | Sequence[str],
    predicted: str,
    measured: str | None = None,
    *,
    image: str | None = None,
    map_name: str | None = None,
    cmap: str = "viridis",
    shared_scale: bool = False,
    max_size: int = 1500,
    panel_size: float = 4.0,
    save: str | Path | None = None,
) -> Figure:
    """Measured and predicted expression of chosen genes side by side on the tissue.

    One row per gene: the measured spots (counts in the predictions' units, see :func:`pixnet.tl.evaluate`),
    the predicted spots with their PCC over the spots, and, with ``map_name``, the dense map over the same
    area. Each panel is coloured from its own 1st to 99th percentile, since predictions are usually compressed
    towards the mean and would look flat on the measurements' scale; ``shared_scale=True`` gives measured and
    predicted spots one scale per gene. The H&E is drawn underneath.

    Parameters
    ----------
    sdata
        The SpatialData object.
    genes
        Gene(s) to draw.
    predicted, measured
        Table names, as for :func:`pixnet.tl.evaluate`.
    image
        The H&E image element (see :func:`pixnet.resolve_inputs`).
    map_name
        A dense map element (e.g. ``"pixnet_map"``) to add as a third column.
    cmap
        Colour map.
    shared_scale
        One colour scale for the measured and predicted spots of a gene.
    max_size
        Largest side of the drawn H&E in pixels (a coarser pyramid level is used above it).
    panel_size
        Size of each panel in inches.
    save
        Write the figure to this file.

    Returns
    -------
    The figure.

    Examples
    --------
    With ``sdata`` as after predict's example (2 µm bins predicted by a model trained on 8 µm bins):

    >>> import pixnet
    >>> fig = pixnet.pl.expression(
    ...     sdata, model.genes[:2], "pixnet_synthetic_square_002um", map_name="pixnet_map", save="expression.png"
    ... )
    >>> len(fig.axes) >= 6  # per gene: measured, predicted, dense map (and their colour bars)
    True

    """
    import matplotlib.pyplot as plt

    genes = [genes] if isinstance(genes, str) else list(genes)
    pair = paired_values(sdata, predicted, measured, genes=genes)
    regions = table_regions(pair.measured_table)
    if len(regions) != 1:
        raise ValueError(f"The measured table annotates {regions}; plot one shapes element at a time.")
    inputs = resolve_inputs(sdata, image, regions[0], pair.measured_name, level=0, require_pixel_size=False)
    shapes = inputs.shapes[regions[0]]
    box = _shapes_box(shapes, shapes.shape_positions)
    pcc = gene_metrics(pair.predicted, pair.measured, genes)["pcc"].to_numpy()

    if map_name:  # all genes in one pass over the map, and the H&E read once for every panel
        window = map_window(sdata, genes, map_name, image=inputs.image.name, region=box, max_size=max_size)
        background, extent = window.background, window.background_extent
    else:
        background, extent = _background(sdata, inputs.image.name, box, max_size)
    n_cols = 3 if map_name else 2
    fig, axes = plt.subplots(
        len(genes), n_cols, figsize=(panel_size * n_cols, panel_size * len(genes)), squeeze=False, layout="constrained"
    )
    for row, gene in enumerate(genes):
        panels = (pair.measured[:, row], pair.predicted[:, row])
        both = np.concatenate(panels)
        titles = (f"{gene}: measured", f"{gene}: predicted, PCC {pcc[row]:.2f}")
        for ax, values, title in zip(axes[row], panels, titles, strict=False):
            ax.imshow(background, extent=extent)
            norm = Normalize(*np.percentile(both if shared_scale else values, [1, 99]))
            patches = PatchCollection(_shape_patches(shapes, shapes.shape_positions), cmap=cmap, norm=norm)
            patches.set_array(values)
            patches.set_edgecolor("none")
            ax.add_collection(patches)
            ax.set_title(title)
            if not shared_scale:
                colorbar(fig, patches, ax, spread_label(pair.normalization.method, values))
        if shared_scale:
            colorbar(fig, patches, axes[row, :2], spread_label(pair.normalization.method, both))
        if map_name:
            _draw_map(window, row, 0.7, "magma", None, None, axes[row, 2], None)
    for ax in axes.ravel():
        ax.set_xlim(box[0], box[2])
        ax.set_ylim(box[3], box[1])
        ax.set_axis_off()
    finish(fig, save)
    return fig


def dense_map(
    sdata: SpatialData,
    gene: str | None = None,
    map_name: str = Keys.map(Keys.PREFIX),
    *,
    image: str | None = None,
    region: Box | None = None,
    max_size: int = 1024,
    alpha: float = 0.7,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """One gene of a dense map as an overlay on the H&E.

    Only the drawn window of the lazy map is computed, averaged down to at most ``max_size`` pixels a side: a
    whole-slide view runs the model over the whole slide once, a zoom (``region``) only over the zoom.

    Parameters
    ----------
    sdata
        The SpatialData object.
    gene
        Channel of the map; default: its first (the model's first gene).
    map_name
        The dense map element (from :func:`pixnet.tl.predict`).
    image
        The H&E image element the map lies over (see :func:`pixnet.resolve_inputs`).
    region
        ``(x0, y0, x1, y1)`` in full-resolution pixels of ``image``; default: the whole map.
    max_size
        Largest side of the drawn map and H&E, in pixels.
    alpha
        Opacity of the map.
    cmap
        Colour map.
    vmin, vmax
        Colour range; default: the 1st and 99th percentiles of the drawn window.
    ax
        Axes to draw into.
    save
        Write the figure to this file.

    Returns
    -------
    The axes.

    Examples
    --------
    With ``sdata`` as after predict's example, the whole map and a zoom (a box in the image's pixels):

    >>> import pixnet
    >>> ax = pixnet.pl.dense_map(sdata)  # the first gene of "pixnet_map"
    >>> ax = pixnet.pl.dense_map(sdata, model.genes[0], region=(0, 0, 200, 200), save="zoom.png")
    >>> ax.get_title().startswith(model.genes[0])
    True

    """
    genes = None if gene is None else [gene]
    window = map_window(sdata, genes, map_name, image=image, region=region, max_size=max_size)
    return _draw_map(window, 0, alpha, cmap, vmin, vmax, ax, save)


def uncertainty(
    sdata: SpatialData,
    gene: str,
    key_added: str = Keys.PREFIX,
    *,
    image: str | None = None,
    region: Box | None = None,
    max_size: int = 1024,
    cmap: str = "magma",
    save: str | Path | None = None,
) -> Figure:
    """One gene's dense map beside its uncertainty: the per-pixel standard deviation over an ensemble's members.

    Needs the maps of ``pixnet.tl.predict(..., uncertainty=True)`` (``{key_added}_map`` and ``{key_added}_std``).
    Each panel has its own colour scale (1st to 99th percentile of the window); other parameters are as for
    :func:`dense_map`.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.io.read(pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False))
    >>> ensemble = pixnet.tl.train(sdata, shapes="bins_8um", preset="cpu", epochs=1, n_top_genes=4, progress=False)
    >>> pixnet.tl.predict(sdata, shapes="bins_8um", uncertainty=True, cache=True, progress=False)
    >>> fig = pixnet.pl.uncertainty(sdata, ensemble.genes[0], save="uncertainty.png")
    >>> len(fig.axes) >= 2  # the mean map and the members' standard deviation
    True

    """
    import matplotlib.pyplot as plt

    std_name = Keys.std_map(key_added)
    if std_name not in sdata.images:
        raise KeyError(f"No image element {std_name!r}; run pixnet.tl.predict(..., uncertainty=True) first.")
    prediction = map_window(sdata, [gene], Keys.map(key_added), image=image, region=region, max_size=max_size)
    values, extent = _map_values(sdata, [gene], std_name, image, prediction.region, max_size)[:2]
    spread = replace(prediction, values=values, extent=extent)  # the same H&E underneath, read once
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.5), layout="constrained")
    for ax, window, title in zip(axes, (prediction, spread), ("prediction", "ensemble std"), strict=True):
        _draw_map(window, 0, 0.7, cmap, None, None, ax, None)
        ax.set_title(f"{gene}: {title}")
    finish(fig, save)
    return fig


@dataclass(frozen=True)
class MapWindow:
    """Genes of a dense map over a window, averaged down, and the H&E under it (read once for all genes)."""

    genes: list[str]
    values: np.ndarray  # (genes, rows, columns)
    extent: list[float]  # imshow extent in full-resolution pixels of the image
    region: Box
    background: np.ndarray  # the H&E over the region, at most max_size px a side
    background_extent: list[float]


def map_window(
    sdata: SpatialData,
    genes: Sequence[str] | None,
    map_name: str = Keys.map(Keys.PREFIX),
    *,
    image: str | None = None,
    region: Box | None = None,
    max_size: int = 1024,
) -> MapWindow:
    """Several genes of a dense map over ``region``, computed in one pass (the model runs once per tile).

    Parameters are as for :func:`dense_map`. Reading genes one at a time from a lazy map would run the model
    over the window once per gene.
    """
    values, extent, image, region, genes = _map_values(sdata, genes, map_name, image, region, max_size)
    background, background_extent = _background(sdata, image, region, max_size)
    return MapWindow(genes, values, extent, region, background, background_extent)


@releases_threads
def _map_values(sdata, genes, map_name: str, image: str | None, region: Box | None, max_size: int):
    """The genes' values over ``region`` (default: the whole map), at most ``max_size`` px a side.

    Also their imshow extent, the name of the image they lie on, the region and the genes (``genes=None``: the
    map's first channel).
    """
    if map_name not in sdata.images:
        raise KeyError(
            f"No image element {map_name!r}; run pixnet.tl.predict first (elements: {sorted(sdata.images)})."
        )
    dense = pyramid_levels(sdata.images[map_name])[0]
    genes = [str(dense.coords["c"].values[0])] if genes is None else list(genes)
    missing = [g for g in genes if g not in dense.coords["c"].values]
    if missing:
        channels = [str(c) for c in dense.coords["c"].values]
        raise ValueError(f"{missing} are not channels of {map_name!r}{close_names(missing[0], channels) or '.'}")
    inputs = resolve_inputs(sdata, image, [], level=0, require_pixel_size=False)
    cs = inputs.image.coordinate_system
    map_to_image = np.linalg.inv(affine_matrix(sdata.images[inputs.image.name], cs)) @ affine_matrix(
        sdata.images[map_name], cs
    )
    scale = float(map_to_image[0, 0])
    if region is None:
        region = (0.0, 0.0, dense.sizes["x"] * scale, dense.sizes["y"] * scale)
    x0, y0 = (max(int(np.floor(v / scale)), 0) for v in region[:2])
    x1, y1 = (
        min(int(np.ceil(region[2] / scale)), dense.sizes["x"]),
        min(int(np.ceil(region[3] / scale)), dense.sizes["y"]),
    )
    step = max(1, int(np.ceil(max(x1 - x0, y1 - y0) / max_size)))
    window = dense.sel(c=list(genes)).data[:, y0:y1, x0:x1]
    values = da.coarsen(np.mean, window, {1: step, 2: step}, trim_excess=True).compute()
    height, width = values.shape[1:]
    extent = [x0 * scale, (x0 + width * step) * scale, (y0 + height * step) * scale, y0 * scale]
    return values, extent, inputs.image.name, tuple(region), genes


def _draw_map(window: MapWindow, index: int, alpha, cmap, vmin, vmax, ax, save) -> Axes:
    import matplotlib.pyplot as plt

    values, region = window.values[index], window.region
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6), layout="constrained")
    ax.imshow(window.background, extent=window.background_extent)
    shown = ax.imshow(
        values,
        extent=window.extent,
        cmap=cmap,
        alpha=alpha,
        vmin=float(np.percentile(values, 1)) if vmin is None else vmin,
        vmax=float(np.percentile(values, 99)) if vmax is None else vmax,
    )
    colorbar(ax.figure, shown, ax, spread_label("density per map pixel", values))
    ax.set_xlim(region[0], region[2])
    ax.set_ylim(region[3], region[1])
    ax.set_title(f"{window.genes[index]}: dense map")
    ax.set_axis_off()
    finish(ax.figure, save)
    return ax
