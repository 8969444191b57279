"""Plots of predictions, measurements and model training (functional API in the style of ``squidpy.pl``).

Every function returns its matplotlib figure or axes and writes the picture to ``save`` when given.
"""

from ._metrics import pcc_distribution, reliability, scatter
from ._spatial import dense_map, expression, uncertainty
from ._training import training_curves

__all__ = ["dense_map", "expression", "pcc_distribution", "reliability", "scatter", "training_curves", "uncertainty"]
