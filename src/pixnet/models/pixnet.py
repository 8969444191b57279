"""The trained PixNet model: network, the choices that define its outputs, save and load."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from ..constants import Keys
from ..nn import PixNetNetwork
from ..training.loop import fit
from ..training.plan import TrainingPlan
from ..training.presets import TrainingPreset
from ..utils.model_files import FORMAT_VERSION, WEIGHTS, read_record
from .base import TrainedModel
from .held_out import HeldOutFit, reliability_record
from .params import PixNetParams

logger = logging.getLogger(__name__)

__all__ = ["FORMAT_VERSION", "MAP_UNITS", "PixNet", "PixNetConfig", "load_model"]

MAP_UNITS = ("normalized", "counts")
"""What a PixNet map can hold (``map_units="auto"`` chooses one of them on held-out tissue)."""


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
        The encoder's :class:`~pixnet.nn.EncoderConfig` as a dict.
    decoder_width
        Channels of the deepest decoder stage.
    decoder_norm
        Normalisation in the decoder: ``"channel"`` (per-pixel layer norm; a pixel's prediction does not depend
        on the batch or tile around it) or ``"batch"`` (how models saved before pixnet 0.2 were built).
    embedding_dim
        Length of the shape embedding trained by the auxiliary Image2Gene loss (0: none).
    output_stride
        Stride at which the decoder stops; the density is upsampled bilinearly from there (1: the paper's full
        resolution; models saved before this option have 1).
    dihedral_average
        Predict each tile in its eight rotations and flips and average the maps, rotated back (8x the
        prediction cost). A prediction setting: it can be changed on a trained model's config.
    n_models
        Decoders trained one after another (different initialisation, patch order and augmentation) on one
        frozen encoder; the map is the mean of their maps (a deep ensemble). 1: a single model.
    pixel_skip
        Channels of the full-resolution decoder stage's skip feature computed from the input pixels (with
        ``output_stride`` 1); 0: none (the paper, and models saved before this option).
    map_units
        ``"normalized"`` (the paper, and models saved before this option): a shape's sum of the map is its value
        in :attr:`normalization` before the log. ``"counts"``: the map holds each gene's expected counts per pixel
        and a last channel ``"other_genes"``, the expected counts of all genes it leaves out; a shape's prediction
        is computed from its sums as a measurement is from its counts (its composition, in the same units).
    reliability
        Empty, or (``pixnet.tl.train(reliability=True)``) how a model trained without part of the data did there:
        ``split``, ``n_shapes``, ``shape_area_um2``, per gene ``pcc`` and ``partial_pcc``, and ``residual_low`` /
        ``residual_high`` quantiles at ``levels`` (see :func:`pixnet.tl.predict`'s ``interval``); also filled by
        ``map_units="auto"``, from the held-out model of the chosen units.
    map_units_choice
        Empty, or (``map_units="auto"``) the units ``chosen`` on held-out tissue, the ``split`` and, per units, the
        held-out mean ``partial_pcc`` and ``pcc`` of its single model and the ``seconds`` it took.

    Examples
    --------
    >>> import pixnet
    >>> config = pixnet.models.PixNetConfig(
    ...     genes=["SYN000", "SYN001"],
    ...     gene_selection={"method": "list", "params": {}},
    ...     normalization=pixnet.pp.Normalization("total_log").to_dict(),
    ...     microns_per_pixel=1.0,
    ...     patch_size=128,
    ...     encoder=pixnet.nn.EncoderConfig("resnet18").to_dict(),
    ...     decoder_width=32,
    ... )
    >>> pixnet.models.PixNet.build(config).genes
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
    embedding_dim: int = 0
    output_stride: int = 1
    dihedral_average: bool = False
    n_models: int = 1
    pixel_skip: int = 0
    map_units: str = "normalized"
    method: str = "pixnet"
    training: dict = field(default_factory=dict)
    reliability: dict = field(default_factory=dict)
    map_units_choice: dict = field(default_factory=dict)


class PixNet(TrainedModel):
    """A PixNet model: predicts a dense, non-negative expression map from an H&E image.

    The map has one channel per gene at :attr:`microns_per_pixel`. Summing it over a shape's pixels gives the
    shape's expression *before* the target transform (Eq. 9); :attr:`normalization` maps that sum to the
    target units the model was trained on (e.g. ``log1p`` of area-scaled counts per 10k).

    Create one with :func:`pixnet.tl.train` or :meth:`load`.

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example (a small model trained on 8 µm bins):

    >>> import pixnet
    >>> model  # doctest: +ELLIPSIS
    PixNet(... genes, 1 µm/px, encoder resnet18 (random), decoder width 16, 1 epochs trained)
    >>> path = model.save("pixnet_model")
    >>> loaded = pixnet.models.PixNet.load(path)
    >>> loaded.predict(sdata, shapes="bins_16um", key_added="loaded", progress=False)
    >>> sdata["loaded_synthetic_square_016um"].n_obs
    13

    """

    method = "pixnet"
    params_class = PixNetParams
    config_class = PixNetConfig
    config_defaults: ClassVar[dict] = {"decoder_norm": "batch"}  # files saved before the channel norm used batch norm
    fit = staticmethod(fit)

    def __init__(self, network: PixNetNetwork, config: PixNetConfig, history: list[dict] | None = None) -> None:
        self.network = network
        self.config = config
        self.history = list(history or [])

    @classmethod
    def build(cls, config: PixNetConfig, encoder_weights: str | None = None) -> PixNet:
        """A new model for ``config``; the encoder is randomly initialised unless ``encoder_weights`` is given."""
        encoder, encoder_config = cls._create_encoder(config, encoder_weights)
        network = PixNetNetwork(
            encoder,
            encoder_config,
            len(config.genes) + (config.map_units == "counts"),
            config.decoder_width,
            config.decoder_norm,
            config.patch_size,
            config.embedding_dim,
            config.output_stride,
            config.n_models,
            config.pixel_skip,
        )
        return cls(network, config)

    @classmethod
    def _resolve_params(cls, params: PixNetParams, preset: TrainingPreset, plan: TrainingPlan) -> PixNetParams:
        resolved = params.resolved(preset)
        if resolved.n_models > 1 and not plan.freeze_encoder:
            if params.n_models is not None:
                raise ValueError(
                    f"n_models={params.n_models} trains several decoders on one shared encoder; it needs "
                    "freeze_encoder=True."
                )
            resolved = replace(resolved, n_models=1)  # the preset's ensemble shares its frozen encoder
        normalized_only = resolved.loss == "poisson" or resolved.image2gene_weight
        if normalized_only and resolved.map_units == "auto" and params.map_units is None:
            resolved = replace(resolved, map_units="normalized")  # the preset's choice between units has one left
        if normalized_only and resolved.map_units != "normalized":
            raise ValueError(
                f"map_units={resolved.map_units!r} trains (or may train) the composition of the map's sums, with "
                "loss='mse'; loss='poisson' and image2gene_weight= need map_units='normalized'."
            )
        if resolved.image2gene_weight and resolved.output_stride != 1:
            raise ValueError(
                f"image2gene_weight= embeds each shape's full-resolution decoder features; it needs output_stride=1 "
                f"(the {preset.name!r} preset has {resolved.output_stride})."
            )
        return resolved

    @classmethod
    def _decide_on_held_out(
        cls, params: PixNetParams, train_held_out: Callable[[dict], HeldOutFit]
    ) -> tuple[PixNetParams, dict]:
        """``map_units="auto"``: the units whose single model did better on held-out tissue.

        Neither map wins everywhere (docs: Evaluation): the counts map, whose depth lives in its total, made the
        olfactory bulb's genes more specific; the normalised map was far better on breast cancer. A single model of
        each is trained without one training section (or the right-most quarter of a single one), and the units
        whose held-out mean partial PCC given depth is higher are chosen (a tie: the paper's normalised map). The
        chosen model's held-out measurements are kept as the model's ``reliability`` (what
        ``pixnet.tl.train(reliability=True)`` would train a further model for).
        """
        if params.map_units != "auto":
            return params, {}
        try:
            fits = {units: train_held_out({"map_units": units}) for units in MAP_UNITS}
        except ValueError as error:  # e.g. the shapes left after holding out a quarter do not fit a patch
            warnings.warn(
                f"map_units='auto' could not train on part of the data and measure the rest ({error}); the map "
                "holds normalised values. Pass map_units='normalized' or 'counts' to choose yourself.",
                UserWarning,
                stacklevel=4,
            )
            return replace(params, map_units="normalized"), {}
        chosen = max(MAP_UNITS, key=lambda units: fits[units].mean("partial_pcc"))  # max keeps the first of a tie
        record = {
            "chosen": chosen,
            "split": fits[chosen].split,
            **{
                units: {metric: fits[units].mean(metric) for metric in ("partial_pcc", "pcc")}
                | {"seconds": fits[units].seconds}
                for units in MAP_UNITS
            },
        }
        logger.info(
            "map_units='auto' chose %r on %s: held-out mean partial PCC %s",
            chosen,
            fits[chosen].split,
            ", ".join(f"{units} {record[units]['partial_pcc']:.3f}" for units in MAP_UNITS),
        )
        return replace(params, map_units=chosen), {
            "map_units_choice": record,
            "reliability": reliability_record(fits[chosen]),
        }

    @classmethod
    def _config(cls, params: PixNetParams, shared: dict) -> PixNetConfig:
        return PixNetConfig(
            **shared,
            decoder_width=int(params.decoder_width),
            embedding_dim=params.embedding_dim if params.image2gene_weight else 0,
            output_stride=int(params.output_stride),
            dihedral_average=params.dihedral_average,
            n_models=int(params.n_models),
            pixel_skip=int(params.pixel_skip) if params.output_stride == 1 else 0,
            map_units=params.map_units,
        )

    # ------------------------------------------------------------------------------------------ description
    def __repr__(self) -> str:
        enc = self.config.encoder
        return (
            f"PixNet({len(self.genes)} genes, {self.microns_per_pixel:g} µm/px, encoder {enc['name']} "
            f"({enc['weights']}), decoder width {self.config.decoder_width}"
            + (f" x {self.config.n_models} models" if self.config.n_models > 1 else "")
            + f", {self.epochs_trained} epochs trained)"
        )

    @property
    def channels(self) -> list[str]:
        """The dense map's channels: the genes, then ``"other_genes"`` for a counts map."""
        return self.genes + ([Keys.OTHER_COUNTS] if self.config.map_units == "counts" else [])

    @property
    def map_detail_um(self) -> float:
        """The decoder stops at ``output_stride``: one independent value every ``output_stride`` pixels."""
        return self.microns_per_pixel * self.config.output_stride

    # ------------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def predict_tiles(
        self, images: torch.Tensor | np.ndarray, offset=None, extent=None, members: bool = False
    ) -> torch.Tensor:
        """Dense maps of RGB tiles.

        The decoder's attention sees, around each pixel, a window of one training patch, so a tile of any size
        gives every pixel the context a training patch gave it. With ``config.dihedral_average``, the maps of
        the tile's eight rotations and flips are averaged.

        Parameters
        ----------
        images
            ``(B, 3, H, W)`` uint8, or float in [0, 1], at :attr:`microns_per_pixel`.
        offset, extent
            Where the tiles lie in the whole map: unused, PixNet's map depends on the image only (kept for the
            interface shared with :meth:`pixnet.models.Image2Gene.predict_tiles`).
        members
            Each ensemble member's map instead of their mean: ``(B, n_models, n_genes, H, W)``.

        Returns
        -------
        ``(B, n_genes, H, W)`` float32 density on the model's device.

        """
        x = torch.as_tensor(images)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        self.network.eval()
        device = self.device
        x = x.to(device)
        chosen = range(self.network.n_members) if members else [None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            maps = [self._predict_member(x, member) for member in chosen]
        return torch.stack(maps, dim=1) if members else maps[0]

    def _predict_member(self, x: torch.Tensor, member: int | None) -> torch.Tensor:
        if not self.config.dihedral_average:
            return self.network(x, member=member).float()
        total = None
        for k in range(4):
            for flip in (False, True):
                turned = torch.rot90(x, k, dims=(-2, -1))
                density = self.network(turned.flip(-1) if flip else turned, member=member).float()
                density = torch.rot90(density.flip(-1) if flip else density, -k, dims=(-2, -1))
                total = density if total is None else total + density
        return total / 8


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """Load a saved :class:`PixNet` or :class:`~pixnet.models.Image2Gene`, whichever ``path`` holds.

    Examples
    --------
    With ``model`` as after predict's example:

    >>> import pixnet
    >>> path = model.save("my_model")
    >>> type(pixnet.models.load_model(path)).__name__
    'PixNet'

    """
    from .image2gene import Image2Gene

    method = read_record(path, [WEIGHTS])["config"].get("method", "pixnet")
    return (Image2Gene if method == "image2gene" else PixNet).load(path, device)
