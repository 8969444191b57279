"""HEST-1k samples (Jaume et al. 2024) as SpatialData: the pyramidal WSI read lazily, spots or bins, counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import dask.array as da
import numpy as np
import shapely
import tifffile
import zarr
from geopandas import GeoDataFrame
from spatialdata import SpatialData
from spatialdata.models import Image2DModel, ShapesModel, TableModel
from spatialdata.transformations import Identity

from ..data.pixel_size import VISIUM_SPOT_DIAMETER_UM

logger = logging.getLogger(__name__)

__all__ = ["hest", "hest_samples"]

# spot diameters where a sample's metadata has none (µm)
TECHNOLOGY_SPOT_UM = {"Visium": VISIUM_SPOT_DIAMETER_UM, "Spatial Transcriptomics": 100.0}


def hest_samples(path: str | Path) -> list[str]:
    """The sample ids of a HEST-1k folder (``st/{id}.h5ad``), sorted.

    Examples
    --------
    >>> from pixnet.datasets import hest_samples
    >>> hest_samples("hest_data")  # doctest: +SKIP
    ['SPA119', 'TENX95']

    """
    return sorted(p.stem for p in (Path(path) / "st").glob("*.h5ad"))


def _wsi(path: Path) -> da.Array:
    """The WSI's full-resolution level as a lazy ``(y, x, c)`` array, one task per TIFF tile."""
    store = tifffile.imread(path, aszarr=True)
    opened = zarr.open(store, mode="r")
    level0 = opened[sorted(opened.keys(), key=int)[0]] if isinstance(opened, zarr.Group) else opened
    return da.from_zarr(level0)


def hest(sample_id: str | None, path: str | Path) -> SpatialData:
    """A HEST-1k sample as SpatialData, without reading its whole-slide image into memory.

    The folder has HEST-1k's layout: ``wsis/{id}.tif`` (pyramidal TIFF), ``st/{id}.h5ad`` (counts, spot centres in
    ``obsm["spatial"]`` in full-resolution pixels) and ``metadata/{id}.json`` (``pixel_size_um_estimated``,
    ``spot_diameter`` in µm, ``st_technology``). Visium HD samples become squares of their bin size, other
    technologies circles of their spot diameter.

    Parameters
    ----------
    sample_id
        The sample, e.g. ``"TENX95"``; ``None`` when the folder holds one.
    path
        The HEST-1k folder (holding ``wsis/``, ``st/`` and ``metadata/``).

    Returns
    -------
    SpatialData with ``{id}_image`` (a lazy pyramid over the TIFF's full-resolution level), ``{id}_spots`` and
    ``{id}_table`` (raw counts; ``uns["spatial"][id]["scalefactors"]`` holds ``microns_per_pixel`` and
    ``spot_diameter_fullres``), in the coordinate system ``id``.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.hest("TENX95", "hest_data")  # doctest: +SKIP
    >>> inputs = pixnet.resolve_inputs(sdata)  # doctest: +SKIP

    """
    path = Path(path)
    samples = hest_samples(path)
    if sample_id is None:
        if len(samples) != 1:
            raise ValueError(f"{path} holds the HEST samples {samples}; choose one with sample_id=.")
        sample_id = samples[0]
    files = {
        "st": path / "st" / f"{sample_id}.h5ad",
        "metadata": path / "metadata" / f"{sample_id}.json",
        "wsi": path / "wsis" / f"{sample_id}.tif",
    }
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"HEST sample {sample_id!r} lacks {missing} (samples in {path}: {samples}).")
    metadata = json.loads(files["metadata"].read_text())
    mpp = metadata.get("pixel_size_um_estimated") or metadata.get("pixel_size_um_embedded")
    if not mpp:
        raise ValueError(f"{files['metadata']} has no pixel_size_um_estimated (nor pixel_size_um_embedded).")
    technology = metadata.get("st_technology", "")
    diameter_um = metadata.get("spot_diameter") or TECHNOLOGY_SPOT_UM.get(technology)
    if not diameter_um:
        raise ValueError(f"{files['metadata']} has no spot_diameter, and {technology!r} has no known spot size.")
    table = ad.read_h5ad(files["st"])
    if "spatial" not in table.obsm:
        raise ValueError(f"{files['st']} has no obsm['spatial'] (spot centres in full-resolution pixels).")
    centres = np.asarray(table.obsm["spatial"], dtype=np.float64)
    diameter_px = float(diameter_um) / float(mpp)
    spots = f"{sample_id}_spots"
    transform = {sample_id: Identity()}
    if technology == "Visium HD":
        half = diameter_px / 2
        boxes = shapely.box(centres[:, 0] - half, centres[:, 1] - half, centres[:, 0] + half, centres[:, 1] + half)
        shapes = ShapesModel.parse(GeoDataFrame(geometry=boxes, index=np.arange(len(table))), transformations=transform)
    else:
        shapes = ShapesModel.parse(
            centres,
            geometry=0,
            radius=np.full(len(table), diameter_px / 2),
            index=np.arange(len(table)),
            transformations=transform,
        )
    table.obs["region"] = spots
    table.obs["spot_id"] = np.arange(len(table))
    table.uns["spatial"] = {
        sample_id: {"scalefactors": {"microns_per_pixel": float(mpp), "spot_diameter_fullres": diameter_px}}
    }
    image = Image2DModel.parse(
        _wsi(files["wsi"]), dims=("y", "x", "c"), scale_factors=[2, 2, 2, 2], transformations=transform, rgb=None
    )
    logger.info("HEST sample %s: %s, %d spots, %.3g µm/px", sample_id, technology or "?", len(table), mpp)
    return SpatialData(
        images={f"{sample_id}_image": image},
        shapes={spots: shapes},
        tables={
            f"{sample_id}_table": TableModel.parse(table, region=spots, region_key="region", instance_key="spot_id")
        },
    )
