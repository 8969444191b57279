"""Spot-based sections (legacy ST, Visium) as SpatialData: the public HER2ST and STUtility readers."""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

import anndata as ad
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp
from PIL import Image
from spatialdata import SpatialData
from spatialdata.models import Image2DModel, ShapesModel, TableModel
from spatialdata.transformations import Identity

from ..utils.downloads import cache_dir, download

logger = logging.getLogger(__name__)

__all__ = ["her2st", "read_st_section", "section_to_sdata", "stutility_mob"]

HER2ST_URL = "https://raw.githubusercontent.com/almaan/her2st/master/data"
# image file names differ per section in the repository; the ones we know, by section
HER2ST_IMAGES = {
    "B4": "ST-imgs/B/B4/BT10737_D2_HE.jpg",
    "C2": "ST-imgs/C/C2/5714_HE_BT_C2.jpg",
    "C3": "ST-imgs/C/C3/5714_HE_BT_D1.jpg",
    "C4": "ST-imgs/C/C4/5714_HE_BT_D2.jpg",
    "C5": "ST-imgs/C/C5/5714_HE_BT_E1.jpg",
    "C6": "ST-imgs/C/C6/5714_HE_BT_E2.jpg",
}
# centre-to-centre distance of neighbouring array coordinates, in µm
ST_1K_ARRAY_UNIT_UM = 200.0  # 1007-spot ST array (HER2ST): 100 µm spots on a 200 µm square grid
ST_2K_ARRAY_UNIT_UM = 100.0  # 2k ST array (STUtility MOB): spots at x + y even, 141 µm diagonal pitch
# a decoded image takes 3 bytes per pixel: 1 Gpx (3 GB) is above any H&E scan these readers are meant for
DEFAULT_MAX_IMAGE_PIXELS = 1_000_000_000
_PIL_LIMIT = threading.Lock()  # PIL's limit is a module global: changed only under this lock, and restored


def section_to_sdata(
    sample_id: str,
    image: np.ndarray | da.Array,
    centres_px: np.ndarray,
    spot_diameter_um: float,
    microns_per_pixel: float,
    counts: np.ndarray | sp.spmatrix,
    genes: list[str],
    obs: pd.DataFrame,
) -> SpatialData:
    """Assemble one spot-based section: image, circle shapes and a raw-count table in one coordinate system.

    The coordinate system is named ``sample_id`` and is the pixel frame of the full-resolution image.
    Elements are ``{sample_id}_image``, ``{sample_id}_spots`` and the table ``{sample_id}_table``
    (``region_key="region"``, ``instance_key="spot_id"``, ``obsm["spatial"]`` = spot centres in pixels,
    ``uns["spatial"][sample_id]["scalefactors"]`` with ``microns_per_pixel`` and ``spot_diameter_fullres``).
    """
    transformations = {sample_id: Identity()}
    # spatialdata's default 256 px chunks gave ~22,000 tasks behind every read of a coarse level (4.3 s for a
    # plot's background of one HER2ST section); 1024 px chunks give the same values from 1,500 tasks (2.0 s)
    chunks = (3, 1024, 1024)
    if isinstance(image, da.Array):  # read lazily (a TIFF): stays lazy
        data = image.transpose(2, 0, 1).rechunk(chunks)
    else:
        data = da.from_array(np.moveaxis(np.asarray(image), -1, 0), chunks=chunks)
    scale_factors = [2] * max(0, int(np.log2(max(image.shape[:2]) / 1024)))
    image_element = Image2DModel.parse(
        data,
        dims=("c", "y", "x"),
        c_coords=["r", "g", "b"],
        scale_factors=scale_factors or None,
        chunks=chunks,  # parse rechunks to its own default otherwise
        transformations=transformations,
    )
    radius = spot_diameter_um / microns_per_pixel / 2
    index = pd.RangeIndex(len(centres_px), name="spot_id")
    shapes = ShapesModel.parse(
        np.asarray(centres_px, float),
        geometry=0,
        radius=np.full(len(centres_px), radius),
        index=index,
        transformations=transformations,
    )
    obs = obs.copy()
    obs.index = obs.index.astype(str)
    obs["spot_id"] = np.arange(len(obs))
    obs["region"] = pd.Categorical([f"{sample_id}_spots"] * len(obs))
    table = ad.AnnData(
        X=sp.csr_matrix(counts, dtype=np.float32), obs=obs, var=pd.DataFrame(index=pd.Index(genes, dtype=str))
    )
    table.obsm["spatial"] = np.asarray(centres_px, float)
    table.uns["spatial"] = {
        sample_id: {
            "scalefactors": {
                "microns_per_pixel": float(microns_per_pixel),
                "spot_diameter_fullres": float(2 * radius),
                "tissue_hires_scalef": 1.0,
            }
        }
    }
    table = TableModel.parse(table, region=f"{sample_id}_spots", region_key="region", instance_key="spot_id")
    return SpatialData(
        images={f"{sample_id}_image": image_element},
        shapes={f"{sample_id}_spots": shapes},
        tables={f"{sample_id}_table": table},
    )


def read_st_section(
    counts: str | Path,
    spots: str | Path,
    image: str | Path,
    sample_id: str,
    *,
    array_unit_um: float = ST_1K_ARRAY_UNIT_UM,
    spot_diameter_um: float = 100.0,
    microns_per_pixel: float | None = None,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> SpatialData:
    """Read a legacy ST section (counts, spot table with pixel positions, H&E image) into SpatialData.

    Parameters
    ----------
    counts
        Tab-separated spots x genes raw UMI counts (optionally gzipped), rows named ``"{x}x{y}"``.
    spots
        Tab-separated spot table with columns ``x y pixel_x pixel_y`` (array and image coordinates) and
        optionally ``new_x new_y`` (registered array coordinates) and ``selected`` (1 = under tissue).
        ``pixel_x/pixel_y`` must be in the pixel frame of ``image``.
    image
        The full-resolution H&E image.
    sample_id
        Names the coordinate system and the elements.
    array_unit_um
        Distance in µm between neighbouring array coordinates (200 for the 1k ST array, 100 for the 2k array).
    spot_diameter_um
        Spot diameter in µm.
    microns_per_pixel
        Pixel size of the image. By default it is measured from the spots: the fitted pixel distance
        per array unit against ``array_unit_um``. Spots without a position, or more than one array spacing
        from where the others put them (a robust affine fit), are skipped with a warning naming them.
    max_image_pixels
        Larger images are refused before they are decoded (the image is read whole: 3 bytes per pixel).

    Returns
    -------
    See :func:`section_to_sdata`. Only spots that are selected and have counts are kept.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.read_st_section(
    ...     "her2st/C2.tsv.gz", "her2st/C2_selection.tsv", "her2st/C2_HE.jpg", "C2", array_unit_um=200.0
    ... )  # doctest: +SKIP
    >>> sorted(sdata.shapes), sorted(sdata.tables)  # doctest: +SKIP
    (['C2_spots'], ['C2_table'])

    """
    table = pd.read_csv(spots, sep="\t")
    missing = {"x", "y", "pixel_x", "pixel_y"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{spots} lacks the columns {sorted(missing)}; expected x, y, pixel_x, pixel_y (ST spot file)."
        )
    if "selected" in table:
        table = table[table["selected"] == 1]
    table.index = table["x"].astype(int).astype(str) + "x" + table["y"].astype(int).astype(str)
    expression = pd.read_csv(counts, sep="\t", index_col=0)
    expression.index = expression.index.astype(str)
    shared = table.index.intersection(expression.index)
    if len(shared) == 0:
        raise ValueError(f"No spot of {spots} has counts in {counts}: rows must be named '{{x}}x{{y}}'.")
    table, expression = table.loc[shared], expression.loc[shared]
    unplaced = ~np.isfinite(table[["x", "y", "pixel_x", "pixel_y"]].to_numpy(float)).all(axis=1)
    if unplaced.any():
        logger.warning(
            "%s: %d spots without a position (NaN) are skipped: %s",
            spots,
            unplaced.sum(),
            ", ".join(table.index[unplaced][:10]),
        )
        table, expression = table[~unplaced], expression[~unplaced]
    off_lattice = _off_lattice(table)
    if off_lattice.any():
        logger.warning(
            "%s: %d spots whose pixel positions are off the array's lattice (more than one spacing from where the "
            "other spots put them) are skipped: %s",
            spots,
            off_lattice.sum(),
            ", ".join(table.index[off_lattice][:10]),
        )
        table, expression = table[~off_lattice], expression[~off_lattice]
    if microns_per_pixel is None:
        microns_per_pixel = _fit_microns_per_pixel(table, array_unit_um)
    pixels = read_rgb(image, max_pixels=max_image_pixels)
    centres = table[["pixel_x", "pixel_y"]].to_numpy(float)
    obs = table.drop(columns=[c for c in ("pixel_x", "pixel_y", "selected") if c in table]).rename(
        columns={"x": "array_col", "y": "array_row"}
    )
    counts_matrix = sp.csr_matrix(expression.to_numpy())
    logger.info("Read %s: %d spots x %d genes, %.3f µm/px", sample_id, *counts_matrix.shape, microns_per_pixel)
    return section_to_sdata(
        sample_id, pixels, centres, spot_diameter_um, microns_per_pixel, counts_matrix, list(expression.columns), obs
    )


def _lattice(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Array positions (registered ones where the file has them) and pixel positions, ``(n, 2)`` each."""
    array = table[["new_x" if "new_x" in table else "x", "new_y" if "new_y" in table else "y"]].to_numpy(float)
    return array, table[["pixel_x", "pixel_y"]].to_numpy(float)


def _off_lattice(table: pd.DataFrame) -> np.ndarray:
    """Spots more than one array spacing from where an affine fit of the others puts them (robust, iterated)."""
    array, pixel = _lattice(table)
    inliers = np.ones(len(table), bool)
    if len(table) < 4:
        return np.zeros(len(table), bool)
    design = np.column_stack([array, np.ones(len(array))])
    for _ in range(10):
        fit = np.linalg.lstsq(design[inliers], pixel[inliers], rcond=None)[0]
        residual = np.linalg.norm(pixel - design @ fit, axis=1)
        spacing = np.sqrt(abs(np.linalg.det(fit[:2])))  # pixels per array unit
        updated = residual <= max(5 * 1.4826 * np.median(residual[inliers]), 1e-6 * spacing)
        if (updated == inliers).all() or updated.sum() < 3:
            break
        inliers = updated
    off = residual > max(spacing, 5 * 1.4826 * np.median(residual[inliers]))
    return off if off.sum() < len(table) / 2 else np.zeros(len(table), bool)  # a bad fit, not bad spots


def _fit_microns_per_pixel(table: pd.DataFrame, array_unit_um: float) -> float:
    """Pixel size from the spot lattice: pixels per array unit (least squares on both axes)."""
    if len(table) < 3:
        raise ValueError(f"Cannot measure µm/px from {len(table)} placed spots (3 needed); pass microns_per_pixel=.")
    array, pixel = _lattice(table)
    slopes = [abs(np.polyfit(array[:, i], pixel[:, i], 1)[0]) for i in range(2)]
    if not np.all(np.isfinite(slopes)) or min(slopes) <= 0:
        raise ValueError(
            "Cannot measure µm/px: the spots' pixel positions do not follow their array positions; pass "
            "microns_per_pixel=."
        )
    return float(array_unit_um / np.mean(slopes))


def read_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray | da.Array:
    """An image file as an ``(h, w, 3)`` uint8 array, refused before decoding when larger than ``max_pixels``.

    PIL's own decompression-bomb limit (about 179 Mpx) is below many H&E scans; rather than lifting it for the
    whole process, the image's size is read from its header and checked against ``max_pixels`` here. TIFF files
    are read lazily instead, tile by tile (a dask array; ``max_pixels`` then bounds one tile or strip).
    """
    if Path(path).suffix.lower() in (".tif", ".tiff"):
        return _read_tiff_lazily(Path(path), max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as probe:
                width, height = probe.size
        except Image.DecompressionBombError:
            width = height = None
    if width is None or width * height > max_pixels:
        size = "more than twice PIL's limit" if width is None else f"{width} x {height} px"
        raise ValueError(
            f"{path} is {size}, above max_image_pixels={max_pixels:.3g}; pass a larger max_image_pixels= if you "
            "trust the file (it is decoded whole into memory, 3 bytes per pixel)."
        )
    with _PIL_LIMIT:
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max(max_pixels, Image.MAX_IMAGE_PIXELS or 0)
        try:
            with Image.open(path) as opened:
                return np.asarray(opened.convert("RGB"))
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _read_tiff_lazily(path: Path, max_pixels: int) -> da.Array:
    """Level 0 of a (tiled, pyramidal or plain) RGB TIFF as a dask array over its tiles."""
    import tifffile
    import zarr

    try:
        store = tifffile.imread(path, aszarr=True, level=0)
    except (tifffile.TiffFileError, ValueError) as error:
        raise ValueError(f"{path} is not a readable TIFF image: {error}") from None
    array = zarr.open(store, mode="r")
    if array.ndim != 3 or array.shape[-1] not in (3, 4) or array.dtype != np.uint8:
        raise ValueError(
            f"{path} holds a {array.dtype} image of shape {array.shape}; expected 8-bit RGB (y, x, 3) or RGBA."
        )
    tile = int(np.prod(array.chunks[:2]))
    if tile > max_pixels:
        raise ValueError(
            f"{path} is stored in pieces of {tile:.3g} pixels, above max_image_pixels={max_pixels:.3g} (each is "
            "decoded whole); pass a larger max_image_pixels= if you trust the file, or save it as a tiled TIFF."
        )
    return da.from_zarr(array)[..., :3]


def her2st(sample: str, path: str | Path | None = None, *, base_url: str = HER2ST_URL) -> SpatialData:
    """A HER2+ breast cancer section of Andersson et al. 2021 (legacy ST, 100 µm spots).

    Parameters
    ----------
    sample
        Section name, e.g. ``"C2"``.
    path
        Local folder holding ``{sample}.tsv.gz``, ``{sample}_selection.tsv`` and ``{sample}_HE.jpg``. When
        ``None``, the files are downloaded once from the dataset's public repository into
        ``{cache_dir}/her2st`` (``$PIXNET_CACHE`` or ``~/.cache/pixnet``).
    base_url
        Where the repository's ``data`` folder is served.

    Returns
    -------
    SpatialData with ``{sample}_image``, ``{sample}_spots`` (circles) and ``{sample}_table`` (raw counts), in
    the coordinate system ``sample``.

    Examples
    --------
    >>> from pixnet.datasets import her2st
    >>> sdata = her2st("C2", path="shared/data/her2st")  # doctest: +SKIP

    """
    if path is None:
        folder = cache_dir() / "her2st"
        if sample not in HER2ST_IMAGES:
            raise ValueError(
                f"No image location is known for HER2ST section {sample!r} (known: {sorted(HER2ST_IMAGES)}); "
                "download it yourself and pass path=."
            )
        download(f"{base_url}/ST-cnts/{sample}.tsv.gz", folder / f"{sample}.tsv.gz")
        download(f"{base_url}/ST-spotfiles/{sample}_selection.tsv", folder / f"{sample}_selection.tsv")
        download(f"{base_url}/{HER2ST_IMAGES[sample]}", folder / f"{sample}_HE.jpg")
    else:
        folder = Path(path)
    files = [folder / f"{sample}.tsv.gz", folder / f"{sample}_selection.tsv", folder / f"{sample}_HE.jpg"]
    _require(files)
    return read_st_section(*files, sample_id=sample, array_unit_um=ST_1K_ARRAY_UNIT_UM)


def stutility_mob(sample: str, path: str | Path) -> SpatialData:
    """A mouse olfactory bulb section of the STUtility example data (2k ST array, 100 µm spots).

    Parameters
    ----------
    sample
        Section name, e.g. ``"MOB1"``.
    path
        Folder holding ``{sample}.tsv.gz``, ``alignment_table_{sample}.tsv`` and ``{sample}.jpg``.

    Returns
    -------
    SpatialData with ``{sample}_image``, ``{sample}_spots`` (circles) and ``{sample}_table`` (raw counts), in
    the coordinate system ``sample``.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.stutility_mob("MOB1", path="shared/data/stutility_mob")  # doctest: +SKIP
    >>> sdata["MOB1_table"].n_obs  # doctest: +SKIP

    """
    folder = Path(path)
    files = [folder / f"{sample}.tsv.gz", folder / f"alignment_table_{sample}.tsv", folder / f"{sample}.jpg"]
    _require(files)
    return read_st_section(*files, sample_id=sample, array_unit_um=ST_2K_ARRAY_UNIT_UM)


def _require(files: list[Path]) -> None:
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"Missing section files: {missing}.")
