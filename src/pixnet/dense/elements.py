"""New elements for SpatialData: tables of predicted shapes, checked names, and adding them to the object."""

from __future__ import annotations

import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import shapely
from spatialdata import SpatialData
from spatialdata.models import TableModel, get_table_keys

from ..constants import Keys
from ..data.inputs import ResolvedShapes
from ..utils.version import VERSION

logger = logging.getLogger(__name__)

__all__ = ["add_tables", "check_names_free", "instance_centres", "new_elements", "provenance", "shape_table"]


def instance_centres(sdata: SpatialData, name: str, kind: str) -> np.ndarray:
    """Shape centres in the element's own coordinates (what spatialdata-io stores in ``obsm['spatial']``)."""
    geometry = sdata.shapes[name].geometry.to_numpy()
    if kind == "circle":
        return shapely.get_coordinates(geometry)
    if kind == "square":  # the bounds' middle: no new geometries for millions of bins
        bounds = shapely.bounds(geometry)
        return np.column_stack([bounds[:, [0, 2]].mean(axis=1), bounds[:, [1, 3]].mean(axis=1)])
    return shapely.get_coordinates(shapely.centroid(geometry))


def shape_table(
    sdata,
    shapes: ResolvedShapes,
    values: np.ndarray,
    var_names,
    uns: dict,
    area_um2: np.ndarray | None = None,
    fraction_inside: np.ndarray | None = None,
    layers: dict | None = None,
) -> ad.AnnData:
    """A table annotating ``shapes``: measured rows first, in the measured order, then the unmeasured shapes."""
    n = len(shapes)
    if shapes.table is not None:
        measured = shapes.shape_positions
        rest = np.setdiff1d(np.arange(n), measured)
        order = np.concatenate([measured, rest])
        _, region_key, instance_key = get_table_keys(shapes.table)
        obs = shapes.table.obs.drop(columns=[region_key]).copy()  # keeps e.g. array_row / array_col
        if len(rest):
            extra = pd.DataFrame({instance_key: shapes.index[rest].to_numpy()}, index=[f"unmeasured_{i}" for i in rest])
            obs = pd.concat([obs, extra])
    else:
        order = np.arange(n)
        region_key, instance_key = "region", "instance_id"
        obs = pd.DataFrame({instance_key: shapes.index.to_numpy()}, index=shapes.index.astype(str))
    obs[region_key] = pd.Categorical([shapes.name] * n)
    if area_um2 is not None:  # the normalisation of measured counts needs it (extensive units)
        obs[Keys.AREA] = area_um2[order]
    if fraction_inside is not None and (fraction_inside < 1).any():  # only for shapes cut by the image's edge
        obs[Keys.FRACTION_INSIDE] = fraction_inside[order]
    reorder = not np.array_equal(order, np.arange(n))
    if reorder:
        values = values[order]
    layers = {k: (v[order] if reorder else v).astype(np.float32) for k, v in (layers or {}).items()}
    table = ad.AnnData(
        X=values.astype(np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(var_names)), layers=layers or None
    )
    table.obsm["spatial"] = instance_centres(sdata, shapes.name, shapes.kind)[order]
    table.uns[Keys.UNS] = uns  # marks the table as pixnet's output, never taken for a measurement
    return TableModel.parse(table, region=shapes.name, region_key=region_key, instance_key=instance_key)


def check_names_free(sdata: SpatialData, names: list[str], overwrite: bool) -> None:
    """Refuse names that ``sdata`` holds already, unless ``overwrite``."""
    taken = [n for n in names if n in sdata.images or n in sdata.tables or n in sdata.shapes]
    if taken and not overwrite:
        raise ValueError(f"Elements {taken} exist already; pass overwrite=True to replace them, or another key_added.")


def new_elements(sdata: SpatialData, images: dict, tables: dict) -> SpatialData:
    """A SpatialData of new elements (what ``copy=True`` returns), with the shapes its tables annotate.

    The shapes are ``sdata``'s own (shared, not copied), so the tables' annotations resolve and plots work.
    """
    regions = {str(r) for t in tables.values() for r in np.atleast_1d(get_table_keys(t)[0])}
    shapes = {name: sdata.shapes[name] for name in sorted(regions) if name in sdata.shapes}
    return SpatialData(images=images, shapes=shapes, tables=tables)


def add_tables(sdata: SpatialData, tables: dict, copy: bool) -> SpatialData | None:
    """With ``copy``, a SpatialData of the tables (see :func:`new_elements`); else add them to ``sdata``.

    Tables of the same names in ``sdata`` are replaced.
    """
    if copy:
        return new_elements(sdata, {}, tables)
    for name, table in tables.items():
        if name in sdata.tables:
            del sdata.tables[name]
        sdata.tables[name] = table
        logger.info("Added table %r (%d shapes x %d genes)", name, *table.shape)
    return None


def provenance(kind: str, params: dict, model=None) -> dict:
    """A new table's ``uns["pixnet"]``: what made it (``kind``, ``params``), with which model and pixnet version.

    A model contributes its ``repr``, its settings (``config``, or a baseline's ``params``) and the target
    normalisation (which :func:`pixnet.tl.evaluate` needs to compare the table with counts).
    """
    record = {"kind": kind, "params": _storable(params), "pixnet_version": VERSION}
    if model is not None:
        config = getattr(model, "config", None)
        settings = asdict(config) if is_dataclass(config) else getattr(model, "params", {})
        record.update(model=repr(model), model_config=_storable(settings), normalization=model.normalization.to_dict())
    return record


def _storable(value):
    """``value`` as zarr and h5ad store it in ``uns``: no ``None``, lists for tuples, strings for paths."""
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
