"""A synthetic Visium HD capture area written as a Space Ranger >= 3 output folder."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import tifffile
from PIL import Image
from tqdm.auto import tqdm

from ..utils.settings import settings
from ._tenx import FeatureBarcodeMatrixWriter, TissuePositionsWriter
from ._tissue import STROMA, SyntheticTissue

logger = logging.getLogger(__name__)

__all__ = ["BIN_SIZES_UM", "synthetic_visium_hd"]

BIN_SIZES_UM = (2, 8, 16)
VISIUM_HD_MICRONS_PER_PIXEL = 0.2738242950835738
_TILE = 512
_MIN_TISSUE_FRACTION = 0.25


def synthetic_visium_hd(
    path: str | Path,
    *,
    size_um: float = 320.0,
    n_genes: int = 40,
    seed: int = 0,
    dataset_id: str = "synthetic",
    microns_per_pixel: float = VISIUM_HD_MICRONS_PER_PIXEL,
    counts_per_um2: float = 2.0,
    margin_um: float = 32.0,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Path:
    """Write a synthetic Visium HD sample as a Space Ranger >= 3 output folder.

    The folder holds ``binned_outputs/square_{002,008,016}um`` (each with ``filtered_feature_bc_matrix.h5``
    and ``spatial/{tissue_positions.parquet, scalefactors_json.json}``), ``spatial/`` with the hires and
    lowres images and scale factors, ``{dataset_id}_feature_slice.h5`` with the layout metadata, and the
    full-resolution H&E-like image in ``microscope_image/``, so that
    :func:`spatialdata_io.visium_hd` reads it unchanged. ``pixnet_synthetic.json`` records the generator
    (seed, gene program, bin geometry) so that the ground truth can be recomputed.

    Counts of each 2 µm bin are Poisson draws around the expression that the bin's pixel labels (cell
    type, nucleus or cytoplasm, stroma) imply through a fixed gene program; each 8 and 16 µm bin is the
    exact sum of its 2 µm bins. A 16 µm bin is in tissue when at least a quarter of it is tissue, and its
    8 and 2 µm bins share that call, so the filtered 2 µm bins of an 8 µm bin are always complete.

    Everything is written strip by strip: a whole 6.5 x 6.5 mm area needs memory for one strip only.

    Parameters
    ----------
    path
        Output folder (created).
    size_um
        Side of the square capture area in µm (rounded up to whole 16 µm bins).
    n_genes
        Number of genes.
    seed
        Seed of the layout, morphology, gene program and Poisson noise.
    dataset_id
        Prefix of the files, and of the element names spatialdata-io gives.
    microns_per_pixel
        Pixel size of the full-resolution image.
    counts_per_um2
        Expected UMIs per µm² of nucleus (cytoplasm and stroma express less).
    margin_um
        Image margin around the capture area.
    overwrite
        Replace an existing folder.
    progress
        Show a progress bar; ``None``: ``pixnet.settings.progress``.

    Returns
    -------
    The output folder.

    Examples
    --------
    >>> import spatialdata_io
    >>> from pixnet.datasets import synthetic_visium_hd
    >>> folder = synthetic_visium_hd("sample_hd", size_um=128, seed=0, progress=False)
    >>> sdata = spatialdata_io.visium_hd(folder, dataset_id="synthetic", load_segmentations_only=False)
    >>> sorted(sdata.shapes)
    ['synthetic_square_002um', 'synthetic_square_008um', 'synthetic_square_016um']

    """
    progress = settings.progress_for(progress)
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it, or choose another path.")
        shutil.rmtree(path)
    if size_um < 16 or n_genes < 1:
        raise ValueError(f"size_um must be >= 16 (got {size_um}) and n_genes >= 1 (got {n_genes}).")
    layout = _Layout(size_um, microns_per_pixel, margin_um)
    tissue = SyntheticTissue(seed=seed, n_genes=n_genes, microns_per_pixel=microns_per_pixel)

    path.mkdir(parents=True)
    (path / "spatial").mkdir()
    (path / "microscope_image").mkdir()
    writers = {}
    for size in BIN_SIZES_UM:
        spatial = path / "binned_outputs" / f"square_{size:03d}um" / "spatial"
        spatial.mkdir(parents=True)
        writers[size] = (
            TissuePositionsWriter(spatial / "tissue_positions.parquet"),
            FeatureBarcodeMatrixWriter(spatial.parent / "filtered_feature_bc_matrix.h5", tissue.gene_names),
        )
    hires = np.zeros((layout.height // layout.hires_factor, layout.width // layout.hires_factor, 3), np.uint8)
    lowres = np.zeros((layout.height // layout.lowres_factor, layout.width // layout.lowres_factor, 3), np.uint8)
    n_in_tissue = 0

    def tiles() -> Iterator[np.ndarray]:
        nonlocal n_in_tissue
        pending: dict[int, np.ndarray] = {}
        next_band = 0

        def write_bands(until: int) -> None:
            nonlocal next_band, n_in_tissue
            for band in range(next_band, until):
                histogram = pending.pop(band, np.zeros((8, layout.n2, tissue.n_labels), np.int64))
                n_in_tissue += _write_band(band, histogram, tissue, layout, writers, seed, counts_per_um2)
            next_band = max(next_band, until)

        for y0 in tqdm(range(0, layout.height, _TILE), desc="synthetic Visium HD", disable=not progress):
            height = min(_TILE, layout.height - y0)
            rgb, labels = tissue.render(y0, 0, height, layout.width)
            layout.accumulate_histograms(labels, y0, tissue.n_labels, pending)
            write_bands(sum(layout.band_done(b, y0 + height) for b in range(layout.n16)))
            for image, factor in ((hires, layout.hires_factor), (lowres, layout.lowres_factor)):
                image[y0 // factor : (y0 + height) // factor] = _block_mean(rgb, factor)
            for x0 in range(0, layout.width, _TILE):
                tile = np.zeros((_TILE, _TILE, 3), np.uint8)  # edge tiles are padded
                part = rgb[:, x0 : x0 + _TILE]
                tile[: part.shape[0], : part.shape[1]] = part
                yield tile
        write_bands(layout.n16)

    tifffile.imwrite(
        path / "microscope_image" / f"{dataset_id}_tissue_image.tif",
        data=tiles(),
        shape=(layout.height, layout.width, 3),
        dtype=np.uint8,
        tile=(_TILE, _TILE),
        photometric="rgb",
        compression="zlib",
        bigtiff=layout.height * layout.width * 3 > 2**31,
    )
    for positions, matrix in writers.values():
        positions.close()
        matrix.close()
    if n_in_tissue == 0:
        shutil.rmtree(path)
        raise ValueError(
            f"seed={seed} gives no tissue inside the {layout.size_um:g} µm capture area; try another seed."
        )

    _write_images_and_metadata(path, dataset_id, layout, hires, lowres, tissue, counts_per_um2)
    logger.info("Wrote a synthetic Visium HD sample (%d x %d px) to %s", layout.width, layout.height, path)
    return path


class _Layout:
    """Geometry of the bin grid in the full-resolution image (pixel i spans [i, i + 1))."""

    def __init__(self, size_um: float, microns_per_pixel: float, margin_um: float) -> None:
        self.n16 = math.ceil(size_um / 16)
        self.n2 = self.n16 * 8
        self.size_um = self.n16 * 16.0
        self.mpp = microns_per_pixel
        self.origin = margin_um / microns_per_pixel
        raw = (self.size_um + 2 * margin_um) / microns_per_pixel
        self.hires_factor = max(4, 2 ** math.ceil(math.log2(max(raw / 6000, 1))))
        self.lowres_factor = 8 * self.hires_factor
        side = math.ceil(raw / self.lowres_factor) * self.lowres_factor
        self.height = self.width = side

    def bin_px(self, size_um: float) -> float:
        return size_um / self.mpp

    def bin_index(self, pixels: np.ndarray) -> np.ndarray:
        """2 µm bin index of each pixel (by its centre); -1 outside the capture area."""
        index = np.floor((pixels + 0.5 - self.origin) / self.bin_px(2)).astype(np.int64)
        return np.where((index >= 0) & (index < self.n2), index, -1)

    def band_done(self, band: int, rows_done: int) -> bool:
        """Whether every pixel row of the 16 µm band lies above ``rows_done``."""
        last_row = math.ceil(self.origin + (band + 1) * self.bin_px(16) - 0.5) - 1
        return last_row < rows_done

    def accumulate_histograms(self, labels: np.ndarray, y0: int, n_labels: int, pending: dict) -> None:
        rows = self.bin_index(np.arange(y0, y0 + labels.shape[0]))
        cols = self.bin_index(np.arange(labels.shape[1]))
        valid = (rows >= 0)[:, None] & (cols >= 0)[None, :]
        if not valid.any():
            return
        r, c = np.broadcast_to(rows[:, None], labels.shape)[valid], np.broadcast_to(cols[None, :], labels.shape)[valid]
        flat = (r * self.n2 + c) * n_labels + labels[valid]
        first_row = r.min()
        counts = np.bincount(
            flat - first_row * self.n2 * n_labels, minlength=(r.max() - first_row + 1) * self.n2 * n_labels
        )
        counts = counts.reshape(-1, self.n2, n_labels)
        for i, row in enumerate(range(first_row, r.max() + 1)):
            band = pending.setdefault(row // 8, np.zeros((8, self.n2, n_labels), np.int64))
            band[row % 8] += counts[i]

    def describe(self) -> dict:
        return {
            "capture_area_um": self.size_um,
            "origin_px": [self.origin, self.origin],
            "bins_per_side": {f"{s}um": self.n2 * 2 // s for s in BIN_SIZES_UM},
            "image_shape": [self.height, self.width, 3],
            "pixel_convention": "pixel i spans [i, i + 1); a 2 µm bin holds the pixels whose centres it contains",
        }


def _write_band(band, histogram, tissue, layout, writers, seed, counts_per_um2) -> int:
    """Sample the 2 µm counts of one 16 µm row, sum them into 8 and 16 µm bins and write all three."""
    rates = tissue.expected_counts(histogram, counts_per_um2)
    counts2 = np.random.default_rng([seed, 3, band]).poisson(rates).astype(np.int32)
    n_px = histogram.reshape(8, layout.n16, 8, -1).sum(axis=(0, 2))
    tissue_px = n_px[:, STROMA:].sum(axis=1)
    in_tissue16 = tissue_px >= _MIN_TISSUE_FRACTION * np.maximum(n_px.sum(axis=1), 1)
    n_written = 0
    for size in BIN_SIZES_UM:
        per16 = 16 // size
        k = size // 2
        counts = counts2.reshape(per16, k, layout.n2 // k, k, -1).sum(axis=(1, 3))
        rows = band * per16 + np.arange(per16)
        cols = np.arange(layout.n2 // k)
        rr, cc = np.meshgrid(rows, cols, indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        in_tissue = in_tissue16[cc // per16]
        barcodes = np.array([f"s_{size:03d}um_{r:05d}_{c:05d}-1" for r, c in zip(rr, cc, strict=True)])
        y, x = (layout.origin + (index + 0.5) * layout.bin_px(size) for index in (rr, cc))
        positions, matrix = writers[size]
        positions.append(barcodes, in_tissue.astype(np.int32), rr.astype(np.int32), cc.astype(np.int32), y, x)
        matrix.append(barcodes[in_tissue], counts.reshape(len(rr), -1)[in_tissue])
        n_written += int(in_tissue.sum())
    return n_written


def _block_mean(rgb: np.ndarray, factor: int) -> np.ndarray:
    h, w = rgb.shape[0] // factor * factor, rgb.shape[1] // factor * factor
    blocks = rgb[:h, :w].reshape(h // factor, factor, w // factor, factor, 3)
    return blocks.mean(axis=(1, 3)).round().astype(np.uint8)


def _write_images_and_metadata(path, dataset_id, layout, hires, lowres, tissue, counts_per_um2) -> None:
    mpp = layout.mpp
    common = {
        "microns_per_pixel": mpp,
        "regist_target_img_scalef": 1 / layout.hires_factor,
        "tissue_lowres_scalef": 1 / layout.lowres_factor,
        "fiducial_diameter_fullres": 330.0 / mpp,
        "tissue_hires_scalef": 1 / layout.hires_factor,
    }
    folders = [path / "spatial"] + [path / "binned_outputs" / f"square_{s:03d}um" / "spatial" for s in BIN_SIZES_UM]
    for folder, size in zip(folders, (8, *BIN_SIZES_UM), strict=True):
        scalefactors = {"spot_diameter_fullres": size / mpp, "bin_size_um": float(size), **common}
        (folder / "scalefactors_json.json").write_text(json.dumps(scalefactors, indent=4))
        Image.fromarray(hires).save(folder / "tissue_hires_image.png")
        Image.fromarray(lowres).save(folder / "tissue_lowres_image.png")

    bin2 = layout.bin_px(2)
    spot_to_microscope = [bin2, 0.0, layout.origin + bin2 / 2, 0.0, bin2, layout.origin + bin2 / 2, 0.0, 0.0, 1.0]
    microscope_to_spot = np.linalg.inv(np.array(spot_to_microscope).reshape(3, 3)).ravel().tolist()
    identity = np.eye(3).ravel().tolist()
    metadata = {
        "hd_layout_json": json.dumps({"file_format": "1.0", "transform": identity}),
        "transform_matrices": {
            "spot_colrow_to_microscope_colrow": spot_to_microscope,
            "microscope_colrow_to_spot_colrow": microscope_to_spot,
            "cytassist_colrow_to_spot_colrow": identity,
            "spot_colrow_to_cytassist_colrow": identity,
        },
    }
    with h5py.File(path / f"{dataset_id}_feature_slice.h5", "w") as f:
        f.attrs["metadata_json"] = json.dumps(metadata)
    description = {
        **tissue.describe(),
        "counts_per_um2": counts_per_um2,
        "layout": layout.describe(),
        "dataset_id": dataset_id,
    }
    (path / "pixnet_synthetic.json").write_text(json.dumps(description))
