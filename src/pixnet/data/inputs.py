"""Resolve what pixnet works on from a SpatialData object: image, pixel size, shapes and their measurements.

Everything downstream (training, prediction, aggregation) starts from :func:`resolve_inputs`, which
either returns one explicit, validated description or refuses with a message that says what is wrong
and what to pass.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Literal

import anndata as ad
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import xarray as xr
from spatialdata import SpatialData

from .geometry import affine_matrix, linear_scale
from .images import as_uint8, choose_level, pyramid_levels, rgb_channels
from .names import BIN_NAME, resolve_coordinate_system, resolve_image_name, resolve_shape_names
from .pixel_size import PixelSizeUnknown, microns_per_cs_unit
from .tables import measured_table, table_rows

logger = logging.getLogger(__name__)

__all__ = ["ResolvedImage", "ResolvedInputs", "ResolvedShapes", "resolve_inputs"]

ShapeKind = Literal["circle", "square", "polygon"]


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
    >>> print(inputs.summary())  # doctest: +ELLIPSIS
    image 'synthetic_visium_image'...

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
    shape_names = resolve_shape_names(sdata, shapes, table)
    image_name = resolve_image_name(sdata, image, shape_names)
    cs = resolve_coordinate_system(sdata, image_name, shape_names, coordinate_system)
    tables = {name: measured_table(sdata, name, table, require_table) for name in shape_names}

    try:
        um_per_cs_unit, source = microns_per_cs_unit(
            sdata, image_name, shape_names, tables, cs, microns_per_pixel, spot_diameter_um
        )
    except PixelSizeUnknown:
        if require_pixel_size:
            raise
        um_per_cs_unit, source = float("nan"), "unknown"
    levels = pyramid_levels(sdata.images[image_name])
    level0_to_cs = affine_matrix(sdata.images[image_name], cs)
    level0_mpp = um_per_cs_unit * linear_scale(level0_to_cs, f"image {image_name!r}")
    if level is None:
        level = choose_level(levels, level0_mpp, target_microns_per_pixel)
    if not 0 <= level < len(levels):
        raise ValueError(f"Image {image_name!r} has levels 0..{len(levels) - 1}; got level={level}.")
    data = rgb_channels(levels[level], image_name) if rgb else levels[level].transpose("c", "y", "x")
    if rgb:
        data = as_uint8(data, levels[-1], image_name, image_range)
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


def _resolve_shapes(sdata, name: str, table_name: str | None, image: ResolvedImage) -> ResolvedShapes:
    gdf = sdata.shapes[name]
    if len(gdf) == 0:
        raise ValueError(f"Shapes {name!r} is empty.")
    if gdf.index.has_duplicates:  # a table row could not name its shape
        repeated = gdf.index[gdf.index.duplicated()].unique()
        raise ValueError(
            f"Shapes {name!r} have {len(repeated)} ids used more than once (e.g. {str(repeated[0])!r}); each shape "
            "needs its own index value, which its table's instance_key refers to."
        )
    to_pixel = np.linalg.inv(image.pixel_to_cs) @ affine_matrix(gdf, image.coordinate_system)
    scale = linear_scale(to_pixel, f"shapes {name!r}")
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
        kind = "square" if BIN_NAME.search(name) and axis_aligned else "circle"
        polygons, size_um = None, 2 * half * px_um
    elif kinds <= {3, 6}:  # polygons, multipolygons
        invalid = ~shapely.is_valid(geometry)
        if invalid.any():  # e.g. a self-intersecting outline: its area (0 for a bow-tie) and its pixels disagree
            warnings.warn(
                f"Shapes {name!r} hold {int(invalid.sum())} invalid polygons (e.g. index "
                f"{str(gdf.index[invalid][0])!r}: {shapely.is_valid_reason(geometry[invalid][0])}); they are read "
                "as repaired by shapely.make_valid "
                "(the 'structure' method, polygons only), so that each one's area and pixels agree. Repair or drop "
                "them yourself to choose otherwise.",
                UserWarning,
                stacklevel=4,
            )
            geometry = geometry.copy()
            geometry[invalid] = shapely.make_valid(geometry[invalid], method="structure", keep_collapsed=False)
            gdf = gdf.set_geometry(geometry)
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
        rows, positions = table_rows(sdata, table_name, name, gdf.index)
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
