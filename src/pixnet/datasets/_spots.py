"""A synthetic spot-based section (Visium 55 µm or legacy ST 100 µm spots) from the synthetic tissue."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from spatialdata import SpatialData

from ._sections import section_to_sdata
from ._tissue import STROMA, SyntheticTissue

__all__ = ["SPOT_TECHNOLOGIES", "synthetic_spots"]

# spot diameter, centre-to-centre pitch (µm), lattice, typical full-resolution µm/px
SPOT_TECHNOLOGIES = {
    "visium": {"diameter_um": 55.0, "pitch_um": 100.0, "hexagonal": True, "microns_per_pixel": 0.5},
    "st": {"diameter_um": 100.0, "pitch_um": 200.0, "hexagonal": False, "microns_per_pixel": 0.66},
}


def synthetic_spots(
    technology: Literal["visium", "st"] = "visium",
    *,
    size_um: float = 1000.0,
    n_genes: int = 40,
    seed: int = 0,
    sample_id: str | None = None,
    microns_per_pixel: float | None = None,
    counts_per_um2: float = 2.0,
) -> SpatialData:
    """A synthetic spot-based section: H&E-like image, circle spots and their raw counts.

    Counts of each spot are Poisson draws around the expression that the pixel labels inside the
    circle imply through the gene program of :class:`~pixnet.datasets.SyntheticTissue` (the same
    generator as :func:`synthetic_visium_hd`). Spots with less than a quarter of tissue are dropped,
    as a spot selection under tissue would.

    Parameters
    ----------
    technology
        ``"visium"`` (55 µm spots, 100 µm hexagonal pitch) or ``"st"`` (100 µm spots, 200 µm square pitch).
    size_um
        Side of the square section in µm.
    n_genes
        Number of genes.
    seed
        Seed of layout, morphology, program and noise.
    sample_id
        Names the coordinate system and elements; defaults to ``"synthetic_{technology}"``.
    microns_per_pixel
        Image pixel size; defaults to a value typical of the technology.
    counts_per_um2
        Expected UMIs per µm² of nucleus.

    Returns
    -------
    SpatialData as :func:`~pixnet.datasets.her2st` returns it: ``{id}_image``, ``{id}_spots``, ``{id}_table``.

    Examples
    --------
    >>> from pixnet.datasets import synthetic_spots
    >>> sdata = synthetic_spots("st", size_um=1200, seed=1)
    >>> sdata["synthetic_st_table"].n_vars
    40

    """
    if technology not in SPOT_TECHNOLOGIES:
        raise ValueError(f"technology must be one of {sorted(SPOT_TECHNOLOGIES)}, got {technology!r}.")
    spec = SPOT_TECHNOLOGIES[technology]
    mpp = float(microns_per_pixel or spec["microns_per_pixel"])
    sample_id = sample_id or f"synthetic_{technology}"
    tissue = SyntheticTissue(seed=seed, n_genes=n_genes, microns_per_pixel=mpp)
    side = int(np.ceil(size_um / mpp))
    rgb, labels = tissue.render(0, 0, side, side)

    rows, cols, centres_um = _lattice(size_um, spec["pitch_um"], spec["diameter_um"], spec["hexagonal"])
    radius_px = spec["diameter_um"] / 2 / mpp
    histograms = np.stack([_label_histogram(labels, c / mpp, radius_px, tissue.n_labels) for c in centres_um])
    in_tissue = histograms[:, STROMA:].sum(axis=1) >= 0.25 * histograms.sum(axis=1)
    if not in_tissue.any():
        raise ValueError(f"seed={seed} gives no spot under tissue in a {size_um:g} µm section; try another seed.")
    rates = tissue.expected_counts(histograms[in_tissue], counts_per_um2)
    counts = np.random.default_rng([seed, 4]).poisson(rates)
    obs = pd.DataFrame(
        {"array_row": rows[in_tissue], "array_col": cols[in_tissue]},
        index=[f"{c}x{r}" for r, c in zip(rows[in_tissue], cols[in_tissue], strict=True)],
    )
    sdata = section_to_sdata(
        sample_id, rgb, centres_um[in_tissue] / mpp, spec["diameter_um"], mpp, counts, tissue.gene_names, obs
    )
    sdata[f"{sample_id}_table"].uns["pixnet_synthetic"] = {"seed": seed, "technology": technology}
    return sdata


def _lattice(size_um: float, pitch: float, diameter: float, hexagonal: bool):
    """Spot centres (x, y in µm) of the array that fit inside the section."""
    row_step = pitch * np.sqrt(3) / 2 if hexagonal else pitch
    n_rows = int((size_um - diameter) // row_step) + 1
    n_cols = int((size_um - diameter - (pitch / 2 if hexagonal else 0)) // pitch) + 1
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_cols), indexing="ij")
    r, c = r.ravel(), c.ravel()
    x = diameter / 2 + c * pitch + (np.where(r % 2 == 1, pitch / 2, 0.0) if hexagonal else 0.0)
    y = diameter / 2 + r * row_step
    return r, c, np.column_stack([x, y])


def _label_histogram(labels: np.ndarray, centre_px: np.ndarray, radius_px: float, n_labels: int) -> np.ndarray:
    """Pixels of each label whose centres lie inside the circle."""
    x0, x1 = (
        int(max(0, np.floor(centre_px[0] - radius_px))),
        int(min(labels.shape[1], np.ceil(centre_px[0] + radius_px))),
    )
    y0, y1 = (
        int(max(0, np.floor(centre_px[1] - radius_px))),
        int(min(labels.shape[0], np.ceil(centre_px[1] + radius_px))),
    )
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx + 0.5 - centre_px[0]) ** 2 + (yy + 0.5 - centre_px[1]) ** 2 <= radius_px**2
    return np.bincount(labels[y0:y1, x0:x1][inside], minlength=n_labels)
