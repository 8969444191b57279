"""Which elements a call refers to: shapes by name or bin alias, the H&E image, the coordinate system."""

from __future__ import annotations

import logging
import re

import numpy as np
from spatialdata import SpatialData, get_extent
from spatialdata.transformations import get_transformation

from .geometry import affine_matrix
from .images import is_blank, pyramid_levels
from .tables import get_table, table_regions

logger = logging.getLogger(__name__)

__all__ = [
    "BIN_ALIAS",
    "BIN_NAME",
    "bin_shapes",
    "find_shapes",
    "resolve_coordinate_system",
    "resolve_image_name",
    "resolve_shape_names",
]

BIN_ALIAS = re.compile(r"^(?:bins?_|square_)?0*(\d+)um$")
"""What users call Visium HD bins: ``bins_2um``, ``2um``, ``square_002um``."""
BIN_NAME = re.compile(r"square_(\d{3})um$")
"""How spatialdata-io names Visium HD bin shapes: ``{dataset_id}_square_002um``."""


def find_shapes(sdata: SpatialData, name: str) -> str:
    """The shapes element that ``name`` refers to: an exact name, or a bin alias such as ``"bins_2um"``.

    Raises
    ------
    KeyError
        When nothing, or more than one element, matches.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False)
    >>> sdata = pixnet.io.read(folder)
    >>> pixnet.find_shapes(sdata, "bins_2um")
    'synthetic_square_002um'

    """
    if name in sdata.shapes:
        return name
    match = BIN_ALIAS.match(name)
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
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False)
    >>> sdata = pixnet.io.read(folder)
    >>> pixnet.bin_shapes(sdata)
    ['synthetic_square_002um', 'synthetic_square_008um', 'synthetic_square_016um']

    """
    found = [(int(m.group(1)), name) for name in sdata.shapes if (m := BIN_NAME.search(name))]
    return [name for _, name in sorted(found)]


def resolve_shape_names(sdata: SpatialData, shapes: str | list[str] | None, table: str | None) -> list[str]:
    """The shapes elements a call means, from ``shapes=``, the table's regions or the only one there is."""
    if isinstance(shapes, list | tuple) and len(shapes) == 0:
        return []
    if not sdata.shapes:
        raise ValueError("The SpatialData object has no shapes element (spots, bins or cells); add one first.")
    if shapes is None:
        if table is not None:
            regions = table_regions(get_table(sdata, table))
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


def resolve_image_name(sdata: SpatialData, image: str | None, shape_names: list[str]) -> str:
    """The H&E image element: the one named, or the highest-resolution image over the shapes."""
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
    candidates = [n for n in candidates if pyramid_levels(sdata.images[n])[0].sizes.get("c") in (3, 4)] or candidates
    blank = [n for n in candidates if is_blank(sdata.images[n])]
    if blank and len(blank) == len(candidates):
        logger.warning("Image(s) %s are blank (nearly one colour throughout): check the image files.", blank)
    elif blank:
        logger.warning("Skipping image(s) %s: blank (nearly one colour throughout). Pass image= to use one.", blank)
        candidates = [n for n in candidates if n not in blank]
    if len(candidates) == 1:
        return candidates[0]
    cs = sorted(shape_cs & set(get_transformation(sdata.images[candidates[0]], get_all=True)))[0]
    pixels = {
        n: pyramid_levels(sdata.images[n])[0].sizes["x"] * pyramid_levels(sdata.images[n])[0].sizes["y"]
        for n in candidates
    }
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


def resolve_coordinate_system(sdata: SpatialData, image: str, shape_names: list[str], requested: str | None) -> str:
    """The coordinate system shared by the image and the shapes (the image's identity system first)."""
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
    identity = sorted(cs for cs in shared if np.allclose(affine_matrix(sdata.images[image], cs), np.eye(3)))
    return (identity or sorted(shared))[0]
