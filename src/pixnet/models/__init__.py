"""The user-facing models: PixNet, Image2Gene and the spot baselines, with their options, configs and save/load."""

from .baseline import SpotBaseline
from .image2gene import Image2Gene, Image2GeneConfig
from .params import Image2GeneParams, MethodParams, PixNetParams
from .pixnet import PixNet, PixNetConfig, load_model

__all__ = [
    "Image2Gene",
    "Image2GeneConfig",
    "Image2GeneParams",
    "MethodParams",
    "PixNet",
    "PixNetConfig",
    "PixNetParams",
    "SpotBaseline",
    "load_model",
]
