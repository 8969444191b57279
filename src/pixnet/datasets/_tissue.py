"""A procedural H&E-like tissue whose per-pixel cell layout drives a known gene program.

Every pixel value is a pure function of its global position and the seed, so any tile of any size
renders identically: a whole capture area can be generated strip by strip without holding it in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CELL_TYPES", "CellType", "SyntheticTissue"]


@dataclass(frozen=True)
class CellType:
    """Morphology of one synthetic cell type."""

    name: str
    nucleus_radius_um: float
    elongation: float
    hematoxylin_rgb: tuple[int, int, int]
    texture: float
    cytoplasm_rgb: tuple[int, int, int]
    cytoplasm_scale: float


CELL_TYPES: tuple[CellType, ...] = (
    CellType("tumour", 4.2, 1.25, (72, 38, 118), 0.45, (214, 128, 178), 2.0),
    CellType("lymphocyte", 2.4, 1.0, (38, 18, 84), 0.08, (196, 150, 196), 1.35),
    CellType("fibroblast", 2.3, 3.0, (104, 64, 146), 0.2, (238, 176, 204), 1.5),
    CellType("epithelial", 3.4, 1.1, (112, 72, 164), 0.25, (226, 168, 210), 2.3),
)

BACKGROUND, STROMA = 0, 1
_BACKGROUND_RGB = np.array([242, 240, 245], dtype=np.float32)
_STROMA_RGB = np.array([236, 184, 208], dtype=np.float32)
_BLOCK_UM = 128.0


def cytoplasm_label(t: int) -> int:
    """Label of the cytoplasm of cell type ``t``."""
    return 2 + 2 * t


def nucleus_label(t: int) -> int:
    """Label of the nucleus of cell type ``t``."""
    return 3 + 2 * t


class _Field:
    """A smooth random field: a sum of random plane waves, evaluated separably on a pixel grid."""

    def __init__(self, rng: np.random.Generator, n_waves: int, wavelength_um: float) -> None:
        angle = rng.uniform(0, 2 * np.pi, n_waves)
        freq = 2 * np.pi / (wavelength_um * rng.uniform(0.6, 1.6, n_waves))
        self.kx, self.ky = freq * np.cos(angle), freq * np.sin(angle)
        self.phase = rng.uniform(0, 2 * np.pi, n_waves)
        self.amp = rng.uniform(0.5, 1.0, n_waves) / np.sqrt(n_waves / 2)

    def grid(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        # cos(kx x + ky y + p) = cos(kx x + p) cos(ky y) - sin(kx x + p) sin(ky y): outer products, no h*w trig
        ax = np.outer(self.kx, x_um) + self.phase[:, None]
        ay = np.outer(self.ky, y_um)
        cx, sx = self.amp[:, None] * np.cos(ax), self.amp[:, None] * np.sin(ax)
        return (np.cos(ay).T @ cx - np.sin(ay).T @ sx).astype(np.float32)

    def points(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        arg = np.outer(y_um, self.ky) + np.outer(x_um, self.kx) + self.phase
        return (np.cos(arg) * self.amp).sum(axis=1)


def _hash_uniform(iy: np.ndarray, ix: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic per-pixel uniform noise in [0, 1) from integer coordinates."""
    h = (iy.astype(np.uint64) * np.uint64(0x9E3779B1)) ^ (ix.astype(np.uint64) * np.uint64(0x85EBCA77))
    h ^= np.uint64(salt * 0xC2B2AE3D & 0xFFFFFFFF)
    h = (h ^ (h >> np.uint64(15))) * np.uint64(0x2C1B3C6D)
    h = (h ^ (h >> np.uint64(12))) * np.uint64(0x297A2D39)
    h ^= h >> np.uint64(15)
    return ((h & np.uint64(0xFFFFFF)).astype(np.float32)) / np.float32(0x1000000)


@dataclass
class _Nuclei:
    y_um: np.ndarray
    x_um: np.ndarray
    cell_type: np.ndarray
    radius_um: np.ndarray
    angle: np.ndarray
    shade: np.ndarray


class SyntheticTissue:
    """A deterministic synthetic H&E section with cell types arranged in regions.

    Parameters
    ----------
    seed
        Controls the layout, the morphology and the gene program.
    n_genes
        Number of genes in the program.
    microns_per_pixel
        Pixel size of the rendered image.
    cell_spacing_um
        Mean distance between neighbouring cells.

    Examples
    --------
    >>> import pixnet
    >>> tissue = pixnet.datasets.SyntheticTissue(seed=0, n_genes=8, microns_per_pixel=0.5)
    >>> rgb, labels = tissue.render(0, 0, 64, 64)
    >>> rgb.shape, labels.shape
    ((64, 64, 3), (64, 64))
    >>> tissue.gene_names[:3]
    ['SYN000', 'SYN001', 'SYN002']

    """

    def __init__(
        self,
        seed: int = 0,
        n_genes: int = 40,
        microns_per_pixel: float = 0.2738,
        cell_spacing_um: float = 11.0,
    ) -> None:
        self.seed = int(seed)
        self.n_genes = int(n_genes)
        self.microns_per_pixel = float(microns_per_pixel)
        self.cell_spacing_um = float(cell_spacing_um)
        self.cell_types = CELL_TYPES
        n_types = len(CELL_TYPES)
        rng = np.random.default_rng([self.seed, 1])
        self._tissue = _Field(rng, 10, 900.0)
        self._regions = [_Field(rng, 8, 350.0) for _ in range(n_types)]
        self._fibres = _Field(rng, 6, 40.0)
        # region r is dominated by cell type r and has its own cell density
        self.region_mixture = np.full((n_types, n_types), 0.2 / (n_types - 1)) + np.eye(n_types) * 0.6
        self.region_density = np.array([0.95, 0.9, 0.45, 0.75])[:n_types]
        self.stain_jitter = rng.normal(0.0, 6.0, 3).astype(np.float32)
        self.program = self._gene_program(rng)

    @property
    def n_labels(self) -> int:
        """Number of pixel labels: background, stroma, then cytoplasm and nucleus of each type."""
        return 2 + 2 * len(self.cell_types)

    @property
    def gene_names(self) -> list[str]:
        """Names of the program's genes."""
        return [f"SYN{i:03d}" for i in range(self.n_genes)]

    def _gene_program(self, rng: np.random.Generator) -> np.ndarray:
        """Relative expression per label (rows sum to the label's share of the bin's UMIs)."""
        n_types = len(self.cell_types)
        base = rng.lognormal(0.0, 0.6, self.n_genes)
        profiles = base * rng.lognormal(0.0, 0.4, (n_types + 1, self.n_genes))
        markers = np.arange(self.n_genes) % (n_types + 2)  # the last group are housekeeping genes
        for k in range(n_types + 1):
            profiles[k, markers == k] *= 12.0
        profiles /= profiles.sum(axis=1, keepdims=True)
        program = np.zeros((self.n_labels, self.n_genes))
        program[BACKGROUND] = 0.01 * profiles.mean(axis=0)
        program[STROMA] = 0.35 * profiles[n_types]
        for t in range(n_types):
            program[cytoplasm_label(t)] = 0.8 * profiles[t]
            program[nucleus_label(t)] = 1.0 * profiles[t]
        return program

    # ----------------------------------------------------------------------------------- layout
    def tissue_field(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        """Tissue indicator field on a grid (> 0 is tissue)."""
        return self._tissue.grid(y_um, x_um) + 0.25

    def region_of(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        """Region index (argmax of the region fields) at points."""
        return np.argmax(np.stack([f.points(y_um, x_um) for f in self._regions]), axis=0)

    def _block_nuclei(self, by: int, bx: int) -> _Nuclei:
        rng = np.random.default_rng([self.seed, 2, by + 2**20, bx + 2**20])
        n_side = round(_BLOCK_UM / self.cell_spacing_um)
        step = _BLOCK_UM / n_side
        gy, gx = np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij")
        y = by * _BLOCK_UM + (gy.ravel() + rng.uniform(0.1, 0.9, gy.size)) * step
        x = bx * _BLOCK_UM + (gx.ravel() + rng.uniform(0.1, 0.9, gx.size)) * step
        region = self.region_of(y, x)
        in_tissue = self._tissue.points(y, x) + 0.25 > 0.05
        keep = in_tissue & (rng.uniform(size=y.size) < self.region_density[region])
        u = rng.uniform(size=y.size)
        cum = np.cumsum(self.region_mixture[region], axis=1)
        cell_type = np.minimum((u[:, None] > cum).sum(axis=1), len(self.cell_types) - 1)
        radius = np.array([c.nucleus_radius_um for c in self.cell_types])[cell_type]
        radius = radius * rng.lognormal(0.0, 0.12, y.size)
        angle = rng.uniform(0, np.pi, y.size)
        shade = rng.normal(1.0, 0.08, y.size)
        return _Nuclei(y[keep], x[keep], cell_type[keep], radius[keep], angle[keep], shade[keep])

    # ----------------------------------------------------------------------------------- render
    def render(self, y0: int, x0: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Render a tile of the image and its pixel labels.

        Parameters
        ----------
        y0, x0
            Top-left pixel of the tile in the full-resolution image.
        height, width
            Tile size in pixels.

        Returns
        -------
        rgb
            ``(height, width, 3)`` uint8 image.
        labels
            ``(height, width)`` uint8 labels: 0 background, 1 stroma, ``2 + 2t`` cytoplasm and ``3 + 2t``
            nucleus of cell type ``t``.

        """
        mpp = self.microns_per_pixel
        iy, ix = np.arange(y0, y0 + height), np.arange(x0, x0 + width)
        y_um, x_um = (iy + 0.5) * mpp, (ix + 0.5) * mpp
        tissue = self.tissue_field(y_um, x_um) > 0.0
        labels = np.where(tissue, STROMA, BACKGROUND).astype(np.uint8)

        grain = _hash_uniform(iy[:, None], ix[None, :], self.seed)
        fibres = 0.5 + 0.5 * np.sin(self._fibres.grid(y_um, x_um) * 6.0)
        rgb = np.empty((height, width, 3), dtype=np.float32)
        rgb[:] = _BACKGROUND_RGB
        stroma = _STROMA_RGB + self.stain_jitter - 18.0 * fibres[..., None]
        rgb[tissue] = stroma[tissue]

        self._paint_cells(rgb, labels, tissue, y0, x0, grain)
        rgb += (grain[..., None] - 0.5) * 10.0
        return np.clip(rgb, 0, 255).astype(np.uint8), labels

    def _paint_cells(
        self, rgb: np.ndarray, labels: np.ndarray, tissue: np.ndarray, y0: int, x0: int, grain: np.ndarray
    ) -> None:
        mpp = self.microns_per_pixel
        height, width = labels.shape
        max_r = max(c.nucleus_radius_um * c.elongation * c.cytoplasm_scale for c in self.cell_types) * 1.5
        lo_y, hi_y = y0 * mpp - max_r, (y0 + height) * mpp + max_r
        lo_x, hi_x = x0 * mpp - max_r, (x0 + width) * mpp + max_r
        for by in range(int(np.floor(lo_y / _BLOCK_UM)), int(np.floor(hi_y / _BLOCK_UM)) + 1):
            for bx in range(int(np.floor(lo_x / _BLOCK_UM)), int(np.floor(hi_x / _BLOCK_UM)) + 1):
                nuclei = self._block_nuclei(by, bx)
                inside = (nuclei.y_um > lo_y) & (nuclei.y_um < hi_y) & (nuclei.x_um > lo_x) & (nuclei.x_um < hi_x)
                for i in np.flatnonzero(inside):
                    self._paint_cell(rgb, labels, tissue, y0, x0, grain, nuclei, i)

    def _paint_cell(self, rgb, labels, tissue, y0, x0, grain, nuclei: _Nuclei, i: int) -> None:
        mpp = self.microns_per_pixel
        t = int(nuclei.cell_type[i])
        ct = self.cell_types[t]
        a = nuclei.radius_um[i] * np.sqrt(ct.elongation)  # semi-axes keep the nucleus area
        b = nuclei.radius_um[i] / np.sqrt(ct.elongation)
        reach = a * ct.cytoplasm_scale
        cy, cx = nuclei.y_um[i] / mpp - y0, nuclei.x_um[i] / mpp - x0  # centre in tile pixels (continuous)
        r_px = reach / mpp
        ys = slice(max(0, int(cy - r_px)), min(labels.shape[0], int(cy + r_px) + 2))
        xs = slice(max(0, int(cx - r_px)), min(labels.shape[1], int(cx + r_px) + 2))
        if ys.start >= ys.stop or xs.start >= xs.stop:
            return
        dy = (np.arange(ys.start, ys.stop) + 0.5 - cy)[:, None] * mpp
        dx = (np.arange(xs.start, xs.stop) + 0.5 - cx)[None, :] * mpp
        cos, sin = np.cos(nuclei.angle[i]), np.sin(nuclei.angle[i])
        u, v = dx * cos + dy * sin, -dx * sin + dy * cos
        rho2 = (u / a) ** 2 + (v / b) ** 2
        cyto = (rho2 <= ct.cytoplasm_scale**2) & tissue[ys, xs]
        nucleus = rho2 <= 1.0
        sub_labels, sub_rgb = labels[ys, xs], rgb[ys, xs]
        free = cyto & (sub_labels <= STROMA)  # earlier cells keep their pixels
        sub_labels[free] = cytoplasm_label(t)
        sub_rgb[free] = np.asarray(ct.cytoplasm_rgb, np.float32) + self.stain_jitter
        chromatin = 1.0 + ct.texture * (grain[ys, xs] - 0.5) * 2.0 + 0.25 * np.sqrt(np.clip(rho2, 0, 1))
        colour = np.asarray(ct.hematoxylin_rgb, np.float32) * nuclei.shade[i] + self.stain_jitter
        sub_labels[nucleus] = nucleus_label(t)
        sub_rgb[nucleus] = colour * chromatin[nucleus][:, None]

    # ----------------------------------------------------------------------------------- expression
    def expected_counts(self, label_histogram: np.ndarray, counts_per_um2: float) -> np.ndarray:
        """Expected UMI counts of areas described by their pixel-label histograms.

        Parameters
        ----------
        label_histogram
            ``(..., n_labels)`` number of pixels of each label inside each area.
        counts_per_um2
            Expected UMIs per µm² of nucleus.

        Returns
        -------
        ``(..., n_genes)`` expected counts (the Poisson rate of each gene in each area).

        """
        pixel_area = self.microns_per_pixel**2
        return (label_histogram @ self.program) * (counts_per_um2 * pixel_area)

    def describe(self) -> dict:
        """JSON-serialisable description of the generator, enough to recompute the truth."""
        return {
            "generator": "pixnet.datasets.SyntheticTissue",
            "seed": self.seed,
            "n_genes": self.n_genes,
            "microns_per_pixel": self.microns_per_pixel,
            "cell_spacing_um": self.cell_spacing_um,
            "cell_types": [c.name for c in self.cell_types],
            "labels": ["background", "stroma"]
            + [f"{c.name}_{part}" for c in self.cell_types for part in ("cytoplasm", "nucleus")],
            "program": self.program.tolist(),
            "genes": self.gene_names,
        }
