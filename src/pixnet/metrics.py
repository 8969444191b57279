"""Per-gene agreement between predicted and measured expression, and its summaries (PCC@F/S/M)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = [
    "CONSTANT_GENE_POLICIES",
    "first_component_share",
    "gene_metrics",
    "summarize_metrics",
    "uncertainty_calibration",
]

CONSTANT_GENE_POLICIES = ("omit", "minus_one")
"""How a gene whose predicted or measured values are constant enters PCC@F/S/M, where its PCC is undefined:

- ``"omit"``: left out of the PCC summaries (they are then over fewer genes; ``n_constant`` says how many).
- ``"minus_one"``: counted as PCC = -1, the worst possible value, so that a model that predicts a constant
  cannot look better than one that tries.
"""


def gene_metrics(
    predicted: np.ndarray,
    measured: np.ndarray,
    genes: list[str],
    sections: np.ndarray | None = None,
    depth: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-gene PCC, MSE, MAE and calibration, over all spots or per section; with ``depth``, PCC beyond depth.

    Parameters
    ----------
    predicted, measured
        ``(n_spots, n_genes)`` arrays in the same units.
    genes
        Gene names (columns).
    sections
        Section label per spot; ``None`` pools all spots into the section ``"all"``.
    depth
        Each spot's measured sequencing depth, e.g. ``log1p`` of its total counts. On sparse spots nearly every
        gene's normalised, log-transformed value rises with depth (deeper spots have fewer zeros), so one map of
        depth scores a high PCC for every gene while saying nothing about any of them.

    Returns
    -------
    One row per section and gene: ``section``, ``gene``, ``pcc`` (NaN where either side is constant),
    ``mse``, ``mae``, ``std_ratio`` (standard deviation of the predictions over that of the measurements: 1 when
    the predictions have the measurements' spread, near 0 when they are compressed towards the mean),
    ``slope`` (least-squares slope of measured on predicted: 1 when calibrated, above 1 when the predictions are
    too compressed, below 1 when they overshoot; NaN where either side is constant), ``n_spots`` and
    ``constant``. With ``depth``, also ``partial_pcc``: the PCC of prediction and measurement after each has had
    its linear dependence on depth (within the section) removed, i.e. the gene-specific agreement a depth-only
    predictor cannot have (it scores exactly 0); and ``depth_pcc``, the PCC of the prediction with depth (near
    ±1 when a gene's prediction is the depth map with a sign).

    Examples
    --------
    >>> import numpy as np
    >>> from pixnet.metrics import gene_metrics
    >>> gene_metrics(np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [4.0], [6.0]]), ["A"])[["gene", "pcc", "mae"]]
      gene  pcc  mae
    0    A  1.0  2.0

    """
    predicted, measured = np.asarray(predicted, np.float64), np.asarray(measured, np.float64)
    if predicted.shape != measured.shape or predicted.ndim != 2:
        raise ValueError(f"predicted {predicted.shape} and measured {measured.shape} must be equal (spots, genes).")
    if predicted.shape[1] != len(genes):
        raise ValueError(f"{len(genes)} gene names for {predicted.shape[1]} columns.")
    if sections is None:
        sections = np.full(len(predicted), "all", dtype=object)
    sections = np.asarray(sections)
    if depth is not None:
        depth = np.asarray(depth, np.float64).ravel()
        if len(depth) != len(predicted) or not np.isfinite(depth).all():
            raise ValueError(f"depth needs one finite value per spot ({len(predicted)}); got {len(depth)} values.")
    frames = []
    for section in pd.unique(sections):
        rows = sections == section
        p, m = predicted[rows], measured[rows]
        beyond_depth = {} if depth is None else _beyond_depth(p, m, depth[rows])
        frames.append(
            pd.DataFrame(
                {
                    "section": str(section),
                    "gene": list(genes),
                    "pcc": _pearson(p, m),
                    "mse": ((p - m) ** 2).mean(axis=0),
                    "mae": np.abs(p - m).mean(axis=0),
                    **_calibration(p, m),
                    **beyond_depth,
                    "n_spots": int(rows.sum()),
                    "constant": _constant(p) | _constant(m),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _beyond_depth(p: np.ndarray, m: np.ndarray, depth: np.ndarray) -> dict[str, np.ndarray]:
    """``partial_pcc`` (PCC of the residuals of both sides on [1, depth]) and ``depth_pcc`` per gene."""
    design = np.column_stack([np.ones_like(depth), depth])
    coefficients, *_ = np.linalg.lstsq(design, np.hstack([p, m]), rcond=None)
    residuals = np.hstack([p, m]) - design @ coefficients
    p_rest, m_rest = residuals[:, : p.shape[1]], residuals[:, p.shape[1] :]
    partial = _pearson(p_rest, m_rest, _constant(p) | _constant(m))
    # a prediction that is depth and nothing else has no residual (up to float32 rounding): no gene-specific
    # agreement, PCC 0 by definition
    no_rest = (p_rest.std(axis=0) <= 1e-5 * np.maximum(p.std(axis=0), 1e-300)) & ~(_constant(p) | _constant(m))
    partial[no_rest] = 0.0
    depth_column = np.broadcast_to(depth[:, None], p.shape)
    return {"partial_pcc": partial, "depth_pcc": _pearson(p, depth_column)}


def _constant(values: np.ndarray) -> np.ndarray:
    if len(values) < 2:
        return np.ones(values.shape[1], bool)
    spread = values.max(axis=0) - values.min(axis=0)
    return spread <= 1e-12 * np.maximum(np.abs(values).max(axis=0), 1.0)


def _calibration(p: np.ndarray, m: np.ndarray) -> dict[str, np.ndarray]:
    constant = _constant(p) | _constant(m)
    p_std, m_std = p.std(axis=0), m.std(axis=0)
    pc, mc = p - p.mean(axis=0), m - m.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(_constant(m), np.nan, p_std / m_std)
        slope = np.where(constant, np.nan, (pc * mc).sum(axis=0) / (pc**2).sum(axis=0))
    return {"std_ratio": ratio, "slope": slope}


def _pearson(p: np.ndarray, m: np.ndarray, undefined: np.ndarray | None = None) -> np.ndarray:
    pc, mc = p - p.mean(axis=0), m - m.mean(axis=0)
    denominator = np.sqrt((pc**2).sum(axis=0) * (mc**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        pcc = (pc * mc).sum(axis=0) / denominator
    pcc[_constant(p) | _constant(m) if undefined is None else undefined] = np.nan
    return np.clip(pcc, -1.0, 1.0)


def summarize_metrics(per_gene: pd.DataFrame, constant_genes: str = "omit") -> pd.DataFrame:
    """PCC@F (first quartile over genes), PCC@S (median), PCC@M (mean), mean MSE and MAE, calibration, per section.

    Parameters
    ----------
    per_gene
        Output of :func:`gene_metrics`.
    constant_genes
        One of :data:`CONSTANT_GENE_POLICIES`.

    Returns
    -------
    One row per section (index), columns ``pcc_f``, ``pcc_s``, ``pcc_m``, ``mse``, ``mae``, ``std_ratio``,
    ``slope``, ``n_spots``, ``n_genes`` and ``n_constant``, where ``std_ratio`` and ``slope`` are the medians
    over genes of the per-gene values (see :func:`gene_metrics`; constant genes left out); where ``per_gene``
    has ``partial_pcc`` (:func:`gene_metrics` with ``depth``), also ``partial_pcc_f``, ``partial_pcc_s`` and
    ``partial_pcc_m`` (its first quartile, median and mean) and ``depth_abs_pcc`` (the median over genes of
    the absolute PCC of prediction and depth); with more than one section, a last row ``"mean"`` averages the
    sections (each section counts once).

    Examples
    --------
    >>> import numpy as np
    >>> import pixnet
    >>> predicted = np.array([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])  # gene B predicted constant
    >>> measured = np.array([[2.0, 0.0], [4.0, 1.0], [6.0, 2.0]])
    >>> per_gene = pixnet.metrics.gene_metrics(predicted, measured, ["A", "B"])
    >>> summary = pixnet.metrics.summarize_metrics(per_gene)
    >>> float(summary.loc["all", "pcc_m"]), int(summary.loc["all", "n_constant"])
    (1.0, 1)
    >>> float(pixnet.metrics.summarize_metrics(per_gene, constant_genes="minus_one").loc["all", "pcc_m"])
    0.0

    """
    if constant_genes not in CONSTANT_GENE_POLICIES:
        raise ValueError(f"constant_genes must be one of {CONSTANT_GENE_POLICIES}, got {constant_genes!r}.")
    rows = {}
    for section, group in per_gene.groupby("section", sort=False):
        rows[section] = _pcc_summary(group, "pcc", constant_genes)
        if "partial_pcc" in group:
            rows[section] |= _pcc_summary(group, "partial_pcc", constant_genes)
            rows[section]["depth_abs_pcc"] = _median(group["depth_pcc"].abs())
        rows[section] |= {
            "mse": group["mse"].mean(),
            "mae": group["mae"].mean(),
            "std_ratio": _median(group["std_ratio"]),
            "slope": _median(group["slope"]),
            "n_spots": int(group["n_spots"].iloc[0]),
            "n_genes": len(group),
            "n_constant": int(group["constant"].sum()),
        }
    summary = pd.DataFrame.from_dict(rows, orient="index")
    if len(summary) > 1:
        mean = summary.mean(numeric_only=True)
        mean[["n_spots", "n_genes", "n_constant"]] = summary[["n_spots", "n_genes", "n_constant"]].sum()
        mean["n_genes"] = summary["n_genes"].iloc[0]
        summary.loc["mean"] = mean
    summary.index.name = "section"
    return summary


def _pcc_summary(group: pd.DataFrame, column: str, constant_genes: str) -> dict[str, float]:
    """``{column}_f``, ``_s``, ``_m``: first quartile, median and mean over genes, constant genes as the policy says."""
    pcc, constant = group[column].to_numpy(np.float64), group["constant"].to_numpy()
    pcc = pcc[~constant] if constant_genes == "omit" else np.where(constant, -1.0, pcc)
    quartiles = np.quantile(pcc, [0.25, 0.5]) if pcc.size else (np.nan, np.nan)
    return {f"{column}_f": quartiles[0], f"{column}_s": quartiles[1], f"{column}_m": pcc.mean() if pcc.size else np.nan}


def first_component_share(predicted: np.ndarray) -> float:
    """The share of the predictions' variance across spots in their first principal component, genes standardised.

    1 when every gene's prediction is one spatial pattern with a gene-specific sign, scale and offset (e.g. a
    map of sequencing depth); ``1 / n_genes`` when the genes vary independently. Each gene counts equally (its
    predictions are standardised first), so genes predicted with a tiny range weigh as much as the others;
    constant genes are left out.

    Parameters
    ----------
    predicted
        ``(n_spots, n_genes)``.

    Examples
    --------
    >>> import numpy as np
    >>> from pixnet.metrics import first_component_share
    >>> depth = np.random.default_rng(0).normal(size=100)
    >>> round(first_component_share(np.column_stack([depth, -0.1 * depth + 5, 3 * depth])), 3)
    1.0

    """
    values = np.asarray(predicted, np.float64)
    values = values[:, ~_constant(values)] if len(values) > 1 else values[:, :0]
    if values.shape[1] == 0:
        return np.nan
    standardised = (values - values.mean(axis=0)) / values.std(axis=0)
    singular = np.linalg.svd(standardised, compute_uv=False)
    return float(singular[0] ** 2 / (singular**2).sum())


def _median(values: pd.Series) -> float:
    finite = values.to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else np.nan


def uncertainty_calibration(predicted: np.ndarray, measured: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """How well a predicted spread (e.g. an ensemble's ``layers["std"]``) describes the errors.

    Parameters
    ----------
    predicted, measured, std
        ``(n_shapes, n_genes)`` in the same units.

    Returns
    -------
    ``coverage_50``, ``coverage_90``: the share of measured values inside ``predicted ± z * std`` with the
    ``z`` of a normal's central 50 % and 90 % (0.674, 1.645); calibrated intervals cover 0.5 and 0.9.
    ``error_std_spearman``: the mean over genes of the Spearman correlation, across shapes, of the absolute
    error with ``std`` (positive when the spread is larger where the errors are; genes with a constant error or
    spread are left out).

    Examples
    --------
    >>> import numpy as np
    >>> from pixnet.metrics import uncertainty_calibration
    >>> rng = np.random.default_rng(0)
    >>> std = rng.uniform(0.5, 2.0, (2000, 3))
    >>> measured = rng.normal(0.0, std)
    >>> result = uncertainty_calibration(np.zeros_like(std), measured, std)
    >>> round(result["coverage_90"], 2), result["error_std_spearman"] > 0.2
    (0.9, True)

    """
    from scipy.stats import spearmanr

    error = np.abs(np.asarray(measured, float) - np.asarray(predicted, float))
    std = np.asarray(std, float)
    result = {
        f"coverage_{int(100 * level)}": float((error <= z * std).mean()) for level, z in ((0.5, 0.6745), (0.9, 1.6449))
    }
    rhos = [
        spearmanr(error[:, g], std[:, g]).statistic
        for g in range(error.shape[1])
        if np.ptp(error[:, g]) > 0 and np.ptp(std[:, g]) > 0
    ]
    result["error_std_spearman"] = float(np.mean(rhos)) if rhos else float("nan")
    return result


def reliability_ranking(expected: pd.Series, actual: pd.Series) -> float:
    """Spearman correlation of genes' expected (held-out at training) and actual PCC; NaN with < 3 genes to rank."""
    both = pd.concat([expected.astype(float), actual.astype(float)], axis=1, join="inner").dropna()
    if len(both) < 3:
        return float("nan")
    return float(both.iloc[:, 0].corr(both.iloc[:, 1], method="spearman"))
