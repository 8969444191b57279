"""Training augmentations: dihedral rotations and flips, mild colour jitter, and how to undo them."""

from __future__ import annotations

import functools

import numpy as np
import torch


def draw_augmentations(n: int, rng: np.random.Generator) -> list[tuple]:
    """Per image: rot90 count, horizontal flip, brightness, contrast, saturation."""
    return [(int(rng.integers(4)), bool(rng.integers(2)), *rng.uniform(0.92, 1.08, 3)) for _ in range(n)]


def augment_images(images: torch.Tensor, ops: list[tuple]) -> torch.Tensor:
    """Rotate, flip and colour-jitter each image by its ``ops`` (see :func:`draw_augmentations`)."""
    out = []
    for image, (k, flip, brightness, contrast, saturation) in zip(images, ops, strict=True):
        image = torch.rot90(image, k, dims=(-2, -1))
        if flip:
            image = image.flip(-1)
        mean = image.mean()
        image = (image - mean) * contrast + mean * brightness
        gray = image.mean(dim=0, keepdim=True)
        out.append(((image - gray) * saturation + gray).clamp(0, 1))
    return torch.stack(out)


def undo_augmentation(maps: torch.Tensor, ops: list[tuple]) -> torch.Tensor:
    """Rotate and flip maps of augmented images back to the original orientation."""
    restored = []
    for density, (k, flip, *_) in zip(maps, ops, strict=True):
        if flip:
            density = density.flip(-1)
        restored.append(torch.rot90(density, -k, dims=(-2, -1)))
    return torch.stack(restored)


def augmented_positions(ops: list[tuple], size: int) -> torch.Tensor:
    """Per image, the flat index each pixel of the original patch moved to under its rotation and flip."""
    return torch.stack([_moved_to(int(k), bool(flip), size) for k, flip, *_ in ops])


@functools.lru_cache(maxsize=64)
def _moved_to(k: int, flip: bool, size: int) -> torch.Tensor:
    grid = torch.arange(size * size).view(size, size)
    moved = torch.rot90(grid, k, dims=(0, 1))
    moved = moved.flip(-1) if flip else moved
    position = torch.empty(size * size, dtype=torch.long)
    position[moved.flatten()] = torch.arange(size * size)
    return position
