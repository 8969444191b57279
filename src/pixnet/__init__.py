"""pixnet: dense, per-pixel spatial gene expression prediction from H&E images, for SpatialData."""

from importlib.metadata import PackageNotFoundError, version

from . import constants, data, datasets, dense, io, metrics, models, nn, pl, pp, tl
from .data import ResolvedImage, ResolvedInputs, ResolvedShapes, bin_shapes, find_shapes, resolve_inputs
from .models import Image2Gene, PixNet

try:
    __version__ = version("pixnet")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = [
    "Image2Gene",
    "PixNet",
    "ResolvedImage",
    "ResolvedInputs",
    "ResolvedShapes",
    "bin_shapes",
    "constants",
    "data",
    "datasets",
    "dense",
    "find_shapes",
    "io",
    "metrics",
    "models",
    "nn",
    "pl",
    "pp",
    "resolve_inputs",
    "tl",
]
