"""The user-facing models: PixNet, Image2Gene and the spot baselines, with their configs and save/load."""

from .baseline import SpotBaseline
from .image2gene import Image2Gene, Image2GeneConfig
from .pixnet import PixNet, PixNetConfig, load_model

__all__ = ["Image2Gene", "Image2GeneConfig", "PixNet", "PixNetConfig", "SpotBaseline", "load_model"]
