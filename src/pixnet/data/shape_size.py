"""The typical size of a set of shapes, in µm: what decides the working resolution that resolves them."""

from __future__ import annotations

import numpy as np
import shapely

from .inputs import ResolvedInputs, ResolvedShapes

__all__ = ["finest_shapes_um", "typical_size_um"]


def typical_size_um(shapes: ResolvedShapes, image_microns_per_pixel: float) -> float:
    """Median side (squares), diameter (circles) or square root of the area (polygons) of ``shapes``, in µm.

    Examples
    --------
    >>> import pixnet
    >>> from pixnet.data.shape_size import typical_size_um
    >>> inputs = pixnet.resolve_inputs(pixnet.datasets.synthetic_spots("visium", size_um=600, seed=0))
    >>> round(typical_size_um(next(iter(inputs.shapes.values())), inputs.image.microns_per_pixel))
    55

    """
    if shapes.size_um is not None:
        return float(np.median(shapes.size_um))
    area_px = shapely.area(np.asarray(shapes.polygons))
    return float(np.sqrt(np.median(area_px))) * image_microns_per_pixel


def finest_shapes_um(resolved: list[ResolvedInputs]) -> float:
    """The smallest :func:`typical_size_um` of the shape sets of several sections."""
    return min(typical_size_um(s, r.image.microns_per_pixel) for r in resolved for s in r.shapes.values())
