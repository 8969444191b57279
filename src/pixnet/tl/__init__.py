"""Tools: training, prediction, aggregation and evaluation (functional API in the style of ``squidpy.tl``)."""

from ._predict import aggregate, predict
from ._train import DEFAULT_MICRONS_PER_PIXEL, train

__all__ = ["DEFAULT_MICRONS_PER_PIXEL", "aggregate", "predict", "train"]
