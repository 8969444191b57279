"""A synthetic Visium (55 µm spots) section written as a Space Ranger output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from ._spots import synthetic_spots
from ._tenx import FeatureBarcodeMatrixWriter

__all__ = ["synthetic_visium"]

_HIRES_FACTOR, _LOWRES_FACTOR = 4, 32
_BASES = str.maketrans("0123", "ACGT")


def synthetic_visium(
    path: str | Path,
    *,
    size_um: float = 1000.0,
    n_genes: int = 40,
    seed: int = 0,
    microns_per_pixel: float = 0.5,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic Visium section as a Space Ranger output folder.

    The folder holds ``filtered_feature_bc_matrix.h5``, ``spatial/tissue_positions.csv`` (Space Ranger >= 2
    layout), ``spatial/scalefactors_json.json``, the hires and lowres PNGs and the full-resolution image
    ``tissue_image.tif``, so that ``spatialdata_io.visium(path, dataset_id=...,
    fullres_image_file="tissue_image.tif")`` reads it. Contents are those of
    :func:`synthetic_spots` with ``technology="visium"``.

    Parameters
    ----------
    path
        Output folder (created).
    size_um, n_genes, seed, microns_per_pixel
        As for :func:`synthetic_spots`.
    overwrite
        Replace an existing folder.

    Returns
    -------
    The output folder.

    Examples
    --------
    >>> import pixnet
    >>> import spatialdata_io
    >>> folder = pixnet.datasets.synthetic_visium("sample_visium", size_um=800, n_genes=12)
    >>> sdata = spatialdata_io.visium(folder, dataset_id="v1", fullres_image_file="tissue_image.tif")
    >>> inputs = pixnet.resolve_inputs(sdata)  # the pixel size from the spots' radius: Visium spots are 55 µm
    >>> inputs.shapes["v1"].kind
    'circle'

    """
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another path.")
        shutil.rmtree(path)
    sdata = synthetic_spots(
        "visium", size_um=size_um, n_genes=n_genes, seed=seed, sample_id="visium", microns_per_pixel=microns_per_pixel
    )
    table = sdata["visium_table"]
    image = np.moveaxis(sdata["visium_image"].values, 0, -1)
    (path / "spatial").mkdir(parents=True)

    barcodes = np.array([np.base_repr(i, 4).zfill(16).translate(_BASES) + "-1" for i in range(table.n_obs)])
    writer = FeatureBarcodeMatrixWriter(path / "filtered_feature_bc_matrix.h5", list(table.var_names))
    writer.append(barcodes, table.X.toarray().astype(np.int64))
    writer.close()
    x, y = table.obsm["spatial"].T
    pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": table.obs["array_row"].to_numpy(),
            "array_col": table.obs["array_col"].to_numpy(),
            "pxl_row_in_fullres": y,
            "pxl_col_in_fullres": x,
        }
    ).to_csv(path / "spatial" / "tissue_positions.csv", index=False)
    scalefactors = {
        "spot_diameter_fullres": table.uns["spatial"]["visium"]["scalefactors"]["spot_diameter_fullres"],
        "tissue_hires_scalef": 1 / _HIRES_FACTOR,
        "tissue_lowres_scalef": 1 / _LOWRES_FACTOR,
        "fiducial_diameter_fullres": 65.0 / microns_per_pixel,
    }
    (path / "spatial" / "scalefactors_json.json").write_text(json.dumps(scalefactors, indent=4))
    for name, factor in (("tissue_hires_image.png", _HIRES_FACTOR), ("tissue_lowres_image.png", _LOWRES_FACTOR)):
        size = (image.shape[1] // factor, image.shape[0] // factor)
        Image.fromarray(image).resize(size, Image.Resampling.BOX).save(path / "spatial" / name)
    tifffile.imwrite(path / "tissue_image.tif", image, photometric="rgb", tile=(256, 256), compression="zlib")
    return path
