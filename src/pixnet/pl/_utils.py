"""Helpers shared by the plots."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure


def finish(fig: Figure, save: str | Path | None) -> None:
    """Write the figure when asked."""
    if save is not None:
        fig.savefig(save, dpi=150, bbox_inches="tight")
