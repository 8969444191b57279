"""Encoder pyramids of whole sections, computed once per dihedral variant and reused by every epoch.

With a frozen encoder the features of a patch never change, so training need not run the encoder again:
each section image is encoded once per rotation / flip (and a colour jitter drawn for that variant), and a
patch's pyramid is a slice of it. Patches then start on the encoder's 32-pixel grid, where every variant's
slice lines up with the variant's own grid.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.patches import Patch, Section
from .augment import augment_images

logger = logging.getLogger(__name__)

ALIGN = 32  # the encoder's deepest stride
IDENTITY = (0, False, 1.0, 1.0, 1.0)


def variant_box(y0: int, x0: int, size: int, shape: tuple[int, int], k: int, flip: bool) -> tuple[int, int]:
    """Top-left corner, in the rotated (``torch.rot90`` ``k`` times) and flipped image, of a square patch."""
    height, width = shape
    for _ in range(k):  # rot90 once: pixel (r, c) of an (h, w) image moves to (w - 1 - c, r)
        y0, x0, height, width = width - x0 - size, y0, width, height
    if flip:
        x0 = width - x0 - size
    return y0, x0


class PyramidCache:
    """Encoder pyramids of every section under ``variants`` (rot90 count, flip, brightness, contrast, saturation).

    Parameters
    ----------
    network
        A :class:`~pixnet.nn.PixNetNetwork` whose encoder stays frozen.
    sections
        Training sections, their images padded by :func:`pad_image`.
    variants
        One augmentation tuple per cached variant (see :func:`draw_augmentations`); index 0 is
        used when training without augmentation.

    """

    def __init__(self, network, sections: list[Section], variants: list[tuple], device, progress: bool = False):
        self.variants = variants
        self.levels: list[list[list[torch.Tensor]]] = []  # section -> variant -> level tensors (C, h, w)
        self.reductions = tuple(network.encoder.reductions)
        network.encoder.eval()
        total = len(sections) * len(variants)
        bar = tqdm(total=total, desc="encoding sections", disable=not progress, leave=False)
        for section in sections:
            image = section.image
            if image.shape[0] % ALIGN or image.shape[1] % ALIGN:
                raise ValueError("Pad section images with pad_image() before caching their pyramids.")
            per_variant = []
            pixels = torch.from_numpy(image).permute(2, 0, 1).float().div_(255).unsqueeze(0)
            for ops in variants:
                x = augment_images(pixels, [ops]).to(device)
                with torch.no_grad():
                    features = network.encoder((x - network.mean) / network.std)
                per_variant.append([f[0].cpu() for f in features])
                bar.update()
            self.levels.append(per_variant)
        bar.close()
        megabytes = sum(t.numel() * t.element_size() for s in self.levels for v in s for t in v) / 2**20
        logger.info("Cached encoder pyramids of %d sections x %d variants (%.0f MB)", len(sections), total, megabytes)
        self.shapes = [s.image.shape[:2] for s in sections]

    def batch(self, patches: list[Patch], variant: list[int], size: int, device) -> list[torch.Tensor]:
        """Pyramids ``(B, C, size / r, size / r)`` of ``patches``, each under its variant."""
        out = [[] for _ in self.reductions]
        for patch, v in zip(patches, variant, strict=True):
            k, flip = self.variants[v][:2]
            y0, x0 = variant_box(patch.y0, patch.x0, size, self.shapes[patch.section], k, flip)
            for level, (features, r) in enumerate(zip(self.levels[patch.section][v], self.reductions, strict=True)):
                out[level].append(features[:, y0 // r : (y0 + size) // r, x0 // r : (x0 + size) // r])
        return [torch.stack(level).to(device) for level in out]


CACHE_BYTES = 3 * 2**30
"""Largest cache of encoder pyramids: a whole Visium HD capture area at 1 µm/px would need ~9 GB for its eight
variants, and encoding it whole several more; beyond this the frozen encoder runs on each patch instead."""


def fits_cache(encoder, sections: list[Section], n_variants: int) -> bool:
    """Whether the pyramids of ``sections`` under ``n_variants`` fit in :data:`CACHE_BYTES` (float32)."""
    per_pixel = sum(c / r**2 for c, r in zip(encoder.channels, encoder.reductions, strict=True))
    pixels = sum(s.image.shape[0] * s.image.shape[1] for s in sections)
    needed = 4 * per_pixel * pixels * n_variants
    if needed > CACHE_BYTES:
        logger.info("Encoder pyramids would take %.1f GB: the frozen encoder runs on each patch", needed / 1e9)
    return needed <= CACHE_BYTES


def dihedral_variants(rng: np.random.Generator) -> list[tuple]:
    """The eight rotations and flips: the image as it is, then seven, each with a colour jitter.

    The jitter is drawn as the training loop's augmentation draws it.
    """
    turned = [(k, flip, *rng.uniform(0.92, 1.08, 3)) for k in range(4) for flip in (False, True)]
    return [IDENTITY, *turned[1:]]


def pad_image(image: np.ndarray, patch_size: int) -> np.ndarray:
    """``image`` padded white at the bottom and right to multiples of 32 pixels, and at least ``patch_size``."""
    height, width = (max(-(-n // ALIGN) * ALIGN, patch_size) for n in image.shape[:2])
    return np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), constant_values=255)
