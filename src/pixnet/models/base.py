"""What every trained pixnet model (PixNet, Image2Gene) exposes about its outputs and training."""

from __future__ import annotations

import torch

from ..pp import Normalization


class TrainedModel:
    """Shared properties; subclasses set ``network``, ``config`` and ``history``."""

    network: torch.nn.Module
    history: list[dict]

    @property
    def genes(self) -> list[str]:
        """Genes, in output order."""
        return list(self.config.genes)

    @property
    def normalization(self) -> Normalization:
        """The target normalisation."""
        return Normalization.from_dict(self.config.normalization)

    @property
    def microns_per_pixel(self) -> float:
        """Working resolution of the model."""
        return float(self.config.microns_per_pixel)

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are."""
        return next(self.network.parameters()).device

    @property
    def epochs_trained(self) -> int:
        """Training epochs in ``history`` (epoch 0 there is the untrained model's validation)."""
        return sum(h["epoch"] > 0 for h in self.history)
