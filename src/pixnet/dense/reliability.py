"""What a model trained with ``reliability=True`` adds to its predicted tables: per-gene reliability, intervals."""

from __future__ import annotations

import anndata as ad
import numpy as np

from ..constants import Keys
from ..data.inputs import ResolvedInputs

AREA_TOLERANCE = 2.0
"""Intervals are given for shapes whose median area is within this factor of the calibration shapes'."""


def check_interval(model, interval: float, inputs: ResolvedInputs) -> None:
    """Refuse an interval the model cannot give: no reliability record, another level, shapes of another size."""
    record = getattr(model.config, "reliability", None) or {}
    if not record.get("residual_high"):
        raise ValueError(
            "interval= needs a model trained with reliability=True (its residuals on held-out tissue calibrate "
            "the intervals); this model has none."
        )
    if interval not in record["levels"]:
        raise ValueError(f"interval must be one of the model's calibrated levels {record['levels']}, got {interval!r}.")
    if len(record["residual_high"][0]) != len(model.genes) or len(record["residual_low"][0]) != len(model.genes):
        raise ValueError("The model's reliability record does not have one residual quantile per gene.")
    calibrated = record["shape_area_um2"]
    mpp2 = inputs.image.microns_per_pixel**2
    for name, shapes in inputs.shapes.items():
        if shapes.polygons is not None:
            area = float(np.median(shapes.polygons.area)) * mpp2
        elif shapes.kind == "circle":
            area = float(np.pi * np.median(shapes.size_um) ** 2 / 4)
        else:
            area = float(np.median(shapes.size_um) ** 2)
        if not calibrated / AREA_TOLERANCE <= area <= calibrated * AREA_TOLERANCE:
            raise ValueError(
                f"The intervals were calibrated on shapes of {calibrated:.0f} µm²; {name!r} has shapes of {area:.0f} "
                "µm², and residuals grow with a shape's size. Predict without interval= for these shapes."
            )


def interval_layers(model, values, interval: float) -> dict:
    """``lower`` and ``upper``: the prediction plus each gene's low and high residual quantiles at ``interval``."""
    record = model.config.reliability
    level = record["levels"].index(interval)
    low, high = (np.asarray(record[k][level], np.float64)[None, :] for k in ("residual_low", "residual_high"))
    return {Keys.LOWER: values + low, Keys.UPPER: values + high}


def add_reliability(table: ad.AnnData, model) -> None:
    """``var`` columns of the model's held-out per-gene PCC and partial PCC, and the genes with no evident skill."""
    record = getattr(model.config, "reliability", None) or {}
    if not record.get("pcc"):
        return
    pcc, partial = (np.array(record[k], np.float64) for k in ("pcc", "partial_pcc"))  # None (constant gene): NaN
    table.var[Keys.EXPECTED_PCC] = pcc
    table.var[Keys.EXPECTED_PARTIAL_PCC] = partial
    # a correlation over n shapes is not distinguishable from 0 below about 2 / sqrt(n)
    table.var[Keys.NO_EXPECTED_SKILL] = ~(pcc > 2 / np.sqrt(record["n_shapes"]))
