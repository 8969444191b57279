"""The image's pixel size in µm: from attrs, Visium scalefactors, bin names or a known spot diameter."""

from __future__ import annotations

import logging

import anndata as ad
import geopandas as gpd
import numpy as np
import shapely
from spatialdata.transformations import get_transformation

from .geometry import affine_matrix, linear_scale
from .images import pyramid_levels
from .names import BIN_NAME
from .tables import table_regions

logger = logging.getLogger(__name__)

__all__ = [
    "VISIUM_SPOT_DIAMETER_UM",
    "PixelSizeUnknown",
    "is_visium",
    "median_side",
    "microns_per_cs_unit",
    "scalefactor_mpp",
]

_MPP_DISAGREEMENT = 0.05  # relative difference at which two pixel-size sources disagree
VISIUM_SPOT_DIAMETER_UM = 55.0
"""Every Visium (v1, v2, CytAssist) capture spot is 55 µm across (10x Genomics' technical notes)."""


def is_visium(sdata) -> bool:
    """Whether ``sdata`` was read from a Visium (not Visium HD) Space Ranger folder by spatialdata-io."""
    return sdata.attrs.get("spatialdata_io_reader") == "visium"


def microns_per_cs_unit(sdata, image, shape_names, tables, cs, explicit, spot_diameter_um) -> tuple[float, str]:
    """µm per unit of the coordinate system, and where that came from."""
    estimates = []
    if spot_diameter_um is not None or is_visium(sdata):
        # spatialdata-io draws Visium spots as circles of radius spot_diameter_fullres / 2 (full-resolution pixels)
        diameter = spot_diameter_um or VISIUM_SPOT_DIAMETER_UM
        told = f"spot_diameter_um={diameter:g}" if spot_diameter_um else f"the {diameter:g} µm Visium spot diameter"
        for name in shape_names:
            if spot_diameter_um is None and "radius" not in sdata.shapes[name]:
                continue
            side = median_side(sdata.shapes[name])
            if side > 0:
                scale = linear_scale(affine_matrix(sdata.shapes[name], cs), f"shapes {name!r}")
                estimates.append((diameter / side / scale, f"{told} of {name!r}"))
    level0 = pyramid_levels(sdata.images[image])[0]
    image_scale = linear_scale(affine_matrix(sdata.images[image], cs), f"image {image!r}")
    attrs_mpp = sdata.images[image].attrs.get("microns_per_pixel") or level0.attrs.get("microns_per_pixel")
    if attrs_mpp:
        estimates.append((float(attrs_mpp) / image_scale, f"attrs of image {image!r}"))
    # the pixel size belongs to the image: other shapes in the same coordinate system can tell it too
    others = [
        n for n in sdata.shapes if n not in shape_names and cs in get_transformation(sdata.shapes[n], get_all=True)
    ]
    for name in shape_names + others:
        shape_scale = linear_scale(affine_matrix(sdata.shapes[name], cs), f"shapes {name!r}")
        annotating = (
            [tables[name]] if name in tables else [t for t in sdata.tables if name in table_regions(sdata.tables[t])]
        )
        for table_name in filter(None, annotating):
            from_table = scalefactor_mpp(sdata.tables[table_name])
            if from_table:
                estimates.append((from_table / shape_scale, f"scalefactors of table {table_name!r}"))
        bin_um = BIN_NAME.search(name)
        if bin_um:
            side = median_side(sdata.shapes[name])
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
        raise PixelSizeUnknown(
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


class PixelSizeUnknown(ValueError):
    """No source tells the image's pixel size."""


def scalefactor_mpp(table: ad.AnnData) -> float | None:
    """µm per full-resolution pixel from a table's Visium scalefactors, when they hold exactly one value."""
    spatial = table.uns.get("spatial", {})
    values = {
        float(lib["scalefactors"]["microns_per_pixel"])
        for lib in spatial.values()
        if isinstance(lib, dict) and "microns_per_pixel" in lib.get("scalefactors", {})
    }
    return values.pop() if len(values) == 1 else None


def median_side(gdf: gpd.GeoDataFrame) -> float:
    """Median diameter of circles, or the side of squares / equivalent side of polygons, in element units."""
    if "radius" in gdf:
        return float(2 * np.median(gdf["radius"]))
    sample = gdf.geometry.iloc[: min(len(gdf), 1000)]
    return float(np.median(np.sqrt(shapely.area(sample.to_numpy()))))
