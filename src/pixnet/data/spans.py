"""Shapes as pixel row spans, and the Eq. 9 sum of a dense map over them.

A shape covers the pixels whose centres lie inside it (pixel ``i`` spans ``[i, i + 1)``). Squares are
half-open, so bins that tile the plane partition its pixels and sums are exactly additive over nested bins.
Every shape becomes a list of ``(row, x_start, x_stop)`` spans; the sum over a span is two lookups in a
cumulative sum along x, so masks are never built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
import torch
import torch.nn.functional as F

__all__ = ["Spans", "check_on_image", "shape_spans", "span_pixels", "span_sums"]


@dataclass
class Spans:
    """Row spans of a set of shapes; span ``j`` belongs to shape ``shape[j]`` (int32: millions of bins)."""

    shape: np.ndarray
    row: np.ndarray
    x0: np.ndarray
    x1: np.ndarray

    def __post_init__(self) -> None:
        for name in ("shape", "row", "x0", "x1"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.int32))

    def __len__(self) -> int:
        return len(self.shape)

    def offsets(self, n_shapes: int) -> np.ndarray:
        """CSR-style pointer: spans of shape ``i`` are ``offsets[i]:offsets[i + 1]`` (spans sorted by shape)."""
        return np.concatenate([[0], np.cumsum(np.bincount(self.shape, minlength=n_shapes))])


def _squares(centres: np.ndarray, half: np.ndarray) -> Spans:
    y0 = np.ceil(centres[:, 1] - half - 0.5).astype(np.int64)
    y1 = np.ceil(centres[:, 1] + half - 0.5).astype(np.int64)
    x0 = np.ceil(centres[:, 0] - half - 0.5).astype(np.int64)
    x1 = np.ceil(centres[:, 0] + half - 0.5).astype(np.int64)
    n_rows = np.maximum(y1 - y0, 0)
    shape = np.repeat(np.arange(len(centres)), n_rows)
    first = np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    row = np.repeat(y0, n_rows) + (np.arange(n_rows.sum()) - first)
    return Spans(shape, row, x0[shape], x1[shape])


def _circles(centres: np.ndarray, radius: np.ndarray) -> Spans:
    y0 = np.ceil(centres[:, 1] - radius - 0.5).astype(np.int64)
    y1 = np.floor(centres[:, 1] + radius - 0.5).astype(np.int64) + 1
    n_rows = np.maximum(y1 - y0, 0)
    shape = np.repeat(np.arange(len(centres)), n_rows)
    first = np.repeat(np.cumsum(n_rows) - n_rows, n_rows)
    row = np.repeat(y0, n_rows) + (np.arange(n_rows.sum()) - first)
    dy = row + 0.5 - centres[shape, 1]
    chord = np.sqrt(np.maximum(radius[shape] ** 2 - dy**2, 0.0))
    x0 = np.ceil(centres[shape, 0] - chord - 0.5).astype(np.int64)
    x1 = np.floor(centres[shape, 0] + chord - 0.5).astype(np.int64) + 1
    keep = x1 > x0
    return Spans(shape[keep], row[keep], x0[keep], x1[keep])


def _polygons(polygons: np.ndarray) -> Spans:
    """Even-odd scanline fill at pixel-centre rows; holes and multipolygons follow from the rule."""
    parts = []
    for i, geometry in enumerate(polygons):
        rings = shapely.get_rings(shapely.get_parts(geometry))
        edges = []
        for ring in rings:
            xy = shapely.get_coordinates(ring)
            edges.append(np.column_stack([xy[:-1], xy[1:]]))
        if not edges:
            continue
        e = np.concatenate(edges)  # x_a, y_a, x_b, y_b
        e = e[e[:, 1] != e[:, 3]]
        if len(e) == 0:
            continue
        rows = np.arange(np.ceil(e[:, [1, 3]].min() - 0.5), np.floor(e[:, [1, 3]].max() - 0.5) + 1).astype(np.int64)
        yc = rows[:, None] + 0.5
        lo, hi = np.minimum(e[:, 1], e[:, 3]), np.maximum(e[:, 1], e[:, 3])
        crosses = (yc >= lo) & (yc < hi)
        t = (yc - e[:, 1]) / (e[:, 3] - e[:, 1])
        x = np.where(crosses, e[:, 0] + t * (e[:, 2] - e[:, 0]), np.inf)
        x.sort(axis=1)
        n_cross = crosses.sum(axis=1)
        for k in range(0, int(n_cross.max(initial=0)), 2):
            valid = n_cross > k + 1
            xa, xb = x[valid, k], x[valid, k + 1]
            x0, x1 = np.ceil(xa - 0.5).astype(np.int64), np.ceil(xb - 0.5).astype(np.int64)
            keep = x1 > x0
            parts.append((np.full(keep.sum(), i), rows[valid][keep], x0[keep], x1[keep]))
    if not parts:
        empty = np.zeros(0, np.int64)
        return Spans(empty, empty, empty, empty)
    shape, row, x0, x1 = (np.concatenate(p) for p in zip(*parts, strict=True))
    order = np.argsort(shape, kind="stable")
    return Spans(shape[order], row[order], x0[order], x1[order])


def shape_spans(
    kind: str, centres: np.ndarray | None = None, half_size: np.ndarray | None = None, polygons=None
) -> Spans:
    """Row spans of circles (``half_size`` = radius), squares (half side) or polygons, in pixel coordinates."""
    if kind == "square":
        return _squares(np.asarray(centres, float), np.asarray(half_size, float))
    if kind == "circle":
        return _circles(np.asarray(centres, float), np.asarray(half_size, float))
    if kind == "polygon":
        return _polygons(np.asarray(polygons))
    raise ValueError(f"Unknown shape kind {kind!r}.")


def span_sums(
    density: torch.Tensor,
    batch: torch.Tensor,
    row: torch.Tensor,
    x0: torch.Tensor,
    x1: torch.Tensor,
    shape: torch.Tensor,
    n_shapes: int,
) -> torch.Tensor:
    """Eq. 9: the sum of ``density`` (B, M, H, W) over each shape's spans -> ``(n_shapes, M)``.

    Span coordinates must lie inside the map (``0 <= row < H``, ``0 <= x0 <= x1 <= W``).
    """
    cumulative = F.pad(density.float().cumsum(dim=-1), (1, 0))
    values = cumulative[batch, :, row, x1] - cumulative[batch, :, row, x0]
    out = torch.zeros(n_shapes, density.shape[1], dtype=values.dtype, device=density.device)
    return out.index_add_(0, shape, values)


def span_pixels(
    batch: torch.Tensor, row: torch.Tensor, x0: torch.Tensor, x1: torch.Tensor, shape: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every pixel of the spans: its ``(batch, row, x, shape)``, one entry per pixel."""
    lengths = x1 - x0
    span = torch.repeat_interleave(torch.arange(len(lengths), device=lengths.device), lengths)
    first = torch.cumsum(lengths, 0) - lengths
    x = x0[span] + torch.arange(span.numel(), device=lengths.device) - first[span]
    return batch[span], row[span], x, shape[span]


def inside_fraction(spans: Spans, n_shapes: int, height: int, width: int) -> np.ndarray:
    """Per shape, the share of its pixels inside a ``height`` x ``width`` map (1 for shapes with no pixel)."""
    full = np.bincount(spans.shape, weights=(spans.x1 - spans.x0).astype(np.float64), minlength=n_shapes)
    clipped = np.clip(spans.x1, 0, width) - np.clip(spans.x0, 0, width)
    clipped = np.where((spans.row >= 0) & (spans.row < height), clipped, 0)
    inside = np.bincount(spans.shape, weights=clipped.astype(np.float64), minlength=n_shapes)
    return np.divide(inside, full, out=np.ones(n_shapes), where=full > 0)


def overlaps_box(shapes, height: float, width: float) -> np.ndarray:
    """Whether each resolved shape's bounding box overlaps ``[0, width] x [0, height]`` (its pixel frame)."""
    if shapes.kind == "polygon":
        x0, y0, x1, y1 = shapely.bounds(shapes.polygons.to_numpy()).T
    else:
        (cx, cy), half = shapes.centres.T, shapes.half_size
        x0, y0, x1, y1 = cx - half, cy - half, cx + half, cy + half
    return (x1 > 0) & (y1 > 0) & (x0 < width) & (y0 < height)


def resolved_spans(shapes, factor: float = 1.0, origin=(0.0, 0.0), rows: np.ndarray | None = None):
    """Spans of resolved shapes (see :class:`pixnet.ResolvedShapes`) scaled by ``factor`` and shifted by ``origin``.

    Returns
    -------
    The spans (sorted by shape), the centres and the areas in the new pixel frame.

    """
    rows = np.arange(len(shapes)) if rows is None else rows
    origin = np.asarray(origin, float)
    centres = shapes.centres[rows] * factor - origin
    if shapes.kind == "polygon":
        matrix = [factor, 0, 0, factor, -origin[0], -origin[1]]
        geometry = shapes.polygons.iloc[rows].affine_transform(matrix).to_numpy()
        return shape_spans("polygon", polygons=geometry), centres, shapely.area(geometry)
    half = shapes.half_size[rows] * factor
    area = np.pi * half**2 if shapes.kind == "circle" else (2 * half) ** 2
    return shape_spans(shapes.kind, centres, half), centres, area


def check_on_image(inputs) -> None:
    """Refuse a shape set of which no shape overlaps the image (:class:`pixnet.ResolvedInputs`)."""
    height, width = inputs.image.data.shape[1:]
    for name, resolved in inputs.shapes.items():
        if len(resolved) and not overlaps_box(resolved, height, width).any():
            raise ValueError(
                f"None of the {len(resolved)} shapes of {name!r} lies on image {inputs.image.name!r} "
                f"({width} x {height} px in coordinate system {inputs.image.coordinate_system!r}); check that "
                "they belong to this image."
            )
