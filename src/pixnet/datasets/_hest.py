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
    try:
        store = tifffile.imread(path, aszarr=True)
        opened = zarr.open(store, mode="r")
        level0 = opened[sorted(opened.keys(), key=int)[0]] if isinstance(opened, zarr.Group) else opened
        np.asarray(level0[-1:, -1:])  # one tile, the last: a truncated file fails here, not minutes into training
    except Exception as error:  # tifffile and zarr raise many types for a damaged file
        raise ValueError(f"{path} is not a readable TIFF ({type(error).__name__}: {error}).") from None
    if level0.ndim != 3 or level0.shape[-1] not in (3, 4):
        raise ValueError(f"{path} has shape {level0.shape}: pixnet needs an RGB(A) H&E image (y, x, 3 or 4 channels).")
    return da.from_zarr(level0)


def _metadata(path: Path) -> dict:
    try:
        metadata = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} must hold a JSON object of metadata, got {type(metadata).__name__}.")
    return metadata


def _positive_field(metadata: dict, keys: tuple[str, ...], path: Path, what: str, default=None) -> float:
    """The first of ``keys`` present in ``metadata`` (else ``default``), checked to be a positive number."""
    key = next((k for k in keys if metadata.get(k) is not None), None)
    value = metadata[key] if key is not None else default
    if value is None:
        raise ValueError(f"{path} has no {' nor '.join(repr(k) for k in keys)} ({what}).")
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{path}: field {key!r} must be a positive number ({what}), got {value!r}.")
    return float(value)


def _counts(path: Path) -> tuple[ad.AnnData, np.ndarray]:
    """The counts and the spot centres (``obsm["spatial"]``, full-resolution pixels) of a HEST ``st`` file."""
    try:
        table = ad.read_h5ad(path)
    except Exception as error:  # h5py and anndata raise many types for a damaged file
        raise ValueError(f"{path} is not a readable h5ad file ({type(error).__name__}: {error}).") from None
    if "spatial" not in table.obsm:
        raise ValueError(f"{path} has no obsm['spatial'] (spot centres in full-resolution pixels).")
    centres = np.asarray(table.obsm["spatial"], dtype=np.float64)
    if centres.ndim != 2 or centres.shape[1] < 2 or len(centres) != table.n_obs:
        raise ValueError(f"{path}: obsm['spatial'] must hold x and y per spot, got shape {centres.shape}.")
    bad = ~np.isfinite(centres[:, :2]).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{path}: obsm['spatial'] has {int(bad.sum())} spots without finite coordinates (e.g. "
            f"{table.obs_names[bad][0]!r}); drop them first."
        )
    return table, centres[:, :2]


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
    if not samples:
        raise FileNotFoundError(f"{path / 'st'} holds no HEST samples ({{id}}.h5ad files).")
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
    metadata = _metadata(files["metadata"])
    mpp = _positive_field(
        metadata, ("pixel_size_um_estimated", "pixel_size_um_embedded"), files["metadata"], "µm per pixel of the WSI"
    )
    technology = metadata.get("st_technology", "")
    diameter_um = _positive_field(
        metadata,
        ("spot_diameter",),
        files["metadata"],
        f"µm; {technology!r} has no known spot size",
        TECHNOLOGY_SPOT_UM.get(technology),
    )
    table, centres = _counts(files["st"])
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
