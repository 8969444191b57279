"""Tables that annotate shapes: which one holds a shapes element's measurements, and its rows in shape order."""

from __future__ import annotations

import anndata as ad
import pandas as pd
from spatialdata import SpatialData
from spatialdata.models import get_table_keys

from ..constants import Keys

__all__ = ["get_table", "measured_table", "shape_keys", "table_regions", "table_rows"]


def get_table(sdata: SpatialData, name: str) -> ad.AnnData:
    """The table ``name``, or a KeyError listing the tables present."""
    if name not in sdata.tables:
        raise KeyError(f"No table {name!r}; available: {sorted(sdata.tables)}.")
    return sdata.tables[name]


def table_regions(table: ad.AnnData) -> list[str]:
    """The shapes elements a table annotates (none when it has no spatialdata table keys)."""
    try:
        region, _, _ = get_table_keys(table)
    except (KeyError, ValueError, TypeError):
        return []
    return [region] if isinstance(region, str) else list(region)


def measured_table(
    sdata: SpatialData, shapes: str, table: str | None, required: bool, purpose: str = "to train on"
) -> str | None:
    """The table of measurements annotating ``shapes``: ``table`` when given and valid, else the only one.

    ``purpose`` ends the message when a required table is missing (what the measurements were needed for).
    """
    if table is not None:
        regions = table_regions(get_table(sdata, table))
        if shapes not in regions:
            raise ValueError(
                f"Table {table!r} does not annotate shapes {shapes!r} (it annotates {regions or 'nothing'}); "
                "pass the table whose region is these shapes, or set its region/region_key/instance_key with "
                "spatialdata.models.TableModel.parse."
            )
        return table
    # tables pixnet wrote (predictions, aggregates) are not measurements
    found = [
        t for t in sdata.tables if shapes in table_regions(sdata.tables[t]) and Keys.UNS not in sdata.tables[t].uns
    ]
    if len(found) > 1:
        raise ValueError(f"Several tables {found} annotate shapes {shapes!r}: pass table=.")
    if not found and required:
        raise ValueError(
            f"No table annotates shapes {shapes!r}: they were never measured, so there is no measured expression "
            f"{purpose}. Tables present: {sorted(sdata.tables) or 'none'}."
        )
    return found[0] if found else None


def table_rows(sdata: SpatialData, table_name: str, shapes_name: str, index: pd.Index):
    """The table's rows for ``shapes_name`` and their positions in the shapes ``index`` (validated ids)."""
    table = sdata.tables[table_name]
    _, region_key, instance_key = get_table_keys(table)
    if table.n_obs == 0 or table.n_vars == 0:
        raise ValueError(f"Table {table_name!r} is empty ({table.n_obs} rows x {table.n_vars} genes).")
    if instance_key not in table.obs:
        raise ValueError(f"Table {table_name!r} lacks its instance_key column {instance_key!r} in obs.")
    rows = table[(table.obs[region_key] == shapes_name).to_numpy()]
    if rows.n_obs == 0:
        raise ValueError(f"Table {table_name!r} has no rows for shapes {shapes_name!r} (column {region_key!r}).")
    ids = rows.obs[instance_key]
    duplicated = ids[ids.duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"Table {table_name!r} has {len(duplicated)} duplicate instance ids in {instance_key!r} "
            f"(e.g. {list(duplicated[:5])}); each shape must be measured once."
        )
    positions = index.get_indexer(pd.Index(ids.to_numpy()).astype(index.dtype, copy=False))
    if (positions < 0).any():
        missing = ids.to_numpy()[positions < 0]
        raise ValueError(
            f"{len(missing)} of {len(ids)} rows of table {table_name!r} reference shapes missing from "
            f"{shapes_name!r} (instance ids in {instance_key!r}, e.g. {list(missing[:5])}); the table and shapes "
            "are out of sync."
        )
    return rows, positions


def shape_keys(table: ad.AnnData) -> tuple[str, str] | None:
    """The table's region and instance keys, or ``None`` when it does not annotate shapes."""
    try:
        _, region_key, instance_key = get_table_keys(table)
    except (KeyError, ValueError, TypeError):
        return None
    return region_key, instance_key
