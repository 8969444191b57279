"""pixnet: dense, per-pixel spatial gene expression prediction from H&E images, for SpatialData."""

from . import constants, data, datasets, dense, io, metrics, models, nn, pl, pp, tl
from .data import ResolvedImage, ResolvedInputs, ResolvedShapes, bin_shapes, find_shapes, resolve_inputs
from .models import Image2Gene, PixNet
from .utils.settings import settings
from .utils.version import VERSION as __version__  # noqa: F401 (the package attribute)

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
    "settings",
    "tl",
]
