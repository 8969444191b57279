"""The trained PixNet model: network, the choices that define its outputs, save and load."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .models import EncoderConfig, PixNetNetwork, create_encoder
from .pp import Normalization

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "PixNet", "PixNetConfig"]

FORMAT_VERSION = 1
_WEIGHTS, _CONFIG = "model.safetensors", "config.json"


def _version() -> str:
    from . import __version__

    return __version__


@dataclass
class PixNetConfig:
    """Everything needed to rebuild a model and interpret its outputs.

    Attributes
    ----------
    genes
        Output channels, in order.
    gene_selection
        How the genes were chosen (see :func:`pixnet.pp.select_genes`).
    normalization
        Target normalisation (see :class:`pixnet.pp.Normalization`).
    microns_per_pixel
        Working resolution: the model sees images, and produces maps, at this pixel size.
    patch_size
        Training patch side in pixels.
    encoder
        The encoder's :class:`~pixnet.models.EncoderConfig` as a dict.
    decoder_width
        Channels of the deepest decoder stage.
    decoder_norm
        Normalisation in the decoder: ``"channel"`` (per-pixel layer norm; a pixel's prediction does not depend
        on the batch or tile around it) or ``"batch"`` (how models saved before pixnet 0.2 were built).

    Examples
    --------
    >>> import pixnet
    >>> config = pixnet.model.PixNetConfig(
    ...     genes=["SYN000", "SYN001"],
    ...     gene_selection={"method": "list", "params": {}},
    ...     normalization=pixnet.pp.Normalization("total_log").to_dict(),
    ...     microns_per_pixel=1.0,
    ...     patch_size=128,
    ...     encoder=pixnet.models.EncoderConfig("resnet18").to_dict(),
    ...     decoder_width=32,
    ... )
    >>> pixnet.model.PixNet.build(config).genes
    ['SYN000', 'SYN001']

    """

    genes: list[str]
    gene_selection: dict
    normalization: dict
    microns_per_pixel: float
    patch_size: int
    encoder: dict
    decoder_width: int = 512
    decoder_norm: str = "channel"
    method: str = "pixnet"
    training: dict = field(default_factory=dict)


class PixNet:
    """A PixNet model: predicts a dense, non-negative expression map from an H&E image.

    The map has one channel per gene at :attr:`microns_per_pixel`. Summing it over a shape's pixels gives the
    shape's expression *before* the target transform (Eq. 9); :attr:`normalization` maps that sum to the
    target units the model was trained on (e.g. ``log1p`` of area-scaled counts per 10k).

    Create one with :func:`pixnet.tl.train` or :meth:`load`.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=160)  # doctest: +SKIP
    >>> sdata = pixnet.io.read(folder)  # doctest: +SKIP
    >>> model = pixnet.tl.train(sdata, shapes="bins_8um", epochs=5)  # doctest: +SKIP
    >>> path = model.save("pixnet_model")  # doctest: +SKIP
    >>> model = pixnet.model.PixNet.load(path)  # doctest: +SKIP
    >>> pixnet.tl.predict(sdata, shapes="bins_2um", model=model)  # doctest: +SKIP
    >>> sdata["pixnet_synthetic_square_002um"]  # doctest: +SKIP

    """

    def __init__(self, network: PixNetNetwork, config: PixNetConfig, history: list[dict] | None = None) -> None:
        self.network = network
        self.config = config
        self.history = list(history or [])

    @classmethod
    def build(cls, config: PixNetConfig, encoder_weights: str | None = None) -> PixNet:
        """A new model for ``config``; the encoder is randomly initialised unless ``encoder_weights`` is given."""
        encoder_config = EncoderConfig.from_dict(config.encoder)
        encoder, loaded = create_encoder(encoder_config.name, encoder_weights)
        if encoder_weights is not None:
            config.encoder = loaded.to_dict()
            encoder_config = loaded
        network = PixNetNetwork(
            encoder, encoder_config, len(config.genes), config.decoder_width, config.decoder_norm, config.patch_size
        )
        return cls(network, config)

    # ------------------------------------------------------------------------------------------ properties
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

    def __repr__(self) -> str:
        enc = self.config.encoder
        return (
            f"PixNet({len(self.genes)} genes, {self.microns_per_pixel:g} µm/px, encoder {enc['name']} "
            f"({enc['weights']}), decoder width {self.config.decoder_width}, {len(self.history)} epochs trained)"
        )

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_tiles(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Dense maps of RGB tiles.

        The decoder's attention sees, around each pixel, a window of one training patch, so a tile of any size
        gives every pixel the context a training patch gave it.

        Parameters
        ----------
        images
            ``(B, 3, H, W)`` uint8, or float in [0, 1], at :attr:`microns_per_pixel`.

        Returns
        -------
        ``(B, n_genes, H, W)`` float32 density on the model's device.

        """
        x = torch.as_tensor(images)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        self.network.eval()
        device = self.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            return self.network(x.to(device)).float()

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``model.safetensors`` and ``config.json`` to the folder ``path``.

        The folder is written next to its target and moved into place, so a failed save leaves an existing
        model untouched.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it.")
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        save_file(state, tmp / _WEIGHTS, metadata={"format": "pixnet", "format_version": str(FORMAT_VERSION)})
        record = {
            "format_version": FORMAT_VERSION,
            "pixnet_version": _version(),
            "config": asdict(self.config),
            "history": self.history,
        }
        (tmp / _CONFIG).write_text(json.dumps(record, indent=2))
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> PixNet:
        """Load a saved model. Only tensors and JSON are read: loading never executes code."""
        path = Path(path)
        if not (path / _CONFIG).is_file() or not (path / _WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} is not a saved pixnet model (needs {_CONFIG} and {_WEIGHTS}).")
        record = json.loads((path / _CONFIG).read_text())
        version = record.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path} was saved by pixnet {record.get('pixnet_version', '?')} in model format {version}; this "
                f"pixnet ({_version()}) reads format {FORMAT_VERSION}. Load it with that version or train again."
            )
        config = PixNetConfig(**{"decoder_norm": "batch", **record["config"]})  # older files: batch norm
        model = cls.build(config)
        state = load_file(path / _WEIGHTS)
        model.network.load_state_dict(state)
        model.history = record.get("history", [])
        model.network.to(device)
        logger.info("Loaded %r from %s", model, path)
        return model
