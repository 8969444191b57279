"""Eq. 9: a shape's prediction is the sum of the map over its pixels, for squares, circles and polygons."""

import numpy as np
import torch

from pixnet.data.spans import shape_spans, span_sums


def _sums(density, spans, n):
    zeros = torch.zeros(len(spans), dtype=torch.long)
    return span_sums(density, zeros, *(torch.from_numpy(a) for a in (spans.row, spans.x0, spans.x1, spans.shape)), n)


def test_eq9_sums_are_additive_over_nested_squares():
    density = torch.rand(1, 3, 40, 40)
    um = 0.5  # µm per pixel: a 2 µm bin is 4 px, a 4 µm bin 8 px
    small_centres = np.array([[10.0 + dx, 12.0 + dy] for dy in (-2, 2) for dx in (-2, 2)])
    small = _sums(density, shape_spans("square", small_centres, np.full(4, 1.0 / um)), 4)
    large = _sums(density, shape_spans("square", np.array([[10.0, 12.0]]), np.array([2.0 / um])), 1)
    torch.testing.assert_close(small.sum(0, keepdim=True), large)
    brute = density[0, :, 12 - 4 : 12 + 4, 10 - 4 : 10 + 4].sum(dim=(1, 2))
    torch.testing.assert_close(large[0], brute)


def test_circle_and_polygon_sums_equal_pixel_masks():
    import shapely

    density = torch.rand(1, 2, 50, 50)
    yy, xx = np.mgrid[:50, :50] + 0.5
    centres, radius = np.array([[20.3, 25.1], [30.0, 30.0]]), np.array([7.2, 4.0])
    got = _sums(density, shape_spans("circle", centres, radius), 2)
    for i, ((x, y), r) in enumerate(zip(centres, radius, strict=True)):
        mask = torch.from_numpy((xx - x) ** 2 + (yy - y) ** 2 <= r**2)
        torch.testing.assert_close(got[i], density[0][:, mask].sum(-1))
    ring = shapely.Point(25, 25).buffer(12).difference(shapely.Point(25, 25).buffer(5))
    got = _sums(density, shape_spans("polygon", polygons=np.array([ring])), 1)
    mask = torch.from_numpy(shapely.contains_xy(ring, xx, yy))
    torch.testing.assert_close(got[0], density[0][:, mask].sum(-1))
