"""Predicted and measured tables side by side: rows matched by shape, counts in the predictions' units."""

from __future__ import annotations

from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd
from spatialdata import SpatialData

from ..constants import Keys
from ..pp import Normalization, normalize
from . import tables

__all__ = ["Paired", "paired_values"]


def _table(sdata: SpatialData | None, table: str | ad.AnnData, what: str) -> tuple[ad.AnnData, str]:
    if isinstance(table, ad.AnnData):
        return table, f"{what} (an AnnData of {table.n_obs} x {table.n_vars} passed directly)"
    if sdata is None:
        raise ValueError(f"{what}={table!r} names a table, so pass the SpatialData object that holds it.")
    if table not in sdata.tables:
        raise KeyError(f"No table {table!r} in the object; tables: {sorted(sdata.tables)}.")
    return sdata.tables[table], table


def _match(predicted: ad.AnnData, measured: ad.AnnData) -> np.ndarray:
    """Row of ``predicted`` for each measured row: by (region, instance id) when both annotate shapes."""
    p_keys, m_keys = tables.shape_keys(predicted), tables.shape_keys(measured)
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
    interval: tuple[np.ndarray, np.ndarray] | None = None  # layers["lower"] and ["upper"], rows as predicted


def paired_values(
    sdata: SpatialData | None,
    predicted: str | ad.AnnData,
    measured: str | ad.AnnData | None = None,
    *,
    genes: list[str] | None = None,
    normalization: str | Normalization | None = None,
) -> Paired:
    """Match predicted to measured rows and bring the measured counts into the predictions' units.

    See :func:`pixnet.tl.evaluate` for the arguments. Rows follow the measured table.
    """
    predicted_table, predicted_name = _table(sdata, predicted, "predicted")
    if measured is None:
        regions = tables.table_regions(predicted_table)
        if sdata is None or len(regions) != 1:
            raise ValueError("Cannot find the measured table by itself: pass measured= (a table name or AnnData).")
        measured = tables.measured_table(
            sdata, regions[0], None, required=True, purpose="to compare the predictions with (pass measured=)"
        )
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
    layers = {k: _dense(matched[:, genes].layers[k]) for k in (Keys.STD, Keys.LOWER, Keys.UPPER) if k in matched.layers}
    interval = (layers[Keys.LOWER], layers[Keys.UPPER]) if Keys.LOWER in layers and Keys.UPPER in layers else None
    return Paired(
        values,
        truth,
        genes,
        predicted_table,
        predicted_name,
        measured_table,
        measured_name,
        units,
        layers.get(Keys.STD),
        interval,
    )


def _dense(values) -> np.ndarray:
    return np.asarray(values.toarray() if hasattr(values, "toarray") else values, np.float64)
