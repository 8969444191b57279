"""Plots of agreement: per-gene PCC distributions, predicted vs measured scatter, expected vs actual PCC."""

from __future__ import annotations

# pyplot is imported where a figure is drawn: `import pixnet` does not start a matplotlib backend
from collections.abc import Mapping
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from spatialdata import SpatialData

from ..constants import Keys
from ..data.pairing import paired_values
from ..metrics import gene_metrics, reliability_ranking
from ._utils import finish

__all__ = ["pcc_distribution", "reliability", "scatter"]


def _per_gene(result: pd.DataFrame | ad.AnnData, key: str) -> pd.DataFrame:
    if isinstance(result, ad.AnnData):
        if key not in result.uns:
            raise ValueError(f"The table has no uns[{key!r}]; run pixnet.tl.evaluate on it first.")
        return result.uns[key]["per_gene"]
    if "pcc" not in result:
        raise ValueError("Expected per-gene results with a 'pcc' column (pixnet.tl.evaluate(..., per_gene=True)).")
    return result


def pcc_distribution(
    results: Mapping[str, pd.DataFrame | ad.AnnData],
    *,
    key: str = Keys.EVALUATION,
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Per-gene PCC of one or more methods, as box plots with every gene drawn.

    Parameters
    ----------
    results
        Method name -> per-gene results (``pixnet.tl.evaluate(..., per_gene=True)``) or a predicted table that
        :func:`pixnet.tl.evaluate` annotated. Genes with undefined PCC (constant values) are not drawn.
    key
        Where evaluate stored its results in a table's ``uns``.
    ax
        Axes to draw into.
    save
        Write the figure to this file.

    Returns
    -------
    The axes.

    Examples
    --------
    With ``sdata`` as after predict's example, the 2 µm predictions against their measured counts, and the map's
    16 µm readout against the 16 µm bins:

    >>> import pixnet
    >>> pixnet.tl.predict(sdata, shapes="bins_16um", model=model, key_added="coarse", progress=False)
    >>> fine = pixnet.tl.evaluate(sdata, "pixnet_synthetic_square_002um")
    >>> coarse = pixnet.tl.evaluate(sdata, "coarse_synthetic_square_016um")
    >>> ax = pixnet.pl.pcc_distribution(
    ...     {"2 µm": sdata["pixnet_synthetic_square_002um"], "16 µm": sdata["coarse_synthetic_square_016um"]},
    ...     save="pcc.png",
    ... )
    >>> [label.get_text().splitlines()[0] for label in ax.get_xticklabels()]  # each with its PCC@M below
    ['2 µm', '16 µm']

    """
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("results is empty: pass {method name: per-gene results}.")
    values = {name: _per_gene(r, key)["pcc"].dropna().to_numpy() for name, r in results.items()}
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 + 1.4 * len(values), 4), layout="constrained")
    ax.boxplot(list(values.values()), showfliers=False, widths=0.5)
    rng = np.random.default_rng(0)  # jitter only
    for i, v in enumerate(values.values(), start=1):
        ax.scatter(i + rng.uniform(-0.15, 0.15, v.size), v, s=6, alpha=0.5, color="tab:blue", linewidths=0)
    ax.set_xticks(range(1, len(values) + 1))
    ax.set_xticklabels([f"{name}\nPCC@M {v.mean():.3f}" if v.size else name for name, v in values.items()])
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("per-gene PCC")
    n_genes = max(v.size for v in values.values())
    ax.set_title(f"Per-gene PCC ({n_genes} genes)")
    finish(ax.figure, save)
    return ax


def scatter(
    sdata: SpatialData | None,
    gene: str,
    predicted: str | ad.AnnData,
    measured: str | ad.AnnData | None = None,
    *,
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Predicted against measured values of one gene, in the predictions' units, with their PCC.

    Parameters
    ----------
    sdata, predicted, measured
        As for :func:`pixnet.tl.evaluate`.
    gene
        The gene.
    ax
        Axes to draw into.
    save
        Write the figure to this file.

    Returns
    -------
    The axes.

    Examples
    --------
    With ``sdata`` as after predict's example:

    >>> import pixnet
    >>> ax = pixnet.pl.scatter(sdata, model.genes[0], "pixnet_synthetic_square_002um", save="scatter.png")
    >>> len(ax.collections[0].get_offsets())  # one point per 2 µm bin
    832

    """
    import matplotlib.pyplot as plt

    pair = paired_values(sdata, predicted, measured, genes=[gene])
    x, y = pair.measured[:, 0], pair.predicted[:, 0]
    pcc = gene_metrics(pair.predicted, pair.measured, [gene])["pcc"].iloc[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4), layout="constrained")
    ax.scatter(x, y, s=8, alpha=0.6, linewidths=0)
    low, high = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([low, high], [low, high], color="grey", linewidth=0.8, label="y = x")
    units = pair.normalization.method
    ax.set_xlabel(f"measured ({units})")
    ax.set_ylabel(f"predicted ({units})")
    ax.set_title(f"{gene}: PCC {pcc:.3f}, {len(x)} spots")
    ax.legend(loc="upper left")
    finish(ax.figure, save)
    return ax


def reliability(
    table: ad.AnnData,
    *,
    key: str = Keys.EVALUATION,
    ax: Axes | None = None,
    save: str | Path | None = None,
) -> Axes:
    """Each gene's expected PCC (held out at training), ranked, with its actual PCC where it was evaluated.

    Bars: ``var["expected_pcc"]`` of a table predicted by a model trained with ``reliability=True``, genes
    flagged ``no_expected_skill`` in grey. Where :func:`pixnet.tl.evaluate` annotated the table, dots show each
    gene's actual PCC and the title their Spearman correlation with the expected ones.

    Parameters
    ----------
    table
        A predicted table with the reliability columns.
    key
        Where evaluate stored its results in the table's ``uns``.
    ax
        Axes to draw into.
    save
        Write the figure to this file.

    Returns
    -------
    The axes.

    Examples
    --------
    With ``sdata`` as after predict's example, a model that also estimated its genes' reliability:

    >>> import pixnet
    >>> model = pixnet.tl.train(sdata, shapes="bins_8um", preset="paper", encoder_weights="random",
    ...                         decoder_width=16, patch_size=64, epochs=1, reliability=True, progress=False)
    >>> pixnet.tl.predict(sdata, shapes="bins_8um", model=model, key_added="reliable", progress=False)
    >>> summary = pixnet.tl.evaluate(sdata, "reliable_synthetic_square_008um")
    >>> ax = pixnet.pl.reliability(sdata["reliable_synthetic_square_008um"], save="reliability.png")
    >>> ax.get_ylabel()
    'PCC'

    """
    import matplotlib.pyplot as plt

    if Keys.EXPECTED_PCC not in table.var:
        raise ValueError(
            f"The table has no var[{Keys.EXPECTED_PCC!r}]: predict with a model trained with reliability=True."
        )
    order = table.var[Keys.EXPECTED_PCC].astype(float).fillna(-np.inf).sort_values(ascending=False).index
    expected = table.var.loc[order, Keys.EXPECTED_PCC].astype(float)
    flagged = table.var.loc[order, Keys.NO_EXPECTED_SKILL].astype(bool).to_numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.12 * len(order) + 2), 3.2))
    x = np.arange(len(order))
    ax.bar(x, expected.fillna(0), color=np.where(flagged, "0.75", "tab:blue"), label="expected (held out in training)")
    title = "expected PCC per gene; grey: no expected skill"
    if key in table.uns:
        actual = _per_gene(table, key).groupby("gene")["pcc"].mean().reindex(order)
        ax.plot(x, actual.to_numpy(), "o", color="tab:orange", markersize=3, label="actual")
        ranking = reliability_ranking(expected, actual)
        if np.isfinite(ranking):
            title += f"\nSpearman(expected, actual) = {ranking:.2f}"
        ax.legend(frameon=False, fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xticks(x, order, rotation=90, fontsize=6 if len(order) > 30 else 8)
    ax.set_ylabel("PCC")
    ax.set_title(title, fontsize=9)
    finish(ax.figure, save)
    return ax
