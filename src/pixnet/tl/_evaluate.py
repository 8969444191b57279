"""``pixnet.tl.evaluate``: predicted vs measured expression, per gene and summarised."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from spatialdata import SpatialData

from ..constants import Keys
from ..data.pairing import paired_values
from ..data.tables import shape_keys
from ..metrics import (
    first_component_share,
    gene_metrics,
    reliability_ranking,
    summarize_metrics,
    uncertainty_calibration,
)
from ..pp import Normalization, spot_totals

logger = logging.getLogger(__name__)

__all__ = ["evaluate"]

MODES = ("pooled", "per_section")


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
    """Compare predicted with measured expression: per-gene PCC, MSE, MAE, calibration, PCC@F/S/M and beyond depth.

    The measured counts are brought into the predictions' units first, with the normalisation the predicted
    table records (the model's; per-spot totals over all measured genes, scaled by the shape areas in
    ``obs['area_um2']``), so that both sides are exactly what the model was trained to match.

    On sparse spots, PCC@F/S/M mostly measure each spot's sequencing depth: a normalised, log-transformed value
    of nearly every gene rises with depth, so one map of depth with a sign per gene scores well on them. The
    summary therefore also reports the **partial PCC given depth** (per gene, the PCC after removing from both
    sides their linear dependence on the spot's measured log depth, ``log1p`` of its total counts over all
    measured genes; a depth-only predictor scores 0) and the **first component's share** of the predictions'
    variance (1 when every gene is predicted as one pattern), see :mod:`pixnet.metrics`.

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
        Store ``{"summary", "per_gene", "params"}`` in ``predicted.uns[key_added]``; ``None`` stores nothing. An
        earlier evaluation there against another measured table moves to ``uns[f"{key_added}_vs_{its table}"]``.
    per_gene
        Return the per-gene table instead of the summary.

    Returns
    -------
    The summary: one row per section (``"pooled"`` in pooled mode; the sections and their ``"mean"`` per
    section) with columns ``pcc_f`` (first quartile of the per-gene PCC), ``pcc_s`` (median), ``pcc_m`` (mean),
    ``mse``, ``mae`` (means over genes), ``std_ratio`` and ``slope`` (calibration: medians over genes of the
    predictions' spread relative to the measurements' and of the slope of measured on predicted; both 1 when
    calibrated), ``partial_pcc_f``, ``partial_pcc_s``, ``partial_pcc_m`` (the partial PCC given depth: first
    quartile, median, mean over genes), ``depth_abs_pcc`` (median over genes of the absolute PCC of prediction
    and depth),
    ``pc1_share`` (the first principal component's share of the predictions' variance, genes standardised;
    see :func:`pixnet.metrics.first_component_share`), ``n_spots``, ``n_genes`` and ``n_constant``; where the
    predictions have ``layers["std"]`` (``pixnet.tl.predict(..., uncertainty=True)``), also ``coverage_50``,
    ``coverage_90`` and ``error_std_spearman`` over all rows (see :func:`pixnet.metrics.uncertainty_calibration`);
    where they have ``layers["lower"]`` and ``["upper"]`` (``predict(..., interval=0.9)``), ``interval_level``,
    ``interval_coverage`` (the share of measured values inside, per gene, averaged over genes) and
    ``interval_width`` (mean upper - lower), over all rows; where ``var`` has ``expected_pcc`` (a model trained
    with ``reliability=True``), ``reliability_spearman``: the Spearman correlation over genes of the expected
    and the actual PCC (see :func:`pixnet.metrics.reliability_ranking`).
    With ``per_gene=True``, one row per section and gene (see :func:`pixnet.metrics.gene_metrics`).

    Examples
    --------
    With ``sdata`` as after predict's example (predictions for the 2 µm bins, whose counts the model never saw):

    >>> import pixnet
    >>> summary = pixnet.tl.evaluate(sdata, "pixnet_synthetic_square_002um")
    >>> list(summary.columns[:4]), int(summary["n_spots"].iloc[0])
    (['pcc_f', 'pcc_s', 'pcc_m', 'partial_pcc_f'], 832)
    >>> "per_gene" in sdata["pixnet_synthetic_square_002um"].uns["pixnet_evaluation"]
    True

    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    pair = paired_values(sdata, predicted, measured, genes=genes, normalization=normalization)
    if mode == "per_section":
        section_key = section_key or (shape_keys(pair.measured_table) or (None, None))[0]
        if section_key is None or section_key not in pair.measured_table.obs:
            raise ValueError(f"mode='per_section' needs a section column in measured.obs; got {section_key!r}.")
    sections = pair.measured_table.obs[section_key].astype(str).to_numpy() if mode == "per_section" else None
    depth = np.log1p(spot_totals(pair.measured_table))
    per_gene_table = gene_metrics(pair.predicted, pair.measured, pair.genes, sections, depth=depth)
    summary = summarize_metrics(per_gene_table, constant_genes)
    if mode == "pooled":
        summary.index = pd.Index(["pooled"], name="section")
        per_gene_table["section"] = "pooled"
    groups = {"pooled": slice(None)} if mode == "pooled" else {str(s): sections == s for s in pd.unique(sections)}
    shares = pd.Series({name: first_component_share(pair.predicted[rows]) for name, rows in groups.items()})
    shares["mean"] = shares.mean()
    summary.insert(summary.columns.get_loc("mse"), "pc1_share", shares.reindex(summary.index).to_numpy())
    if pair.std is not None:  # over all rows, also per section
        for key, value in uncertainty_calibration(pair.predicted, pair.measured, pair.std).items():
            summary[key] = value
    if pair.interval is not None:  # over all rows, also per section
        lower, upper = pair.interval
        inside = (pair.measured >= lower) & (pair.measured <= upper)
        summary["interval_level"] = pair.predicted_table.uns.get(Keys.UNS, {}).get("params", {}).get("interval", np.nan)
        summary["interval_coverage"] = float(inside.mean(axis=0).mean())  # mean over genes of each one's coverage
        summary["interval_width"] = float((upper - lower).mean())
    if Keys.EXPECTED_PCC in pair.predicted_table.var:
        expected = pair.predicted_table.var.loc[pair.genes, Keys.EXPECTED_PCC]
        actual = per_gene_table.set_index("gene").groupby("section")["pcc"]
        rankings = {name: reliability_ranking(expected, actual.get_group(name)) for name in groups}
        rankings["mean"] = float(np.nanmean(list(rankings.values())))
        summary["reliability_spearman"] = pd.Series(rankings).reindex(summary.index).to_numpy()
    logger.info("Evaluated %s against %s: %s", pair.predicted_name, pair.measured_name, summary.iloc[-1].to_dict())
    if key_added is not None:
        uns = pair.predicted_table.uns
        earlier = uns.get(key_added, {}).get("params", {}).get("measured")
        if earlier is not None and earlier != pair.measured_name:  # a comparison with another table: keep it apart
            kept = f"{key_added}_vs_{earlier}" if earlier.isidentifier() else f"{key_added}_earlier"
            uns[kept] = uns.pop(key_added)
            logger.warning(
                "uns[%r] is now against %s; the evaluation against %s moved to uns[%r].",
                key_added,
                pair.measured_name,
                earlier,
                kept,
            )
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
