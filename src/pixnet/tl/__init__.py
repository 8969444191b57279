"""Tools: training, prediction, aggregation and evaluation (functional API in the style of ``squidpy.tl``)."""

from ..dense.map_cache import MapCache
from ..dense.predict import aggregate, predict
from ..training.presets import PRESETS, TrainingPreset
from ._baseline import predict_baseline, train_baseline
from ._evaluate import evaluate
from ._parent_baseline import parent_baseline
from ._train import train

__all__ = [
    "PRESETS",
    "MapCache",
    "TrainingPreset",
    "aggregate",
    "evaluate",
    "parent_baseline",
    "predict",
    "predict_baseline",
    "train",
    "train_baseline",
]
