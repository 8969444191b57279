"""Tools: training, prediction, aggregation and evaluation (functional API in the style of ``squidpy.tl``)."""

from ._baseline import predict_baseline, train_baseline
from ._evaluate import evaluate
from ._predict import aggregate, predict
from ._train import DEFAULT_MICRONS_PER_PIXEL, train

__all__ = [
    "DEFAULT_MICRONS_PER_PIXEL",
    "aggregate",
    "evaluate",
    "predict",
    "predict_baseline",
    "train",
    "train_baseline",
]
