"""What every trained pixnet model (PixNet, Image2Gene) shares: its outputs, its training record, save and load."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import torch

from ..nn import EncoderConfig, create_encoder
from ..pp import Normalization
from .persist import CONFIG, WEIGHTS, check_shapes, load_tensors, meta_state_shapes, read_record, save_folder

logger = logging.getLogger(__name__)


class TrainedModel:
    """Shared properties, ``save`` and ``load``; subclasses set ``network``, ``config`` and ``history``.

    A subclass names its ``method`` (recorded in ``config.json``), its ``config_class`` and the further tensor
    files it saves beside the network's weights, which it writes in :meth:`_tensors` and checks and reads back
    in :meth:`_check_files` and :meth:`_read_files`.
    """

    network: torch.nn.Module
    history: list[dict]
    method: ClassVar[str]
    config_class: ClassVar[type]
    config_defaults: ClassVar[dict] = {}  # fields that older model files lack, with the value they meant
    extra_files: ClassVar[tuple[str, ...]] = ()

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

    @staticmethod
    def _create_encoder(config, encoder_weights: str | None) -> tuple[torch.nn.Module, EncoderConfig]:
        """The encoder ``config`` names: random, or with ``encoder_weights`` (then recorded in ``config.encoder``)."""
        encoder_config = EncoderConfig.from_dict(config.encoder)
        encoder, loaded = create_encoder(encoder_config.name, encoder_weights)
        if encoder_weights is not None:
            config.encoder = loaded.to_dict()
            encoder_config = loaded
        return encoder, encoder_config

    # ------------------------------------------------------------------------------------------ persistence
    def _tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The tensor files to save, by file name."""
        return {WEIGHTS: self.network.state_dict()}

    @classmethod
    def _check_files(cls, config, path: Path) -> None:
        """Refuse further files whose tensors do not match ``config`` (before anything is built)."""

    def _read_files(self, path: Path) -> None:
        """Read the further files back into the built model."""

    def save(self, path: str | Path, overwrite: bool = False, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the network's weights (``model.safetensors``), any further tensor files and ``config.json``.

        The folder is written beside its target (symlinks resolved) and swapped in under a write lock, so a
        failed or killed save leaves the existing model or the new one, never neither, and two processes cannot
        both write one path. ``extra(folder)`` writes further files into the new folder before the swap
        (training checkpoints keep their trainer state there).
        """
        return save_folder(path, self._tensors(), self.config, self.history, overwrite, extra)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu"):
        """Load a saved model. Only tensors and JSON are read: loading never executes code.

        ``config.json`` and every tensor's shape are checked against each other before the network is built.
        """
        record = read_record(path, [WEIGHTS, *cls.extra_files], cls.method)
        path = Path(path)
        try:
            config = cls.config_class(**{**cls.config_defaults, **record["config"]})
        except TypeError as error:
            article = "an" if cls.__name__[0] in "AEIOU" else "a"
            raise ValueError(f"{path / CONFIG} is not {article} {cls.__name__} config: {error}.") from None
        check_shapes(meta_state_shapes(lambda: cls.build(config).network), path / WEIGHTS)
        cls._check_files(config, path)
        model = cls.build(config)
        model.network.load_state_dict(load_tensors(path / WEIGHTS))
        model._read_files(path)
        model.history = record.get("history", [])
        model.network.to(device)
        logger.info("Loaded %r from %s", model, path)
        return model
