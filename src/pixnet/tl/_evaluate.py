"""``pixnet.tl.evaluate``: predicted vs measured expression, per gene and summarised."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from spatialdata import SpatialData
from spatialdata.models import get_table_keys

from ..constants import Keys
from ..data import tables
from ..metrics import gene_metrics, summarize_metrics, uncertainty_calibration
from ..pp import Normalization, normalize

logger = logging.getLogger(__name__)

__all__ = ["Paired", "evaluate", "paired_values"]

MODES = ("pooled", "per_section")


def _table(sdata: SpatialData | None, table: str | ad.AnnData, what: str) -> tuple[ad.AnnData, str]:
    if isinstance(table, ad.AnnData):
        return table, what
    if sdata is None:
        raise ValueError(f"{what}={table!r} names a table, so pass the SpatialData object that holds it.")
    if table not in sdata.tables:
        raise KeyError(f"No table {table!r} in the object; tables: {sorted(sdata.tables)}.")
    return sdata.tables[table], table


def _keys(table: ad.AnnData) -> tuple[str, str] | None:
    try:
        _, region_key, instance_key = get_table_keys(table)
    except (KeyError, ValueError, TypeError):
        return None
    return region_key, instance_key


def _match(predicted: ad.AnnData, measured: ad.AnnData) -> np.ndarray:
    """Row of ``predicted`` for each measured row: by (region, instance id) when both annotate shapes."""
    p_keys, m_keys = _keys(predicted), _keys(measured)
    if p_keys and m_keys and all(k in t.obs for t, keys in ((predicted, p_keys), (measured, m_keys)) for k in keys):
        p_index = pd.MultiIndex.from_arrays([predicted.obs[k].astype(str).to_numpy() for k in p_keys])
        m_index = pd.MultiIndex.from_arrays([measured.obs[k].astype(str).to_numpy() for k in m_keys])
        how = f"region and instance id ({p_keys[1]!r} / {m_keys[1]!r})"
    else:
        p_index, m_index, how = predicted.obs_names, measured.obs_names, "obs_names"
    if p_index.has_duplicates:
        raise ValueError(f"The predicted table has duplicate rows by {how}; each shape must be predicted once.")
    rows = p_index.get_indexer(m_index)
    if (rows < 0).any():
        missing = m_index[rows < 0]
        raise ValueError(
            f"{len(missing)} of {len(m_index)} measured rows have no prediction (matched by {how}, e.g. "
            f"{list(missing[:3])}); predict the same shapes the measured table annotates."
        )
    return rows


def _normalization(predicted: ad.AnnData, normalization) -> Normalization:
    if normalization is not None:
        return normalization if isinstance(normalization, Normalization) else Normalization(normalization)
    record = predicted.uns.get(Keys.UNS, {}).get("normalization")
    if record is None:
        raise ValueError(
            "The predicted table does not record its units (uns['pixnet']['normalization'], written by "
            "pixnet.tl.predict); pass normalization= (e.g. 'none' if the measured table is in the same units)."
        )
    return Normalization.from_dict(record)


@dataclass
class Paired:
    """Predicted and measured values of the same spots and genes, in the predictions' units."""

    predicted: np.ndarray  # (n_measured, n_genes)
    measured: np.ndarray
    genes: list[str]
    predicted_table: ad.AnnData
    predicted_name: str
    measured_table: ad.AnnData
    measured_name: str
    normalization: Normalization
    std: np.ndarray | None = None  # the predicted table's layers["std"], rows as predicted


def paired_values(
    sdata: SpatialData | None,
    predicted: str | ad.AnnData,
    measured: str | ad.AnnData | None = None,
    *,
    genes: list[str] | None = None,
    normalization: str | Normalization | None = None,
) -> Paired:
    """Match predicted to measured rows and bring the measured counts into the predictions' units.

    See :func:`evaluate` for the arguments. Rows follow the measured table.
    """
    predicted_table, predicted_name = _table(sdata, predicted, "predicted")
    if measured is None:
        regions = tables.table_regions(predicted_table)
        if sdata is None or len(regions) != 1:
            raise ValueError("Cannot find the measured table by itself: pass measured= (a table name or AnnData).")
        measured = tables.measured_table(sdata, regions[0], None, required=True)
    measured_table, measured_name = _table(sdata, measured, "measured")
    if Keys.UNS in measured_table.uns and normalization is None:
        raise ValueError(f"The measured table {measured_name!r} is a pixnet output, not a measurement.")
    genes = list(predicted_table.var_names) if genes is None else list(genes)
    for side, table in (("predicted", predicted_table), ("measured", measured_table)):
        missing = [g for g in genes if g not in table.var_names]
        if missing:
            raise ValueError(f"{len(missing)} genes are missing from the {side} table, e.g. {missing[:5]}.")
    units = _normalization(predicted_table, normalization)
    matched = predicted_table[_match(predicted_table, measured_table)]
    area = matched.obs[Keys.AREA].to_numpy(np.float64) if Keys.AREA in matched.obs else None
    values = matched[:, genes].X
    values = np.asarray(values.toarray() if hasattr(values, "toarray") else values, np.float64)
    truth = normalize(measured_table, genes, units, area_um2=area).astype(np.float64)
    std = None
    if Keys.STD in matched.layers:
        std = matched[:, genes].layers[Keys.STD]
        std = np.asarray(std.toarray() if hasattr(std, "toarray") else std, np.float64)
    return Paired(values, truth, genes, predicted_table, predicted_name, measured_table, measured_name, units, std)


def evaluate(
    sdata: SpatialData | None,
    predicted: str | ad.AnnData,
    measured: str | ad.AnnData | None = None,
    *,
    genes: list[str] | None = None,
    mode: str = "pooled",
    section_key: str | None = None,
    constant_genes: str = "omit",
    normalization: str | Normalization | None = None,
    key_added: str | None = Keys.EVALUATION,
    per_gene: bool = False,
) -> pd.DataFrame:
    """Compare predicted with measured expression: per-gene PCC, MSE, MAE and calibration, and PCC@F/S/M.

    The measured counts are brought into the predictions' units first, with the normalisation the predicted
    table records (the model's; per-spot totals over all measured genes, scaled by the shape areas in
    ``obs['area_um2']``), so that both sides are exactly what the model was trained to match.

    Parameters
    ----------
    sdata
        The object holding the tables (may be ``None`` when both tables are given as AnnData).
    predicted
        Predicted table (name or AnnData), e.g. ``"pixnet_spots"`` from :func:`pixnet.tl.predict`.
    measured
        Measured raw counts (name or AnnData); by default the measured table of the shapes the predicted table
        annotates. Rows are matched by region and instance id when both tables annotate shapes, else by
        ``obs_names``; every measured row needs a prediction (extra predicted rows are ignored).
    genes
        Genes to evaluate; default: all predicted genes (all must be measured).
    mode
        ``"pooled"``: all spots together, PCC across them; ``"per_section"``: metrics within each section (the
        values of ``section_key``), then the sections averaged, each counting once. Pooled PCC over several
        sections also rewards getting differences *between* sections right, and is usually higher.
    section_key
        Measured ``obs`` column naming each spot's section (``"per_section"``); default: the table's region
        key. To evaluate sections kept in separate objects, concatenate their tables with
        ``anndata.concat(..., label="section")`` and pass ``section_key="section"``.
    constant_genes
        Policy for genes whose predicted or measured values are constant (PCC undefined), see
        :data:`pixnet.metrics.CONSTANT_GENE_POLICIES`: ``"omit"`` them from PCC@F/S/M or count them as
        ``"minus_one"``.
    normalization
        Units of the predictions, overriding the predicted table's record (``"none"``: compare as they are).
    key_added
        Store ``{"summary", "per_gene", "params"}`` in ``predicted.uns[key_added]``; ``None`` stores nothing.
    per_gene
        Return the per-gene table instead of the summary.

    Returns
    -------
    The summary: one row per section (``"pooled"`` in pooled mode; the sections and their ``"mean"`` per
    section) with columns ``pcc_f`` (first quartile of the per-gene PCC), ``pcc_s`` (median), ``pcc_m`` (mean),
    ``mse``, ``mae`` (means over genes), ``std_ratio`` and ``slope`` (calibration: medians over genes of the
    predictions' spread relative to the measurements' and of the slope of measured on predicted; both 1 when
    calibrated), ``n_spots``, ``n_genes`` and ``n_constant``; where the predictions have ``layers["std"]``
    (``pixnet.tl.predict(..., uncertainty=True)``), also ``coverage_50``, ``coverage_90`` and
    ``error_std_spearman`` over all rows (see :func:`pixnet.metrics.uncertainty_calibration`). With ``per_gene=True``,
    one row per section and gene (see :func:`pixnet.metrics.gene_metrics`).

    Examples
    --------
    >>> pixnet.tl.predict(sdata, shapes="spots")  # doctest: +SKIP
    >>> pixnet.tl.evaluate(sdata, "pixnet_spots")  # doctest: +SKIP

    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    pair = paired_values(sdata, predicted, measured, genes=genes, normalization=normalization)
    if mode == "per_section":
        section_key = section_key or (_keys(pair.measured_table) or (None, None))[0]
        if section_key is None or section_key not in pair.measured_table.obs:
            raise ValueError(f"mode='per_section' needs a section column in measured.obs; got {section_key!r}.")
    sections = pair.measured_table.obs[section_key].astype(str).to_numpy() if mode == "per_section" else None
    per_gene_table = gene_metrics(pair.predicted, pair.measured, pair.genes, sections)
    summary = summarize_metrics(per_gene_table, constant_genes)
    if mode == "pooled":
        summary.index = pd.Index(["pooled"], name="section")
        per_gene_table["section"] = "pooled"
    if pair.std is not None:  # over all rows, also per section
        for key, value in uncertainty_calibration(pair.predicted, pair.measured, pair.std).items():
            summary[key] = value
    logger.info("Evaluated %s against %s: %s", pair.predicted_name, pair.measured_name, summary.iloc[-1].to_dict())
    if key_added is not None:
        pair.predicted_table.uns[key_added] = {
            "summary": summary,
            "per_gene": per_gene_table,
            "params": {
                "measured": pair.measured_name,
                "mode": mode,
                "section_key": section_key or "",
                "constant_genes": constant_genes,
                "normalization": pair.normalization.to_dict(),
            },
        }
    return per_gene_table if per_gene else summary
