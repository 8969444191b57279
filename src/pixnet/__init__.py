"""pixnet: dense, per-pixel spatial gene expression prediction from H&E images, for SpatialData."""

from importlib.metadata import PackageNotFoundError, version

from . import baseline, datasets, image2gene, io, metrics, model, pl, pp, tl
from ._inputs import ResolvedImage, ResolvedInputs, ResolvedShapes, bin_shapes, find_shapes, resolve_inputs

try:
    __version__ = version("pixnet")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "ResolvedImage",
    "ResolvedInputs",
    "ResolvedShapes",
    "baseline",
    "bin_shapes",
    "datasets",
    "find_shapes",
    "image2gene",
    "io",
    "metrics",
    "model",
    "pl",
    "pp",
    "resolve_inputs",
    "tl",
]
