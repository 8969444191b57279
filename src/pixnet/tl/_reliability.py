"""Per-gene reliability and conformal residual quantiles, from a model trained without part of the data.

A user predicting a new slide has no measurement to check the map against. :func:`estimate_reliability`
answers "which genes can I believe, and how far off can a spot be?" from tissue the model did not see: one
further model (a single member, the final model's genes and settings) is trained without one section (or, with
one section, without its right-most quarter), predicts the shapes held out, and each gene's PCC, partial PCC
given depth and residual quantiles there are recorded. The final model is still trained on everything. The
estimate holds for new tissue as far as the held-out section stands for it (docs: Prediction and training at
scale, for where it did and did not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import numpy as np
from spatialdata import SpatialData

from ..data.pairing import paired_values
from ..data.training_sections import resolve_sections
from ..metrics import gene_metrics
from ..pp import spot_totals

logger = logging.getLogger(__name__)

INTERVAL_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Levels whose residual quantiles a model stores: ``pixnet.tl.predict(interval=...)`` takes one of them."""

REGION_FRACTION = 0.25
"""With one section, the share of its shapes (the right-most) held out."""


def held_out_split(
    objects: list[SpatialData], resolved: list, section_names: Sequence[str] | None, seed: int
) -> tuple[list[int], SpatialData | None, SpatialData, int, str]:
    """Which data trains the further model and which is held out.

    Returns the indices of the training objects, the region-split training object (one section) or ``None``,
    the held-out object, its index in ``resolved`` and a description of the split.
    """
    if len(objects) >= 2:  # a whole section, as a new slide is
        held = int(np.random.default_rng(seed).integers(len(objects)))
        name = (section_names or [r.image.name for r in resolved])[held]
        return [i for i in range(len(objects)) if i != held], None, objects[held], held, f"section {name!r}"
    sdata, inputs = objects[0], resolved[0]
    keep = {}
    for name, shapes in inputs.shapes.items():
        x = shapes.centres[:, 0]
        keep[name] = x <= np.quantile(x, 1 - REGION_FRACTION)
    train, held = (_subset(sdata, inputs, keep, side) for side in (True, False))
    return [], train, held, 0, f"the right-most {REGION_FRACTION:.0%} of the shapes"


def _subset(sdata: SpatialData, inputs, keep: dict[str, np.ndarray], side: bool) -> SpatialData:
    """``sdata`` with the split shapes (and their tables' rows) on ``side`` of the split; the rest as it is.

    Its other elements and attrs stay: they tell the image's pixel size (e.g. the reader that made it).
    """
    shapes, tables = dict(sdata.shapes), dict(sdata.tables)
    for name, resolved in inputs.shapes.items():
        chosen = keep[name] == side
        shapes[name] = sdata.shapes[name][chosen]
        rows = chosen[resolved.shape_positions]
        tables[resolved.table_name] = sdata.tables[resolved.table_name][rows].copy()
    elements = {"images": dict(sdata.images), "labels": dict(sdata.labels), "points": dict(sdata.points)}
    return SpatialData(**elements, shapes=shapes, tables=tables, attrs=dict(sdata.attrs))


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
    """Train a further model without part of the data and measure it where it was held out.

    ``train_further(objects, image=, shapes=, table=, section_names=)`` trains it (the caller fixes the genes and
    settings). Returns the record :attr:`PixNetConfig.reliability` stores: the split, per gene (in the model's
    gene order) ``pcc`` and ``partial_pcc`` on the held-out shapes; for each of :data:`INTERVAL_LEVELS` the
    equal-tailed conformal quantiles of the residuals (measured - predicted, in the model's units):
    ``residual_low`` and ``residual_high``, the order statistics ``floor((n + 1)(1 - level) / 2)`` and
    ``ceil((n + 1)(1 + level) / 2)`` of ``n``; the held-out shapes' median area and the seconds it took. The
    residuals are skewed (a sparse gene's zeros lie far below its prediction), so the intervals are not
    symmetric.
    """
    from ..dense.predict import predict  # the read-out of the further model's map

    started = time.perf_counter()
    objects, resolved = resolve_sections(sdata, image, shapes, table, model.microns_per_pixel, resolve_kwargs)
    training, region_train, held, held_index, split = held_out_split(objects, resolved, section_names, seed)
    inputs = resolved[held_index]
    if region_train is not None:
        names = {"image": inputs.image.name, "shapes": list(inputs.shapes), "table": None}
        further = train_further([region_train], section_names=section_names, **names)
    else:
        names = {
            "image": [resolved[i].image.name for i in training],
            "shapes": [list(resolved[i].shapes) for i in training],
            "table": None,
        }
        picked = [section_names[i] for i in training] if section_names else None
        further = train_further([objects[i] for i in training], section_names=picked, **names)
    # the held-out shape set with the most measured shapes calibrates (one size: residuals grow with it)
    name, shape_set = max(inputs.shapes.items(), key=lambda item: item[1].table.n_obs)
    predicted = predict(
        held,
        shapes=name,
        model=further,
        image=inputs.image.name,
        copy=True,
        progress=False,
        resolve_kwargs=resolve_kwargs,
    )
    predicted_table = next(iter(predicted.tables.values()))
    pair = paired_values(None, predicted_table, held.tables[shape_set.table_name])
    depth = np.log1p(spot_totals(pair.measured_table))
    per_gene = gene_metrics(pair.predicted, pair.measured, pair.genes, depth=depth).set_index("gene")
    residual = np.sort(pair.measured - pair.predicted, axis=0)
    n = len(residual)
    low = [max(1, int(np.floor((n + 1) * (1 - level) / 2))) - 1 for level in INTERVAL_LEVELS]
    high = [min(n, int(np.ceil((n + 1) * (1 + level) / 2))) - 1 for level in INTERVAL_LEVELS]
    record = {
        "split": split,
        "n_shapes": int(n),
        "shape_area_um2": float(np.median(predicted_table.obs["area_um2"])),
        "pcc": _listed(per_gene.loc[model.genes, "pcc"]),
        "partial_pcc": _listed(per_gene.loc[model.genes, "partial_pcc"]),
        "levels": list(INTERVAL_LEVELS),
        "residual_low": [residual[r, :].tolist() for r in low],
        "residual_high": [residual[r, :].tolist() for r in high],
        "seconds": round(time.perf_counter() - started, 1),
    }
    logger.info(
        "Reliability from %d held-out shapes (%s): median expected PCC %.3f, in %.0f s",
        n,
        split,
        float(np.nanmedian(record["pcc"])),
        record["seconds"],
    )
    return record


def _listed(values) -> list[float | None]:
    """JSON-storable: NaN (a constant gene) as ``None``."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64)]
