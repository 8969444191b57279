"""A further model trained without part of the training data, measured where it was held out.

Two decisions of training rest on tissue the model did not see: which units the map learns (``map_units="auto"``,
see :class:`~pixnet.models.PixNetParams`) and how far a gene's predictions can be trusted
(``pixnet.tl.train(reliability=True)``: per-gene PCC and conformal residual quantiles). Both are made in
:meth:`pixnet.models.PixNet.train`, before the final model is trained on everything. Both hold out one
training section (chosen by the seed), or with one section the right-most quarter of its shapes, train a single
model on the rest with the final model's genes and settings, and predict the held-out shapes with
:func:`pixnet.tl.predict`, as a new slide would be.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from spatialdata import SpatialData

from ..data.pairing import paired_values
from ..dense.predict import predict
from ..metrics import gene_metrics
from ..pp import spot_totals

logger = logging.getLogger(__name__)

__all__ = ["INTERVAL_LEVELS", "REGION_FRACTION", "HeldOutFit", "held_out_fit", "held_out_split", "reliability_record"]

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


@dataclass
class HeldOutFit:
    """How a further model did on the held-out shapes.

    Attributes
    ----------
    split
        What was held out (``"section 'C3'"``, or the region of one section).
    per_gene
        :func:`pixnet.metrics.gene_metrics` of its predictions there, indexed by gene (``pcc``, ``partial_pcc``...).
    residuals
        Measured minus predicted, ``(shapes, genes)`` in the model's units, each gene's column sorted.
    shape_area_um2
        The held-out shapes' median area.
    seconds
        Training and measuring.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from pixnet.models.held_out import HeldOutFit
    >>> per_gene = pd.DataFrame({"pcc": [0.5, 0.1], "partial_pcc": [0.3, np.nan]}, index=["A", "B"])
    >>> fit = HeldOutFit("section 'S1'", per_gene, np.zeros((10, 2)), shape_area_um2=2376.0, seconds=1.0)
    >>> round(fit.mean("pcc"), 3), fit.mean("partial_pcc")  # a constant gene's NaN is left out
    (0.3, 0.3)

    """

    split: str
    per_gene: pd.DataFrame
    residuals: np.ndarray
    shape_area_um2: float
    seconds: float

    def mean(self, metric: str) -> float:
        """A metric's mean over the genes (constant genes left out)."""
        return float(np.nanmean(self.per_gene[metric].to_numpy(np.float64)))


def held_out_fit(
    train_further: Callable[..., object],
    objects: list[SpatialData],
    resolved: list,
    section_names: Sequence[str] | None,
    seed: int,
    resolve_kwargs: dict | None,
) -> HeldOutFit:
    """Train a further model without part of ``objects`` and measure it where it was held out.

    ``train_further(objects, image=, shapes=, table=, section_names=)`` trains it (the caller fixes the genes and
    settings); ``resolved`` are the objects' resolved inputs (:func:`pixnet.data.training_sections.resolve_sections`).
    The held-out shape set with the most measured shapes is measured (one size: residuals grow with it).

    Examples
    --------
    >>> import pixnet
    >>> from pixnet.data.training_sections import resolve_sections
    >>> from pixnet.models.held_out import held_out_fit
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600, n_genes=12, seed=5)
    >>> objects, resolved = resolve_sections(sdata, None, None, None, 1.0, None)
    >>> def train_further(subset, **elements):  # a tiny model; the caller fixes genes and settings
    ...     return pixnet.tl.train(subset, **elements, preset="paper", encoder_weights="random", genes=["SYN000",
    ...                            "SYN001"], decoder_width=8, patch_size=96, epochs=1, progress=False)
    >>> fit = held_out_fit(train_further, objects, resolved, None, seed=0, resolve_kwargs=None)
    >>> fit.split, list(fit.per_gene.index), fit.residuals.shape[1]
    ('the right-most 25% of the shapes', ['SYN000', 'SYN001'], 2)

    """
    started = time.perf_counter()
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
    return HeldOutFit(
        split=split,
        per_gene=per_gene.loc[list(further.genes)],
        residuals=np.sort(pair.measured - pair.predicted, axis=0),
        shape_area_um2=float(np.median(predicted_table.obs["area_um2"])),
        seconds=round(time.perf_counter() - started, 1),
    )


def reliability_record(fit: HeldOutFit) -> dict:
    """What :attr:`PixNetConfig.reliability` stores of a held-out fit.

    The split, per gene (in the model's gene order) ``pcc`` and ``partial_pcc`` on the held-out shapes; for each
    of :data:`INTERVAL_LEVELS` the equal-tailed conformal quantiles of the residuals: ``residual_low`` and
    ``residual_high``, the order statistics ``floor((n + 1)(1 - level) / 2)`` and ``ceil((n + 1)(1 + level) / 2)``
    of ``n``; the held-out shapes' median area and the seconds it took. The residuals are skewed (a sparse gene's
    zeros lie far below its prediction), so the intervals are not symmetric.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from pixnet.models.held_out import HeldOutFit, reliability_record
    >>> residuals = np.sort(np.random.default_rng(0).normal(size=(99, 2)), axis=0)
    >>> per_gene = pd.DataFrame({"pcc": [0.5, 0.1], "partial_pcc": [0.3, 0.0]}, index=["A", "B"])
    >>> record = reliability_record(HeldOutFit("section 'S1'", per_gene, residuals, 2376.0, 1.0))
    >>> record["levels"], record["n_shapes"]
    ([0.5, 0.8, 0.9, 0.95], 99)
    >>> record["residual_low"][2] == residuals[4].tolist()  # 90 %: the 5th of 99 from below, the 95th above
    True
    >>> record["residual_high"][2] == residuals[94].tolist()
    True

    """
    residual, n = fit.residuals, len(fit.residuals)
    # (1 - 0.9) is 0.0999...: without the tolerance, floor(100 x 0.1 / 2) would be the 4th, not the 5th
    low = [max(1, int(np.floor((n + 1) * (1 - level) / 2 + 1e-9))) - 1 for level in INTERVAL_LEVELS]
    high = [min(n, int(np.ceil((n + 1) * (1 + level) / 2 - 1e-9))) - 1 for level in INTERVAL_LEVELS]
    record = {
        "split": fit.split,
        "n_shapes": int(n),
        "shape_area_um2": fit.shape_area_um2,
        "pcc": _listed(fit.per_gene["pcc"]),
        "partial_pcc": _listed(fit.per_gene["partial_pcc"]),
        "levels": list(INTERVAL_LEVELS),
        "residual_low": [residual[r, :].tolist() for r in low],
        "residual_high": [residual[r, :].tolist() for r in high],
        "seconds": fit.seconds,
    }
    logger.info(
        "Reliability from %d held-out shapes (%s): median expected PCC %.3f",
        n,
        fit.split,
        float(np.nanmedian(fit.per_gene["pcc"])),
    )
    return record


def _listed(values) -> list[float | None]:
    """JSON-storable: NaN (a constant gene) as ``None``."""
    return [None if not np.isfinite(v) else float(v) for v in np.asarray(values, np.float64)]
