"""Training data: sections at the working resolution, measured shapes as pixel spans, patch sampling."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import shapely
import torch

from ..pp import Normalization, normalize, spot_totals
from .inputs import ResolvedInputs
from .raster import read_resampled
from .spans import Spans, resolved_spans

logger = logging.getLogger(__name__)


@dataclass
class ShapeSet:
    """Measured shapes of one shapes element, in the section crop's working pixels."""

    name: str
    spans: Spans
    offsets: np.ndarray
    bbox: np.ndarray  # (n, 4): y0, y1, x0, x1 (exclusive ends) of the covered pixels
    centres: np.ndarray  # (n, 2): x, y
    area_px: np.ndarray
    targets: np.ndarray  # (n, n_genes) in target units
    exposure: np.ndarray  # (n,) counts per unit of value (see Normalization.exposure)
    totals: np.ndarray  # (n,) measured counts over all genes
    area_um2: np.ndarray  # (n,)
    validation: np.ndarray = field(default=None)  # (n,) bool

    def __len__(self) -> int:
        return len(self.centres)


@dataclass
class Section:
    """One image crop at the working resolution with its measured shape sets."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    shape_sets: list[ShapeSet]
    microns_per_pixel: float
    origin: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (x, y) of the crop in the whole image
    extent: tuple[float, float] | None = None  # (height, width) of the whole image, in working pixels

    def positions(self, centres: np.ndarray) -> np.ndarray:
        """Crop pixel centres ``(n, 2)`` -> positions ``(x, y)`` in [0, 1] of the whole image."""
        height, width = self.extent or self.image.shape[:2]
        return ((centres + self.origin) / np.array([width, height])).astype(np.float32)


def _span_bbox(spans: Spans, n: int) -> np.ndarray:
    bbox = np.zeros((n, 4), np.int64)
    if len(spans) == 0:
        return bbox
    bbox[:, 0] = np.iinfo(np.int64).max
    bbox[:, 2] = np.iinfo(np.int64).max
    np.minimum.at(bbox[:, 0], spans.shape, spans.row)
    np.maximum.at(bbox[:, 1], spans.shape, spans.row + 1)
    np.minimum.at(bbox[:, 2], spans.shape, spans.x0)
    np.maximum.at(bbox[:, 3], spans.shape, spans.x1)
    return bbox


def section_crop(
    inputs: ResolvedInputs, microns_per_pixel: float, margin_px: int, measured_only: bool = True
) -> tuple[np.ndarray, np.ndarray, float]:
    """The image around the resolved shapes plus ``margin_px``, at the working resolution.

    With ``measured_only``, shapes that a resolved table does not measure are left out.

    Returns
    -------
    The ``(H, W, 3)`` uint8 crop, its origin ``(x, y)`` and the factor from level pixels to working pixels.

    """
    level = inputs.image
    factor = level.microns_per_pixel / microns_per_pixel
    boxes = []
    for s in inputs.shapes.values():
        rows = s.shape_positions if measured_only and s.shape_positions is not None else np.arange(len(s))
        if s.kind == "polygon":
            b = shapely.bounds(s.polygons.iloc[rows].to_numpy()) * factor
            boxes.append([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
        else:
            c = s.centres[rows] * factor
            reach = s.half_size[rows] * factor
            boxes.append(
                [(c[:, 0] - reach).min(), (c[:, 1] - reach).min(), (c[:, 0] + reach).max(), (c[:, 1] + reach).max()]
            )
    boxes = np.array(boxes)
    height_w, width_w = level.shape[0] * factor, level.shape[1] * factor
    x0 = int(max(np.floor(boxes[:, 0].min()) - margin_px, 0))
    y0 = int(max(np.floor(boxes[:, 1].min()) - margin_px, 0))
    x1 = int(min(np.ceil(boxes[:, 2].max()) + margin_px, np.floor(width_w)))
    y1 = int(min(np.ceil(boxes[:, 3].max()) + margin_px, np.floor(height_w)))
    crop = read_resampled(level.data, (y0, y1, x0, x1), factor)
    return crop, np.array([x0, y0], float), factor


def build_section(
    inputs: ResolvedInputs,
    *,
    name: str,
    genes: list[str],
    normalization: Normalization,
    microns_per_pixel: float,
    margin_px: int,
) -> Section:
    """Load a section's image crop at the working resolution and express its measured shapes in it.

    ``inputs`` come from :func:`pixnet.resolve_inputs` with ``target_microns_per_pixel=microns_per_pixel`` and
    ``require_table=True``.
    """
    crop, origin, factor = section_crop(inputs, microns_per_pixel, margin_px)
    shape_sets = []
    for s in inputs.shapes.values():
        spans, centres, area_px = resolved_spans(s, factor, origin, rows=s.shape_positions)
        area_um2 = area_px * microns_per_pixel**2
        targets = normalize(s.table, genes, normalization, area_um2=area_um2)
        totals = spot_totals(s.table)
        exposure = normalization.exposure(totals, area_um2).astype(np.float32)
        n = len(centres)
        bbox = _span_bbox(spans, n)
        shape_sets.append(
            ShapeSet(
                s.name,
                spans,
                spans.offsets(n),
                bbox,
                centres,
                area_px,
                targets,
                exposure,
                totals.astype(np.float32),
                area_um2.astype(np.float32),
            )
        )
        logger.info("Section %s: %d measured shapes of %r", name, n, s.name)
    extent = (inputs.image.shape[0] * factor, inputs.image.shape[1] * factor)
    return Section(name, crop, shape_sets, microns_per_pixel, origin, extent)


# ------------------------------------------------------------------------------------------------ splits
def split_by_region(sections: list[Section], fraction: float) -> None:
    """Hold out, in every section, the shapes whose centre lies in the right-most ``fraction`` of x."""
    for section in sections:
        xs = np.concatenate([s.centres[:, 0] for s in section.shape_sets])
        threshold = np.quantile(xs, 1 - fraction)
        for s in section.shape_sets:
            s.validation = s.centres[:, 0] >= threshold


def split_by_section(sections: list[Section], names: list[str]) -> None:
    """Hold out whole sections."""
    unknown = set(names) - {s.name for s in sections}
    if unknown:
        raise ValueError(f"Validation sections {sorted(unknown)} are not among {[s.name for s in sections]}.")
    for section in sections:
        for s in section.shape_sets:
            s.validation = np.full(len(s), section.name in names)


# ------------------------------------------------------------------------------------------------ patches
@dataclass
class Patch:
    """A patch of one section and the shapes fully inside it that it supervises."""

    section: int
    y0: int
    x0: int
    shapes: list[tuple[int, np.ndarray]]  # (shape-set index, shape indices)


def sample_patches(
    sections: list[Section], patch_size: int, validation: bool, rng: np.random.Generator, align: int = 1
) -> list[Patch]:
    """Patches that supervise every shape of the split exactly once.

    A grid with a random offset takes the shapes that fall wholly inside one cell; each remaining shape
    then anchors a patch placed at random around it, which also takes its uncovered neighbours. With
    ``align``, patches start on multiples of it and stay inside the image (``patch_size`` must be a multiple);
    a shape that no such patch holds wholly is left out.
    """
    patches = []
    for si, section in enumerate(sections):
        height, width = section.image.shape[:2]
        off_y, off_x = (int(v) * align for v in rng.integers(0, patch_size // align, 2))
        grid: dict[tuple[int, int], list[tuple[int, np.ndarray]]] = {}
        leftovers = []
        for ki, s in enumerate(section.shape_sets):
            chosen = np.flatnonzero(s.validation == validation)
            if chosen.size == 0:
                continue
            b = s.bbox[chosen]
            cy0, cy1 = (b[:, 0] + off_y) // patch_size, (b[:, 1] - 1 + off_y) // patch_size
            cx0, cx1 = (b[:, 2] + off_x) // patch_size, (b[:, 3] - 1 + off_x) // patch_size
            py0, px0 = cy0 * patch_size - off_y, cx0 * patch_size - off_x
            inside = (cy0 == cy1) & (cx0 == cx1) & (py0 >= 0) & (px0 >= 0)
            inside &= (py0 + patch_size <= height) & (px0 + patch_size <= width)
            for (gy, gx), members in _group(cy0[inside], cx0[inside], chosen[inside]):
                grid.setdefault((gy, gx), []).append((ki, members))
            leftovers.append((ki, chosen[~inside]))
        for (gy, gx), shapes in grid.items():
            patches.append(Patch(si, gy * patch_size - off_y, gx * patch_size - off_x, shapes))
        for ki, remaining in leftovers:
            patches.extend(_anchor_patches(si, ki, section, remaining, patch_size, rng, align))
    return patches


def _group(gy: np.ndarray, gx: np.ndarray, members: np.ndarray):
    if members.size == 0:
        return []
    key = gy * (gx.max() + 1) + gx
    order = np.argsort(key, kind="stable")
    key, members, gy, gx = key[order], members[order], gy[order], gx[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], len(key)]
    return [((int(gy[a]), int(gx[a])), members[a:b]) for a, b in zip(starts, ends, strict=True)]


def _anchor_patches(si: int, ki: int, section: Section, remaining: np.ndarray, patch_size: int, rng, align: int):
    s = section.shape_sets[ki]
    height, width = section.image.shape[:2]
    remaining = remaining[rng.permutation(remaining.size)]
    covered = np.zeros(remaining.size, bool)
    b = s.bbox[remaining]
    # a patch takes only shapes starting in its rows: look them up by their first row, not by scanning all of
    # them (quadratic: hours per epoch for the ~10^5 leftover 8 µm bins of a whole capture area)
    by_row = np.argsort(b[:, 0], kind="stable")
    first_rows = b[by_row, 0]
    out = []
    for i in range(remaining.size):
        if covered[i]:
            continue
        y0, y1, x0, x1 = b[i]
        if y1 - y0 > patch_size or x1 - x0 > patch_size:
            covered[i] = True  # larger than a patch: cannot be supervised at this patch size
            continue
        py = _place(y0, y1, height, patch_size, rng, align)
        px = _place(x0, x1, width, patch_size, rng, align)
        if py is None or px is None:
            covered[i] = True
            continue
        near = by_row[slice(*np.searchsorted(first_rows, [py, py + patch_size]))]
        c = b[near]
        inside = ~covered[near] & (c[:, 1] <= py + patch_size) & (c[:, 2] >= px) & (c[:, 3] <= px + patch_size)
        members = np.sort(near[inside])  # in the order of the scan, as before
        covered[members] = True
        out.append(Patch(si, py, px, [(ki, remaining[members])]))
    return out


def _place(lo: int, hi: int, extent: int, patch_size: int, rng, align: int = 1) -> int | None:
    """Random patch start so that [lo, hi) is inside, preferring to stay inside [0, extent).

    With ``align`` > 1 the start is a multiple of it inside [0, extent), or ``None`` where there is none.
    """
    first, last = hi - patch_size, lo
    if extent >= patch_size:
        first, last = max(first, 0), min(last, extent - patch_size)
    if align > 1:
        first, last = -(-first // align), last // align
        return int(rng.integers(first, last + 1)) * align if last >= first and extent >= patch_size else None
    return int(rng.integers(first, last + 1)) if last >= first else int(lo)


# ------------------------------------------------------------------------------------------------ batches
@dataclass
class Batch:
    """Tensors for one step."""

    images: torch.Tensor  # (B, 3, P, P) float in [0, 1]
    batch: torch.Tensor  # per span
    row: torch.Tensor
    x0: torch.Tensor
    x1: torch.Tensor
    shape: torch.Tensor  # per span: index into targets
    targets: torch.Tensor  # (S, n_genes)
    exposure: torch.Tensor  # (S,) counts per unit of value
    totals: torch.Tensor  # (S,) measured counts over all genes
    area_um2: torch.Tensor  # (S,)
    group: torch.Tensor  # (S,) shape-set id, for the per-group PCC

    def to(self, device) -> Batch:
        """Move every tensor."""
        return Batch(**{k: v.to(device, non_blocking=True) for k, v in self.__dict__.items()})


def make_batch(sections: list[Section], patches: list[Patch], patch_size: int, groups: dict[str, int]) -> Batch:
    """Stack patch images and their shapes' spans (shifted into patch coordinates) and targets."""
    images = np.full((len(patches), patch_size, patch_size, 3), 255, np.uint8)
    spans_b, spans_r, spans_x0, spans_x1, spans_s, targets, exposure, group = [], [], [], [], [], [], [], []
    totals, area_um2 = [], []
    n_shapes = 0
    for b, patch in enumerate(patches):
        section = sections[patch.section]
        y0, x0 = patch.y0, patch.x0
        sy0, sx0 = max(y0, 0), max(x0, 0)
        crop = section.image[sy0 : y0 + patch_size, sx0 : x0 + patch_size]
        images[b, sy0 - y0 : sy0 - y0 + crop.shape[0], sx0 - x0 : sx0 - x0 + crop.shape[1]] = crop
        for ki, members in patch.shapes:
            s = section.shape_sets[ki]
            starts, ends = s.offsets[members], s.offsets[members + 1]
            counts = ends - starts
            index = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
            spans_b.append(np.full(index.size, b))
            spans_r.append(s.spans.row[index] - y0)
            spans_x0.append(s.spans.x0[index] - x0)
            spans_x1.append(s.spans.x1[index] - x0)
            spans_s.append(n_shapes + np.repeat(np.arange(members.size), counts))
            targets.append(s.targets[members])
            exposure.append(s.exposure[members])
            totals.append(s.totals[members])
            area_um2.append(s.area_um2[members])
            group.append(np.full(members.size, groups[s.name]))
            n_shapes += members.size
    cat = lambda parts: torch.from_numpy(np.concatenate(parts).astype(np.int64))  # noqa: E731
    return Batch(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255),
        batch=cat(spans_b),
        row=cat(spans_r),
        x0=cat(spans_x0),
        x1=cat(spans_x1),
        shape=cat(spans_s),
        targets=torch.from_numpy(np.concatenate(targets)),
        exposure=torch.from_numpy(np.concatenate(exposure)),
        totals=torch.from_numpy(np.concatenate(totals)),
        area_um2=torch.from_numpy(np.concatenate(area_um2)),
        group=cat(group),
    )


def spot_patches(image: np.ndarray, centres: np.ndarray, patch_size: int) -> np.ndarray:
    """``(n, patch_size, patch_size, 3)`` uint8 patches centred on ``centres`` (x, y), white beyond the image."""
    half = patch_size // 2
    padded = np.pad(image, ((half, patch_size), (half, patch_size), (0, 0)), constant_values=255)
    starts = np.floor(np.asarray(centres, float)).astype(np.int64)  # top-left in padded = centre - half + half
    out = np.empty((len(starts), patch_size, patch_size, 3), np.uint8)
    for i, (x, y) in enumerate(starts):
        out[i] = padded[y : y + patch_size, x : x + patch_size]
    return out
