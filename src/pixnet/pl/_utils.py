"""Helpers shared by the plots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter


def finish(fig: Figure, save: str | Path | None) -> None:
    """Write the figure when asked."""
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")


def spread_label(label: str, values) -> str:
    """``label`` with the values' 1-99 % range relative to their mean: a flat map cannot pass for a structured one.

    Each panel is coloured from its own percentiles, so a map varying by 0.05 % fills the colour scale as one
    varying by 50 % does; the label says which it is.
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return label
    low, high = np.percentile(values, [1, 99])
    mean = float(np.mean(values))
    if mean == 0:
        return f"{label}\nrange {high - low:.3g}"
    return f"{label}\nrange {high - low:.3g} = {100 * (high - low) / abs(mean):.2g} % of the mean"


def colorbar(fig: Figure, mappable, ax, label: str):
    """A colour bar with plain tick labels.

    A narrow range (predictions near their mean) would otherwise be labelled as offsets from a ``+3.1``
    written above the bar.
    """
    bar = fig.colorbar(mappable, ax=ax, shrink=0.8, label=label)
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    bar.formatter = formatter
    bar.update_ticks()
    return bar
