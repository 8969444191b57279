"""Training augmentations: dihedral rotations and flips, colour and H&E stain jitter, and how to undo them."""

from __future__ import annotations

import functools

import numpy as np
import torch

# Ruifrok & Johnston's stain vectors (rows: haematoxylin, eosin, DAB), as skimage.color.rgb_from_hed
RGB_FROM_HED = torch.tensor([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
RGB_FROM_HED = RGB_FROM_HED / RGB_FROM_HED.norm(dim=1, keepdim=True)
HED_FROM_RGB = torch.linalg.inv(RGB_FROM_HED)
# each stain's amount scaled by 1 +- 0.1 and shifted by +- 0.05 optical density (natural log): milder than Tellez et
# al.'s "HED-light" (shifts of 0.05 in skimage's units, 0.7 here), since the frozen encoder's features see it
STAIN_SCALE, STAIN_SHIFT = 0.1, 0.05


def draw_augmentations(n: int, rng: np.random.Generator) -> list[tuple]:
    """Per image: rot90 count, horizontal flip and the colour draws of :func:`draw_colour`."""
    return [(int(rng.integers(4)), bool(rng.integers(2)), *draw_colour(rng)) for _ in range(n)]


def draw_colour(rng: np.random.Generator) -> tuple:
    """Brightness, contrast, saturation; the H and E stains' scale and shift (see :func:`jitter_stains`)."""
    jitter = rng.uniform(0.92, 1.08, 3)
    scale = rng.uniform(1 - STAIN_SCALE, 1 + STAIN_SCALE, 2)
    shift = rng.uniform(-STAIN_SHIFT, STAIN_SHIFT, 2)
    return (*jitter, *scale, *shift)


def jitter_stains(image: torch.Tensor, scale: tuple[float, float], shift: tuple[float, float]) -> torch.Tensor:
    """``image`` ``(3, H, W)`` in [0, 1] with its haematoxylin and eosin optical densities scaled and shifted.

    The colour deconvolution of Ruifrok & Johnston: optical density ``-log(rgb)`` is split into the stains'
    amounts, the H and E amounts become ``amount * scale + shift``, and the image is recomposed.
    """
    density = -torch.log(image.clamp_min(1 / 255))
    stains = torch.einsum("chw,cs->shw", density, HED_FROM_RGB.to(image))
    factors = torch.tensor([*scale, 1.0], dtype=image.dtype, device=image.device).view(3, 1, 1)
    offsets = torch.tensor([*shift, 0.0], dtype=image.dtype, device=image.device).view(3, 1, 1)
    density = torch.einsum("shw,sc->chw", stains * factors + offsets, RGB_FROM_HED.to(image))
    return torch.exp(-density).clamp(0, 1)


def augment_images(images: torch.Tensor, ops: list[tuple]) -> torch.Tensor:
    """Rotate, flip and colour-jitter each image by its ``ops`` (see :func:`draw_augmentations`)."""
    out = []
    for image, (k, flip, brightness, contrast, saturation, *stains) in zip(images, ops, strict=True):
        image = torch.rot90(image, k, dims=(-2, -1))
        if flip:
            image = image.flip(-1)
        if stains and tuple(stains) != (1.0, 1.0, 0.0, 0.0):
            image = jitter_stains(image, stains[:2], stains[2:])
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
