"""A synthetic Visium (55 µm spots) section written as a Space Ranger output folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from ..data.images import pyramid_levels
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
    space_ranger: int = 2,
    fullres_image: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write a synthetic Visium section as a Space Ranger output folder.

    The folder holds ``filtered_feature_bc_matrix.h5``, the spot positions, ``spatial/scalefactors_json.json``
    (without ``microns_per_pixel``, as Space Ranger writes it), the hires and lowres PNGs and the
    full-resolution image ``tissue_image.tif``, so that ``spatialdata_io.visium(path, dataset_id=...,
    fullres_image_file="tissue_image.tif")`` and :func:`pixnet.io.read` read it. Contents are those of
    :func:`synthetic_spots` with ``technology="visium"``.

    Parameters
    ----------
    path
        Output folder (created).
    size_um, n_genes, seed, microns_per_pixel
        As for :func:`synthetic_spots`.
    space_ranger
        The layout of the spot positions: 2 (``spatial/tissue_positions.csv`` with a header, Space Ranger >= 2)
        or 1 (``spatial/tissue_positions_list.csv`` without one, as in older public datasets).
    fullres_image
        Write ``tissue_image.tif``; without it only the hires and lowres PNGs hold the H&E (as in many public
        Visium folders).
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
    image = np.moveaxis(pyramid_levels(sdata["visium_image"])[0].values, 0, -1)  # large sections are multiscale
    (path / "spatial").mkdir(parents=True)

    barcodes = np.array([np.base_repr(i, 4).zfill(16).translate(_BASES) + "-1" for i in range(table.n_obs)])
    writer = FeatureBarcodeMatrixWriter(path / "filtered_feature_bc_matrix.h5", list(table.var_names))
    writer.append(barcodes, table.X.toarray().astype(np.int64))
    writer.close()
    if space_ranger not in (1, 2):
        raise ValueError(f"space_ranger must be 1 or 2 (the layout of the spot positions), got {space_ranger!r}.")
    x, y = table.obsm["spatial"].T
    positions = pd.DataFrame(
        {
            "barcode": barcodes,
            "in_tissue": 1,
            "array_row": table.obs["array_row"].to_numpy(),
            "array_col": table.obs["array_col"].to_numpy(),
            "pxl_row_in_fullres": y,
            "pxl_col_in_fullres": x,
        }
    )
    if space_ranger == 1:
        positions.to_csv(path / "spatial" / "tissue_positions_list.csv", index=False, header=False)
    else:
        positions.to_csv(path / "spatial" / "tissue_positions.csv", index=False)
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
    if fullres_image:
        tifffile.imwrite(path / "tissue_image.tif", image, photometric="rgb", tile=(256, 256), compression="zlib")
    return path
