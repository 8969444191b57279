"""Which model was trained on which SpatialData object (so that later calls can default to it)."""

from __future__ import annotations

import weakref

_trained = weakref.WeakKeyDictionary()


def remember(sdata, model) -> None:
    """Record ``model`` as the one trained on ``sdata``."""
    _trained[sdata] = model


def recall(sdata):
    """The model recorded for ``sdata``, or ``None``."""
    return _trained.get(sdata)
