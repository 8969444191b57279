"""Resolve what pixnet works on from a SpatialData object: image, pixel size, shapes and their measurements.

Everything downstream (training, prediction, aggregation) starts from :func:`resolve_inputs`, which
either returns one explicit, validated description or refuses with a message that says what is wrong
and what to pass.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Literal

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from spatialdata import SpatialData, get_extent, get_pyramid_levels
from spatialdata.models import get_table_keys
from spatialdata.transformations import get_transformation
from xarray import DataTree

from ._raster import scale_to_uint8, value_range

logger = logging.getLogger(__name__)

__all__ = ["ResolvedImage", "ResolvedInputs", "ResolvedShapes", "bin_shapes", "find_shapes", "resolve_inputs"]

ShapeKind = Literal["circle", "square", "polygon"]
_BIN_ALIAS = re.compile(r"^(?:bins?_|square_)?0*(\d+)um$")
_BIN_NAME = re.compile(r"square_(\d{3})um$")
_MPP_DISAGREEMENT = 0.05


@dataclass(frozen=True)
class ResolvedImage:
    """The image at one pyramid level, in its own pixel frame.

    Attributes
    ----------
    name
        Image element name.
    level
        Pyramid level (0 = full resolution).
    data
        ``(c, y, x)`` RGB, dask-backed; alpha is dropped.
    microns_per_pixel
        Pixel size at this level.
    microns_per_pixel_source
        Where the pixel size came from.
    coordinate_system
        The coordinate system used to relate image and shapes.
    pixel_to_cs
        3x3 affine matrix from this level's pixel ``(x, y)`` to ``coordinate_system``.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, seed=0)
    >>> image = pixnet.resolve_inputs(sdata).image
    >>> image.name, image.level
    ('synthetic_visium_image', 0)
    >>> image.data.dims
    ('c', 'y', 'x')

    """

    name: str
    level: int
    data: xr.DataArray
    microns_per_pixel: float
    microns_per_pixel_source: str
    coordinate_system: str
    pixel_to_cs: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return int(self.data.sizes["y"]), int(self.data.sizes["x"])


@dataclass(frozen=True)
class ResolvedShapes:
    """A shapes element expressed in the pixel frame of the resolved image.

    Attributes
    ----------
    name
        Shapes element name.
    kind
        ``"circle"``, ``"square"`` (axis-aligned in the pixel frame; Visium HD bins, whether spatialdata-io gave
        them as polygons or, with ``bins_as_squares=False``, as circles) or ``"polygon"``.
    index
        Shape ids (the element's index, which tables reference through their ``instance_key``).
    centres
        ``(n, 2)`` centres ``(x, y)`` in pixels (centroids for polygons).
    half_size
        Circle radius or half the square's side, in pixels; ``None`` for polygons.
    polygons
        Geometries in pixels for polygons; ``None`` for circles and squares.
    size_um
        Circle diameter or square side in µm; ``None`` for polygons.
    table
        Rows of the table that annotate these shapes, in table order; ``None`` when unmeasured.
    table_name
        Name of that table.
    shape_positions
        For each table row, the position of its shape in ``index``.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, seed=0)
    >>> spots = pixnet.resolve_inputs(sdata).shapes["synthetic_visium_spots"]
    >>> spots.kind, spots.table_name
    ('circle', 'synthetic_visium_table')
    >>> spots.centres.shape == (len(spots), 2)
    True

    """

    name: str
    kind: ShapeKind
    index: pd.Index
    centres: np.ndarray
    half_size: np.ndarray | None
    polygons: gpd.GeoSeries | None
    size_um: np.ndarray | None
    table: ad.AnnData | None = None
    table_name: str | None = None
    shape_positions: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class ResolvedInputs:
    """One image and the shape sets to read out or supervise, all in the image's pixel frame.

    Attributes
    ----------
    image
        The resolved image.
    shapes
        Shape sets by element name.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, seed=0)
    >>> inputs = pixnet.resolve_inputs(sdata)
    >>> list(inputs.shapes)
    ['synthetic_visium_spots']
    >>> print(inputs.summary())  # doctest: +SKIP

    """

    image: ResolvedImage
    shapes: dict[str, ResolvedShapes] = field(default_factory=dict)

    def summary(self) -> str:
        """A human-readable description."""
        img = self.image
        lines = [
            f"image {img.name!r} level {img.level}: {img.shape[1]} x {img.shape[0]} px, "
            f"{img.microns_per_pixel:.4f} µm/px ({img.microns_per_pixel_source}), "
            f"coordinate system {img.coordinate_system!r}"
        ]
        for s in self.shapes.values():
            size = f", {np.median(s.size_um):.1f} µm" if s.size_um is not None else ""
            measured = (
                f"table {s.table_name!r}: {s.table.n_obs} rows x {s.table.n_vars} genes"
                if s.table is not None
                else "no measured table"
            )
            lines.append(f"shapes {s.name!r}: {len(s)} {s.kind}s{size}; {measured}")
        return "\n".join(lines)


def resolve_inputs(
    sdata: SpatialData,
    image: str | None = None,
    shapes: str | list[str] | None = None,
    table: str | None = None,
    *,
    coordinate_system: str | None = None,
    microns_per_pixel: float | None = None,
    spot_diameter_um: float | None = None,
    level: int | None = None,
    target_microns_per_pixel: float | None = None,
    require_table: bool = False,
    rgb: bool = True,
    require_pixel_size: bool = True,
    image_range: tuple[float, float] | None = None,
) -> ResolvedInputs:
    """Resolve and validate an image, its pixel size, shapes and their measured table.

    Parameters
    ----------
    sdata
        The SpatialData object.
    image
        Image element; optional when one image (or one image plus downscaled copies of it, as spatialdata-io
        writes) shares a coordinate system with the shapes. The highest-resolution one is taken.
    shapes
        Shapes element name(s). Aliases for Visium HD bins work: ``"bins_2um"``, ``"2um"``,
        ``"square_002um"`` find ``"{dataset_id}_square_002um"``. Optional when ``table`` names the shapes or
        there is only one shapes element; ``[]`` resolves the image alone.
    table
        Table of measured expression; by default the one table that annotates each shapes element (none is
        fine: the shapes are then unmeasured).
    coordinate_system
        Coordinate system relating image and shapes; optional when they share exactly one, or when the
        image is the identity in one of several.
    microns_per_pixel
        Pixel size of the image's full-resolution level. By default taken from the image's ``attrs``, from
        the table's Visium scalefactors (``uns["spatial"][library]["scalefactors"]["microns_per_pixel"]``),
        or from Visium HD bin shapes (a ``square_008um`` bin is 8 µm wide).
    spot_diameter_um
        Physical diameter of the circles (or side of the squares) in ``shapes``, e.g. 55 for Visium spots:
        tells the pixel size of data read with ``spatialdata_io.visium``, which keeps no scalefactors.
    level
        Pyramid level to use; by default the coarsest level with pixels no larger than
        ``target_microns_per_pixel``, or level 0.
    target_microns_per_pixel
        Working resolution used to choose ``level``.
    require_table
        Refuse shapes without a measured table (for training).
    rgb
        Require an RGB(A) H&E image; ``False`` accepts any channels (e.g. a dense map to aggregate).
    require_pixel_size
        ``False`` resolves an unknown pixel size to NaN instead of refusing (geometry does not need it).
    image_range
        ``(low, high)``: the values that are black and white in the image. By default 0-255 for uint8, 0-1 for
        floats and the type's range for other integers; an image whose values do not fit that is refused
        (a float image holding 0-255 would read white, a uint16 image holding 8-bit values black).

    Returns
    -------
    The resolved inputs.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, seed=0)
    >>> inputs = pixnet.resolve_inputs(sdata)
    >>> inputs.shapes["synthetic_visium_spots"].kind
    'circle'

    """
    if not isinstance(sdata, SpatialData):
        raise TypeError(f"Expected a SpatialData object, got {type(sdata).__name__}.")
    shape_names = _shape_names(sdata, shapes, table)
    image_name = _image_name(sdata, image, shape_names)
    cs = _coordinate_system(sdata, image_name, shape_names, coordinate_system)
    tables = {name: _table_for(sdata, name, table, require_table) for name in shape_names}

    try:
        um_per_cs_unit, source = _microns_per_cs_unit(
            sdata, image_name, shape_names, tables, cs, microns_per_pixel, spot_diameter_um
        )
    except _PixelSizeUnknown:
        if require_pixel_size:
            raise
        um_per_cs_unit, source = float("nan"), "unknown"
    levels = _levels(sdata.images[image_name])
    level0_to_cs = _affine(sdata.images[image_name], cs)
    level0_mpp = um_per_cs_unit * _linear_scale(level0_to_cs, f"image {image_name!r}")
    if level is None:
        level = _choose_level(levels, level0_mpp, target_microns_per_pixel)
    if not 0 <= level < len(levels):
        raise ValueError(f"Image {image_name!r} has levels 0..{len(levels) - 1}; got level={level}.")
    data = _rgb(levels[level], image_name) if rgb else levels[level].transpose("c", "y", "x")
    if rgb:
        data = _as_uint8(data, levels[-1], image_name, image_range)
    level_scale = np.diag([levels[0].sizes["x"] / data.sizes["x"], levels[0].sizes["y"] / data.sizes["y"], 1.0])
    pixel_to_cs = level0_to_cs @ level_scale
    resolved_image = ResolvedImage(
        name=image_name,
        level=level,
        data=data,
        microns_per_pixel=level0_mpp * float(np.sqrt(level_scale[0, 0] * level_scale[1, 1])),
        microns_per_pixel_source=source,
        coordinate_system=cs,
        pixel_to_cs=pixel_to_cs,
    )
    resolved = {name: _resolve_shapes(sdata, name, tables[name], resolved_image) for name in shape_names}
    return ResolvedInputs(image=resolved_image, shapes=resolved)


# --------------------------------------------------------------------------------------------- names
def find_shapes(sdata: SpatialData, name: str) -> str:
    """The shapes element that ``name`` refers to: an exact name, or a bin alias such as ``"bins_2um"``.

    Raises
    ------
    KeyError
        When nothing, or more than one element, matches.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=160)  # doctest: +SKIP
    >>> sdata = pixnet.io.read(folder)  # doctest: +SKIP
    >>> pixnet.find_shapes(sdata, "bins_2um")  # doctest: +SKIP
    'synthetic_square_002um'

    """
    if name in sdata.shapes:
        return name
    match = _BIN_ALIAS.match(name)
    if match:
        suffix = f"square_{int(match.group(1)):03d}um"
        found = [s for s in sdata.shapes if s.endswith(suffix)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise KeyError(f"{name!r} matches several shapes elements {found}; pass the exact name.")
    raise KeyError(f"No shapes element {name!r}; available: {sorted(sdata.shapes)}.")


def bin_shapes(sdata: SpatialData) -> list[str]:
    """Names of the Visium HD bin shapes (``*square_XXXum``) in ``sdata``, smallest bins first.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=160)  # doctest: +SKIP
    >>> sdata = pixnet.io.read(folder)  # doctest: +SKIP
    >>> pixnet.bin_shapes(sdata)  # doctest: +SKIP
    ['synthetic_square_002um', 'synthetic_square_008um', 'synthetic_square_016um']

    """
    found = [(int(m.group(1)), name) for name in sdata.shapes if (m := _BIN_NAME.search(name))]
    return [name for _, name in sorted(found)]


def _shape_names(sdata: SpatialData, shapes: str | list[str] | None, table: str | None) -> list[str]:
    if isinstance(shapes, list | tuple) and len(shapes) == 0:
        return []
    if not sdata.shapes:
        raise ValueError("The SpatialData object has no shapes element (spots, bins or cells); add one first.")
    if shapes is None:
        if table is not None:
            regions = _regions(_get_table(sdata, table))
            names = [r for r in regions if r in sdata.shapes]
            if not names:
                raise ValueError(f"Table {table!r} annotates {regions}, none of which is a shapes element.")
            return names
        if len(sdata.shapes) > 1:
            raise ValueError(f"Several shapes elements {sorted(sdata.shapes)}: pass shapes= with one or more names.")
        return list(sdata.shapes)
    names = [shapes] if isinstance(shapes, str) else list(shapes)
    resolved = [find_shapes(sdata, n) for n in names]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"shapes= names the same element more than once: {names}.")
    return resolved


def _image_name(sdata: SpatialData, image: str | None, shape_names: list[str]) -> str:
    if image is not None:
        if image not in sdata.images:
            raise KeyError(f"No image element {image!r}; available: {sorted(sdata.images)}.")
        return image
    if not sdata.images:
        raise ValueError("The SpatialData object has no image element; pixnet needs the H&E image.")
    if not shape_names:
        shape_cs = set.union(*(set(get_transformation(sdata.images[n], get_all=True)) for n in sdata.images))
    else:
        shape_cs = set.intersection(*(set(get_transformation(sdata.shapes[s], get_all=True)) for s in shape_names))
    candidates = [n for n in sdata.images if shape_cs & set(get_transformation(sdata.images[n], get_all=True))]
    if not candidates:
        raise ValueError(
            f"No image shares a coordinate system with {shape_names} (their systems: {sorted(shape_cs)}; images: "
            + ", ".join(f"{n!r} in {sorted(get_transformation(sdata.images[n], get_all=True))}" for n in sdata.images)
            + "). Set a transformation that places both in one coordinate system."
        )
    # a dense map (channels = genes) lies over the H&E too, but is never the H&E
    candidates = [n for n in candidates if _levels(sdata.images[n])[0].sizes.get("c") in (3, 4)] or candidates
    if len(candidates) == 1:
        return candidates[0]
    cs = sorted(shape_cs & set(get_transformation(sdata.images[candidates[0]], get_all=True)))[0]
    pixels = {n: _levels(sdata.images[n])[0].sizes["x"] * _levels(sdata.images[n])[0].sizes["y"] for n in candidates}
    largest = max(candidates, key=pixels.get)
    if all(_same_extent(sdata, largest, n, cs) for n in candidates):
        logger.info("Using image %r, the highest-resolution of %s", largest, candidates)
        return largest
    raise ValueError(f"Several images {candidates} cover the shapes and differ in extent: pass image=.")


def _same_extent(sdata: SpatialData, a: str, b: str, cs: str) -> bool:
    try:
        ea, eb = get_extent(sdata.images[a], coordinate_system=cs), get_extent(sdata.images[b], coordinate_system=cs)
    except ValueError:
        return False
    span = max(ea["x"][1] - ea["x"][0], ea["y"][1] - ea["y"][0])
    return all(abs(ea[ax][i] - eb[ax][i]) <= 0.02 * span for ax in ("x", "y") for i in (0, 1))


def _coordinate_system(sdata: SpatialData, image: str, shape_names: list[str], requested: str | None) -> str:
    image_cs = get_transformation(sdata.images[image], get_all=True)
    shared = set(image_cs)
    for s in shape_names:
        shared &= set(get_transformation(sdata.shapes[s], get_all=True))
    if requested is not None:
        if requested not in shared:
            raise ValueError(
                f"Coordinate system {requested!r} does not hold image {image!r} and shapes {shape_names}; "
                f"shared systems: {sorted(shared) or 'none'}."
            )
        return requested
    if not shared:
        listing = "; ".join(f"{s!r}: {sorted(get_transformation(sdata.shapes[s], get_all=True))}" for s in shape_names)
        raise ValueError(
            f"Image {image!r} (coordinate systems {sorted(image_cs)}) and the shapes ({listing}) share no "
            "coordinate system. Add a transformation of one into the other's system "
            "(spatialdata.transformations.set_transformation)."
        )
    identity = sorted(cs for cs in shared if np.allclose(_affine(sdata.images[image], cs), np.eye(3)))
    return (identity or sorted(shared))[0]


# --------------------------------------------------------------------------------------------- tables
def _get_table(sdata: SpatialData, name: str) -> ad.AnnData:
    if name not in sdata.tables:
        raise KeyError(f"No table {name!r}; available: {sorted(sdata.tables)}.")
    return sdata.tables[name]


def _regions(table: ad.AnnData) -> list[str]:
    try:
        region, _, _ = get_table_keys(table)
    except (KeyError, ValueError, TypeError):
        return []
    return [region] if isinstance(region, str) else list(region)


def _table_for(sdata: SpatialData, shapes: str, table: str | None, required: bool) -> str | None:
    if table is not None:
        regions = _regions(_get_table(sdata, table))
        if shapes not in regions:
            raise ValueError(
                f"Table {table!r} does not annotate shapes {shapes!r} (it annotates {regions or 'nothing'}); "
                "pass the table whose region is these shapes, or set its region/region_key/instance_key with "
                "spatialdata.models.TableModel.parse."
            )
        return table
    # tables pixnet wrote (predictions, aggregates) are not measurements
    found = [t for t in sdata.tables if shapes in _regions(sdata.tables[t]) and "pixnet" not in sdata.tables[t].uns]
    if len(found) > 1:
        raise ValueError(f"Several tables {found} annotate shapes {shapes!r}: pass table=.")
    if not found and required:
        raise ValueError(
            f"No table annotates shapes {shapes!r}, so there is no measured expression to train on. "
            f"Tables present: {sorted(sdata.tables) or 'none'}."
        )
    return found[0] if found else None


def _table_rows(sdata: SpatialData, table_name: str, shapes_name: str, index: pd.Index):
    table = sdata.tables[table_name]
    _, region_key, instance_key = get_table_keys(table)
    if table.n_obs == 0 or table.n_vars == 0:
        raise ValueError(f"Table {table_name!r} is empty ({table.n_obs} rows x {table.n_vars} genes).")
    if instance_key not in table.obs:
        raise ValueError(f"Table {table_name!r} lacks its instance_key column {instance_key!r} in obs.")
    rows = table[(table.obs[region_key] == shapes_name).to_numpy()]
    if rows.n_obs == 0:
        raise ValueError(f"Table {table_name!r} has no rows for shapes {shapes_name!r} (column {region_key!r}).")
    ids = rows.obs[instance_key]
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"Table {table_name!r} has {len(duplicated)} duplicate instance ids in {instance_key!r} "
            f"(e.g. {list(duplicated[:5])}); each shape must be measured once."
        )
    positions = index.get_indexer(pd.Index(ids.to_numpy()).astype(index.dtype, copy=False))
    if (positions < 0).any():
        missing = ids.to_numpy()[positions < 0]
        raise ValueError(
            f"{len(missing)} of {len(ids)} rows of table {table_name!r} reference shapes missing from "
            f"{shapes_name!r} (instance ids in {instance_key!r}, e.g. {list(missing[:5])}); the table and shapes "
            "are out of sync."
        )
    return rows, positions


# --------------------------------------------------------------------------------------------- geometry
def _affine(element, cs: str) -> np.ndarray:
    t = get_transformation(element, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=float)


def _linear_scale(matrix: np.ndarray, what: str) -> float:
    """Isotropic scale of an affine matrix; refuses anisotropic or shearing transformations."""
    singular = np.linalg.svd(matrix[:2, :2], compute_uv=False)
    if singular.min() <= 0 or singular.max() / singular.min() > 1.001:
        raise ValueError(
            f"The transformation of {what} scales x and y differently ({singular}); pixnet needs square pixels."
        )
    return float(np.sqrt(singular[0] * singular[1]))


def _levels(element) -> list[xr.DataArray]:
    if isinstance(element, DataTree):
        return list(get_pyramid_levels(element))
    return [element]


def _choose_level(levels: list[xr.DataArray], level0_mpp: float, target: float | None) -> int:
    if target is None:
        return 0
    best = 0
    for i, lv in enumerate(levels):
        if level0_mpp * levels[0].sizes["x"] / lv.sizes["x"] <= target * 1.001:
            best = i
    return best


def _as_uint8(data: xr.DataArray, coarsest: xr.DataArray, name: str, image_range) -> xr.DataArray:
    """The image lazily mapped to uint8 0-255, its value range checked on the coarsest level."""
    if image_range is None:
        if data.dtype == np.uint8:
            return data
        low, high = value_range(np.asarray(_rgb(coarsest, name).data), name)
    else:
        low, high = (float(v) for v in image_range)
        if not high > low:
            raise ValueError(f"image_range must be (low, high) with high > low, got {image_range}.")
    return data.copy(data=data.data.map_blocks(scale_to_uint8, low, high, dtype=np.uint8))


def _rgb(data: xr.DataArray, name: str) -> xr.DataArray:
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


def _microns_per_cs_unit(sdata, image, shape_names, tables, cs, explicit, spot_diameter_um) -> tuple[float, str]:
    """µm per unit of the coordinate system, and where that came from."""
    estimates = []
    if spot_diameter_um is not None:
        for name in shape_names:
            side = _median_side(sdata.shapes[name])
            if side > 0:
                scale = _linear_scale(_affine(sdata.shapes[name], cs), f"shapes {name!r}")
                estimates.append(
                    (spot_diameter_um / side / scale, f"spot_diameter_um={spot_diameter_um:g} of {name!r}")
                )
    level0 = _levels(sdata.images[image])[0]
    image_scale = _linear_scale(_affine(sdata.images[image], cs), f"image {image!r}")
    attrs_mpp = sdata.images[image].attrs.get("microns_per_pixel") or level0.attrs.get("microns_per_pixel")
    if attrs_mpp:
        estimates.append((float(attrs_mpp) / image_scale, f"attrs of image {image!r}"))
    # the pixel size belongs to the image: other shapes in the same coordinate system can tell it too
    others = [
        n for n in sdata.shapes if n not in shape_names and cs in get_transformation(sdata.shapes[n], get_all=True)
    ]
    for name in shape_names + others:
        shape_scale = _linear_scale(_affine(sdata.shapes[name], cs), f"shapes {name!r}")
        annotating = (
            [tables[name]] if name in tables else [t for t in sdata.tables if name in _regions(sdata.tables[t])]
        )
        for table_name in filter(None, annotating):
            from_table = _scalefactor_mpp(sdata.tables[table_name])
            if from_table:
                estimates.append((from_table / shape_scale, f"scalefactors of table {table_name!r}"))
        bin_um = _BIN_NAME.search(name)
        if bin_um:
            side = _median_side(sdata.shapes[name])
            if side > 0:
                estimates.append((int(bin_um.group(1)) / side / shape_scale, f"bin size of shapes {name!r}"))
    if explicit is not None:
        if not explicit > 0:
            raise ValueError(f"microns_per_pixel must be positive, got {explicit}.")
        value, source = float(explicit) / image_scale, "microns_per_pixel argument"
        for other, other_source in estimates:
            if abs(other / value - 1) > _MPP_DISAGREEMENT:
                logger.warning(
                    "microns_per_pixel=%g disagrees with %s (%.4g µm/px); using the argument.",
                    explicit,
                    other_source,
                    other * image_scale,
                )
        return value, source
    if not estimates:
        raise _PixelSizeUnknown(
            f"The pixel size of image {image!r} is unknown: no microns_per_pixel in its attrs, no Visium "
            "scalefactors in the tables, no Visium HD bin shapes. Pass microns_per_pixel= (µm per pixel of the "
            "full-resolution level), or spot_diameter_um= (e.g. 55 for Visium spots)."
        )
    value, source = estimates[0]
    for other, other_source in estimates[1:]:
        if abs(other / value - 1) > _MPP_DISAGREEMENT:
            raise ValueError(
                f"Pixel size sources disagree: {source} gives {value * image_scale:.4g} µm/px, {other_source} "
                f"gives {other * image_scale:.4g}. Pass microns_per_pixel= to decide."
            )
    return value, source


class _PixelSizeUnknown(ValueError):
    pass


def _scalefactor_mpp(table: ad.AnnData) -> float | None:
    spatial = table.uns.get("spatial", {})
    values = {
        float(lib["scalefactors"]["microns_per_pixel"])
        for lib in spatial.values()
        if isinstance(lib, dict) and "microns_per_pixel" in lib.get("scalefactors", {})
    }
    return values.pop() if len(values) == 1 else None


def _median_side(gdf: gpd.GeoDataFrame) -> float:
    if "radius" in gdf:
        return float(2 * np.median(gdf["radius"]))
    sample = gdf.geometry.iloc[: min(len(gdf), 1000)]
    return float(np.median(np.sqrt(shapely.area(sample.to_numpy()))))


def _resolve_shapes(sdata, name: str, table_name: str | None, image: ResolvedImage) -> ResolvedShapes:
    gdf = sdata.shapes[name]
    if len(gdf) == 0:
        raise ValueError(f"Shapes {name!r} is empty.")
    to_pixel = np.linalg.inv(image.pixel_to_cs) @ _affine(gdf, image.coordinate_system)
    scale = _linear_scale(to_pixel, f"shapes {name!r}")
    px_um = image.microns_per_pixel
    geometry = gdf.geometry.to_numpy()
    kinds = set(shapely.get_type_id(geometry).tolist())
    matrix = [to_pixel[0, 0], to_pixel[0, 1], to_pixel[1, 0], to_pixel[1, 1], to_pixel[0, 2], to_pixel[1, 2]]
    axis_aligned = np.allclose(to_pixel[0, 1], 0) and np.allclose(to_pixel[1, 0], 0)
    if kinds == {0}:  # points
        if "radius" not in gdf:
            raise ValueError(f"Shapes {name!r} are points without a 'radius' column; pixnet needs circles or polygons.")
        xy = shapely.get_coordinates(geometry)
        centres = xy @ to_pixel[:2, :2].T + to_pixel[:2, 2]
        half = gdf["radius"].to_numpy(float) * scale
        # Visium HD bins read with bins_as_squares=False are still square bins (and far lighter than polygons)
        kind = "square" if _BIN_NAME.search(name) and axis_aligned else "circle"
        polygons, size_um = None, 2 * half * px_um
    elif kinds <= {3, 6}:  # polygons, multipolygons
        # squares need no geometry copy: without rotation their bounds transform exactly (millions of 2 µm bins)
        bounds = shapely.bounds(geometry)
        width, height = bounds[:, 2] - bounds[:, 0], bounds[:, 3] - bounds[:, 1]
        is_square = axis_aligned and np.allclose(width, height, rtol=1e-3)
        is_square = is_square and np.allclose(shapely.area(geometry), width * height, rtol=1e-3)
        if is_square:
            kind, polygons = "square", None
            centres = np.column_stack([bounds[:, [0, 2]].mean(axis=1), bounds[:, [1, 3]].mean(axis=1)])
            centres = centres @ to_pixel[:2, :2].T + to_pixel[:2, 2]
            half = width / 2 * scale
            size_um = 2 * half * px_um
        else:
            polygons = gdf.geometry.affine_transform(matrix)
            kind, half, size_um = "polygon", None, None
            centres = shapely.get_coordinates(shapely.centroid(polygons.to_numpy()))
    else:
        raise ValueError(f"Shapes {name!r} mix geometry types {sorted(kinds)}; use circles, squares or polygons.")
    rows = positions = None
    if table_name is not None:
        rows, positions = _table_rows(sdata, table_name, name, gdf.index)
    return ResolvedShapes(
        name=name,
        kind=kind,
        index=gdf.index,
        centres=centres,
        half_size=half,
        polygons=polygons,
        size_um=size_um,
        table=rows,
        table_name=table_name,
        shape_positions=positions,
    )
