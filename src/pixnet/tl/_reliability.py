"""Per-gene reliability and conformal residual quantiles, from a model trained without part of the data.

A user predicting a new slide has no measurement to check the map against. :func:`estimate_reliability`
answers "which genes can I believe, and how far off can a spot be?" from tissue the model did not see (see
:mod:`pixnet.models.held_out`). The final model is still trained on everything. The estimate holds for new tissue
as far as the held-out section stands for it (docs: Prediction and training at scale, for where it did and did
not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from spatialdata import SpatialData

from ..data.training_sections import resolve_sections
from ..models.held_out import held_out_fit, reliability_record


def estimate_reliability(
    model,
    train_further: Callable[..., object],
    sdata: SpatialData | Sequence[SpatialData],
    *,
    image,
    shapes,
    table,
    section_names: Sequence[str] | None,
    seed: int,
    resolve_kwargs: dict | None,
) -> dict:
    """Train a further model without part of the data; the record :attr:`PixNetConfig.reliability` stores.

    ``train_further(objects, image=, shapes=, table=, section_names=)`` trains it (the caller fixes the genes and
    settings); see :func:`pixnet.models.held_out.reliability_record` for the record.
    """
    objects, resolved = resolve_sections(sdata, image, shapes, table, model.microns_per_pixel, resolve_kwargs)
    fit = held_out_fit(train_further, objects, resolved, section_names, seed, resolve_kwargs)
    return reliability_record(fit)
