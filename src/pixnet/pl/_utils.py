"""Helpers shared by the plots."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import ScalarFormatter


def finish(fig: Figure, save: str | Path | None) -> None:
    """Write the figure when asked."""
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")


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
