"""From SpatialData to what the networks see: resolved inputs, pixel sizes, Eq. 9 spans, image windows, patches."""

from .inputs import ResolvedImage, ResolvedInputs, ResolvedShapes, resolve_inputs
from .names import bin_shapes, find_shapes

__all__ = ["ResolvedImage", "ResolvedInputs", "ResolvedShapes", "bin_shapes", "find_shapes", "resolve_inputs"]
