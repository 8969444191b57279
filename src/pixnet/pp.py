"""Gene selection and target normalisation, recorded by name and parameters so that a model can replay them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["NORMALIZATIONS", "Normalization", "check_counts", "normalize", "select_genes", "spot_totals"]


def select_genes(
    tables: ad.AnnData | Sequence[ad.AnnData], n_top: int = 250, genes: Sequence[str] | None = None
) -> dict:
    """Choose the genes to model.

    Parameters
    ----------
    tables
        Measured tables of the training sections (raw counts).
    n_top
        Number of genes with the highest mean expression (the PixNet paper uses 250). Each section's spots are
        first divided by their total, and the per-section means are averaged, so a deeply sequenced section
        does not dominate the choice.
    genes
        An explicit gene list instead; every gene must be present in every table.

    Returns
    -------
    A record ``{"method", "params", "genes"}`` that a saved model stores.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
    >>> pixnet.pp.select_genes(sdata["synthetic_visium_table"], n_top=5)["genes"]  # doctest: +ELLIPSIS
    [...]

    """
    tables = [tables] if isinstance(tables, ad.AnnData) else list(tables)
    if not tables:
        raise ValueError("select_genes needs at least one table.")
    for t in tables:
        if t.var_names.has_duplicates:
            repeated = t.var_names[t.var_names.duplicated()].unique().tolist()
            raise ValueError(
                f"A measured table names {len(repeated)} genes more than once, e.g. {repeated[:5]}; make them "
                "unique first (anndata's table.var_names_make_unique())."
            )
    shared = tables[0].var_names
    for t in tables[1:]:
        shared = shared.intersection(t.var_names, sort=False)
    if genes is not None:
        if isinstance(genes, str) or len(genes) == 0:
            raise ValueError(f"genes must be a non-empty list of gene names, got {genes!r}.")
        listed = pd.Index(list(genes))
        repeated = sorted(listed[listed.duplicated()].unique())
        if repeated:
            raise ValueError(f"genes lists {repeated[:5]} more than once; each gene can be modelled once.")
        missing = [g for g in genes if g not in shared]
        if missing:
            hint = close_names(missing[0], shared) or "."
            raise ValueError(f"{len(missing)} requested genes are missing from some tables, e.g. {missing[:5]}{hint}")
        return {"method": "list", "params": {}, "genes": list(genes)}
    if n_top < 1:
        raise ValueError(f"n_top must be >= 1, got {n_top}.")
    if len(shared) == 0:
        raise ValueError("The tables share no gene names.")
    means = np.mean([_mean_fraction(t[:, shared]) for t in tables], axis=0)
    order = np.argsort(-means, kind="stable")[: min(n_top, len(shared))]
    return {"method": "top_mean", "params": {"n_top": int(n_top)}, "genes": [str(g) for g in shared[order]]}


def close_names(name: str, names: Sequence[str]) -> str:
    """``"; did you mean ...?"`` with the names closest to ``name`` (case ignored), or ``""``."""
    import difflib

    by_lower = {}
    for n in names:
        by_lower.setdefault(str(n).lower(), str(n))
    close = difflib.get_close_matches(str(name).lower(), list(by_lower), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(repr(by_lower[c]) for c in close)}?" if close else ""


def _mean_fraction(table: ad.AnnData) -> np.ndarray:
    x = table.X
    totals = np.asarray(x.sum(axis=1)).ravel()
    scale = 1.0 / np.maximum(totals, 1e-12)
    fractions = sp.diags(scale) @ x if sp.issparse(x) else x * scale[:, None]
    return np.asarray(fractions.mean(axis=0)).ravel()


@dataclass(frozen=True)
class Normalization:
    """A target normalisation: method name and parameters.

    Methods (``total`` is each spot's count over *all* genes, before gene selection):

    - ``"total_log"`` (the paper): ``log(1 + counts / total * target_sum * area / reference_area)``.
    - ``"total"``: the same without the log.
    - ``"log1p"``: ``log(1 + counts)``.
    - ``"none"``: raw counts.

    Units. PixNet's dense map is a density whose sum over a spot's pixels is the spot's value before the
    log (Eq. 9), so that value must be *extensive*: it must grow with the spot's area, or 2 µm and 16 µm bins
    could not be supervised by one map. Per-spot-total methods are therefore scaled by
    ``area / reference_area_um2`` when the spot area is given (training and prediction always give it).
    For spots of one size this is the paper's normalisation up to a constant inside the log; raw-count
    methods are extensive already.

    Examples
    --------
    >>> import numpy as np
    >>> import pixnet
    >>> norm = pixnet.pp.Normalization("total", {"target_sum": 1e4})
    >>> norm.values(np.array([[5.0, 15.0]]), totals=np.array([20.0]))
    array([[2500., 7500.]])
    >>> norm = pixnet.pp.Normalization()  # "total_log", the paper's
    >>> norm.log, pixnet.pp.Normalization.from_dict(norm.to_dict()) == norm
    (True, True)

    """

    method: str = "total_log"
    params: dict = field(default_factory=lambda: {"target_sum": 1e4, "reference_area_um2": 100.0})

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATIONS:
            raise ValueError(f"Unknown normalisation {self.method!r}; choose one of {sorted(NORMALIZATIONS)}.")

    @property
    def per_spot_total(self) -> bool:
        """Whether counts are divided by the spot's total."""
        return self.method in ("total", "total_log")

    @property
    def log(self) -> bool:
        """Whether values are log1p-transformed."""
        return self.method in ("total_log", "log1p")

    def values(self, counts: np.ndarray, totals: np.ndarray, area_um2: np.ndarray | float | None = None) -> np.ndarray:
        """Extensive values before the log (what the dense map sums to); numpy arrays or torch tensors."""
        if not self.per_spot_total:
            return counts
        if hasattr(totals, "clamp_min"):  # torch: keeps the graph of predicted totals
            scale = self.params.get("target_sum", 1e4) / totals.clamp_min(1e-12)
        else:
            scale = self.params.get("target_sum", 1e4) / np.maximum(totals, 1e-12)
        if area_um2 is not None:
            area = area_um2 if hasattr(area_um2, "clamp_min") else np.asarray(area_um2, dtype=np.float64)
            scale = scale * area / self.params.get("reference_area_um2", 100.0)
        return counts * scale.reshape(-1, 1) if hasattr(scale, "reshape") else counts * scale

    def from_count_sums(self, sums, area_um2):
        """Targets of shapes from their sums of a counts map: ``(n, n_genes + 1)``, the last column other genes'.

        A shape's expected counts of each gene are sums over its pixels, and its total is theirs plus the other
        genes' (the last column); dividing them gives its composition, as measured counts are divided by their
        own total. A map of the normalised values themselves cannot do this: a bin's composition is not the sum
        of its parts', so a bin mixing background and nuclei is wrong in every unit but counts. The modelled
        genes are in their own total, so an error of the map's overall scale cancels.
        """
        return self.transform(self.values(sums[:, :-1], count_totals(sums), area_um2))

    def exposure(self, totals: np.ndarray, area_um2: np.ndarray | float | None = None) -> np.ndarray:
        """Counts per unit of value of each spot: ``counts = values * exposure`` (the Poisson likelihood's offset)."""
        totals = np.asarray(totals, dtype=np.float64)
        if not self.per_spot_total:
            return np.ones_like(totals)
        return 1.0 / self.values(np.ones((len(totals), 1)), totals, area_um2)[:, 0]

    def transform(self, values):
        """Values -> targets (``log1p`` for log methods); works on numpy arrays and torch tensors."""
        if not self.log:
            return values
        return values.log1p() if hasattr(values, "log1p") else np.log1p(values)

    def inverse_transform(self, targets):
        """Targets -> values."""
        if not self.log:
            return targets
        return targets.expm1() if hasattr(targets, "expm1") else np.expm1(targets)

    def to_dict(self) -> dict:
        """JSON-serialisable record."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> Normalization:
        """Inverse of :meth:`to_dict`."""
        return cls(method=record["method"], params=dict(record.get("params", {})))


NORMALIZATIONS = ("total_log", "total", "log1p", "none")


def check_counts(table: ad.AnnData, name: str = "table") -> None:
    """Refuse a table whose ``X`` does not hold raw counts, saying what was found.

    pixnet normalises counts itself (:func:`normalize`) and sums its dense map over shapes in count space, so
    NaN, negative or mostly fractional values (already normalised, log-transformed or scaled) would be
    trained on as counts.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from pixnet.pp import check_counts
    >>> check_counts(ad.AnnData(np.array([[0.0, 3.0], [1.0, 2.0]])))
    >>> check_counts(ad.AnnData(np.log1p(np.array([[0.0, 3.0], [1.0, 2.0]]))))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Table 'table' holds fractional values in 3 of its 3 non-zero entries (max 1.386): it looks ...

    """
    x = table.X
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    values = np.asarray(values, dtype=np.float64)
    hint = "pixnet needs raw counts in X (e.g. table.X = table.layers['counts'])."
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(f"Table {name!r} holds {int(bad.sum())} NaN or infinite values. {hint}")
    if values.size and values.min() < 0:
        raise ValueError(
            f"Table {name!r} holds negative values (min {values.min():.4g}): it looks scaled or centred. {hint}"
        )
    nonzero = values[values != 0]
    fractional = int((np.abs(nonzero - np.round(nonzero)) > 1e-6).sum())
    if nonzero.size and fractional > nonzero.size / 2:
        raise ValueError(
            f"Table {name!r} holds fractional values in {fractional} of its {nonzero.size} non-zero entries (max "
            f"{nonzero.max():.4g}): it looks normalised or log-transformed. {hint}"
        )


def normalize(
    table: ad.AnnData,
    genes: Sequence[str],
    normalization: Normalization | None = None,
    area_um2: np.ndarray | float | None = None,
) -> np.ndarray:
    """Targets for the given genes: a dense ``(n_obs, n_genes)`` float32 array.

    Parameters
    ----------
    table
        Raw counts; totals are taken over all of its genes.
    genes
        Genes to return, in this order.
    normalization
        Defaults to ``Normalization()`` (``"total_log"``, target sum 1e4).
    area_um2
        Area of each spot in µm² (see :class:`Normalization` for why); ``None`` leaves per-spot-total values
        unscaled, as in the paper.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from pixnet.pp import normalize, Normalization
    >>> t = ad.AnnData(np.array([[1.0, 3.0]]))
    >>> normalize(t, ["0"], Normalization("total", {"target_sum": 1.0}))
    array([[0.25]], dtype=float32)

    """
    normalization = normalization or Normalization()
    missing = [g for g in genes if g not in table.var_names]
    if missing:
        raise ValueError(f"{len(missing)} genes are missing from the table, e.g. {missing[:5]}.")
    totals = spot_totals(table)
    counts = table[:, list(genes)].X
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    values = normalization.values(counts.astype(np.float64), totals, area_um2)
    return np.asarray(normalization.transform(values), dtype=np.float32)


def count_totals(sums):
    """Each row's total of a counts map's sums: its genes' and the other genes' (last column); numpy or torch."""
    return sums.sum(axis=1) if sums.shape[1] == 1 else sums[:, :-1].sum(axis=1) + sums[:, -1]


def spot_totals(table: ad.AnnData) -> np.ndarray:
    """Each spot's count over all genes of ``table`` (what per-spot-total normalisations divide by).

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> from pixnet.pp import spot_totals
    >>> spot_totals(ad.AnnData(np.array([[1.0, 3.0], [0.0, 2.0]])))
    array([4., 2.])

    """
    return np.asarray(table.X.sum(axis=1), dtype=np.float64).ravel()
