"""The Image2Gene network: image encoder + spatial-coordinate embedding -> a unit-length spot embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import EncoderConfig

__all__ = ["Image2GeneNetwork"]


class CoordinateEmbedding(nn.Module):
    """A learnable embedding of ``(x, y)`` in [0, 1]: Fourier features -> two-layer MLP."""

    def __init__(self, dim: int, frequencies: int = 6, hidden: int = 64) -> None:
        super().__init__()
        self.register_buffer("scales", math.pi * 2.0 ** torch.arange(frequencies), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(4 * frequencies, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))

    def forward(self, xy: torch.Tensor) -> torch.Tensor:
        angles = (xy.unsqueeze(-1) * self.scales).flatten(1)
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=1))


class Image2GeneNetwork(nn.Module):
    """Embed spot-centred patches so that cosine similarity between spots follows their expression correlation.

    Parameters
    ----------
    encoder
        A pyramid encoder (the deepest level is global-average pooled) with a ``channels`` attribute.
    encoder_config
        Its :class:`~pixnet.nn.EncoderConfig` (the input normalisation is taken from it).
    embedding_dim
        Length of the embedding.
    hidden
        Width of the fully connected projection.
    coordinates
        Add a learnable embedding of the patch centre's position in its section (Fourier features -> MLP).

    """

    def __init__(
        self,
        encoder: nn.Module,
        encoder_config: EncoderConfig,
        embedding_dim: int = 128,
        hidden: int = 512,
        coordinates: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projection = nn.Sequential(
            nn.Linear(encoder.channels[-1], hidden), nn.ReLU(inplace=True), nn.Linear(hidden, embedding_dim)
        )
        self.coordinates = CoordinateEmbedding(embedding_dim) if coordinates else None
        self.register_buffer("mean", torch.tensor(encoder_config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(encoder_config.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor, xy: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, P, P)`` RGB in [0, 1] and ``(B, 2)`` positions in [0, 1] -> ``(B, embedding_dim)`` unit vectors."""
        pooled = self.encoder((images - self.mean) / self.std)[-1].mean(dim=(-2, -1))
        embedding = self.projection(pooled)
        if self.coordinates is not None:
            if xy is None:
                raise ValueError("This network embeds spot positions too; pass xy= (positions in [0, 1]).")
            embedding = embedding + self.coordinates(xy.to(embedding.dtype))
        return F.normalize(embedding, dim=1)
