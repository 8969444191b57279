"""Transformations of elements into a coordinate system, as affine matrices."""

from __future__ import annotations

import numpy as np
from spatialdata.transformations import get_transformation

__all__ = ["affine_matrix", "linear_scale"]


def affine_matrix(element, cs: str) -> np.ndarray:
    """The 2-D affine matrix (x, y) of ``element`` into coordinate system ``cs``."""
    t = get_transformation(element, to_coordinate_system=cs)
    return np.asarray(t.to_affine_matrix(input_axes=("x", "y"), output_axes=("x", "y")), dtype=float)


def linear_scale(matrix: np.ndarray, what: str) -> float:
    """Isotropic scale of an affine matrix; refuses anisotropic or shearing transformations."""
    singular = np.linalg.svd(matrix[:2, :2], compute_uv=False)
    if singular.min() <= 0 or singular.max() / singular.min() > 1.001:
        raise ValueError(
            f"The transformation of {what} scales x and y differently ({singular}); pixnet needs square pixels."
        )
    return float(np.sqrt(singular[0] * singular[1]))
