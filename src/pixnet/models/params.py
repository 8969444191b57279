"""The options of each method (``method_params=`` of :func:`pixnet.tl.train`); ``None`` fields take the preset's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from ..nn import ENCODERS
from ..utils.options import Options, check_positive

__all__ = ["Image2GeneParams", "MethodParams", "PixNetParams"]


@dataclass(frozen=True)
class MethodParams(Options):
    """What both methods are built from.

    Attributes
    ----------
    microns_per_pixel
        Working resolution; images are resampled from the best pyramid level.
    patch_size
        Patch side in working pixels (Image2Gene: the patch centred on each spot; for Visium spots at 4 µm/px,
        64 px = 256 µm).
    encoder
        The encoder's name, one of :data:`pixnet.nn.ENCODERS` (see :func:`pixnet.nn.create_encoder`).
    encoder_weights
        ``"ciga"`` (the paper's histology ResNet18), ``"imagenet"``, ``"hf"`` (a foundation model from the
        Hugging Face cache), ``"random"`` (no pretrained weights) or a weights file.

    Examples
    --------
    >>> from pixnet.models import MethodParams, PixNetParams
    >>> issubclass(PixNetParams, MethodParams), PixNetParams().patch_size is None  # None: the preset's
    (True, True)

    """

    method: ClassVar[str]
    microns_per_pixel: float | None = None
    patch_size: int | None = None
    encoder: str | None = None
    encoder_weights: str | None = None

    def _check(self) -> None:
        check_positive(self, "microns_per_pixel")
        if self.patch_size is not None and self.patch_size < 32:
            raise ValueError(f"patch_size must be at least 32 pixels, got {self.patch_size}.")
        if self.encoder is not None and self.encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {self.encoder!r}; choose one of {ENCODERS}.")
        if self.encoder_weights is not None and not isinstance(self.encoder_weights, str):
            object.__setattr__(self, "encoder_weights", str(self.encoder_weights))  # a path


@dataclass(frozen=True)
class PixNetParams(MethodParams):
    """PixNet's architecture and loss (Zhang, Yang & Pan).

    Attributes
    ----------
    microns_per_pixel, patch_size, encoder, encoder_weights
        See :class:`MethodParams`.
    decoder_width
        Channels of the deepest decoder stage (the paper: 512).
    output_stride
        1 (the paper): the decoder runs to full resolution; 2 or 4: it stops at that stride and the density is
        upsampled bilinearly (4-16x cheaper; the map keeps the working resolution).
    n_models
        Decoders trained one after another on the frozen encoder (each from its own initialisation, patch order
        and augmentation); the map is the mean of theirs, a deep ensemble.
    dihedral_average
        Predict each tile in its eight rotations and flips and average the maps.
    pixel_skip
        With ``output_stride`` 1, channels of a skip feature computed from the input pixels for the
        full-resolution decoder stage (0: none, the paper); the encoder's finest level has stride 2.
    map_units
        What the map holds: ``"normalized"`` (the paper), ``"counts"`` or ``"auto"`` (whichever does better on
        tissue held out from training). ``"normalized"``: the map sums to each shape's normalised value.
        ``"counts"``: the map holds expected counts of each gene and of the genes it leaves out (an
        ``"other_genes"`` channel), and a shape's prediction is normalised from its sums as measured counts are
        (see :class:`~pixnet.models.PixNetConfig`). ``"auto"`` (the ``"cpu"`` preset's): a single model of each is
        trained without one training section (or the right-most quarter of a single one), and the units whose
        held-out mean partial PCC given depth is higher are chosen (a tie: ``"normalized"``); the chosen model's
        held-out results become the model's ``reliability`` (recorded in ``config.map_units_choice``; the cost
        and what it chose on real sections: docs, Evaluation).
    loss
        The fit term: ``"mse"`` on log targets (the paper's) or ``"poisson"`` deviance of the counts.
    pcc_weight
        Lambda in fit term + lambda * (1 - PCC) (the paper's 0.5, the ``"cpu"`` preset's 1.0).
    pcc_given_depth
        The PCC term correlates prediction and target after removing each one's linear dependence on the
        shape's measured log depth (the partial PCC that :func:`pixnet.tl.evaluate` reports), so that it rewards
        each gene's own pattern rather than sequencing depth.
    image2gene_weight
        Add this weight times the Image2Gene loss, on an embedding of each supervised shape (its decoder
        features averaged over its pixels, then a linear projection), as an auxiliary term.
    embedding_dim
        Length of that auxiliary embedding.

    Examples
    --------
    >>> from pixnet.models import PixNetParams
    >>> PixNetParams(decoder_width=64).merged({"n_models": 3}).n_models
    3

    """

    method: ClassVar[str] = "pixnet"
    decoder_width: int | None = None
    output_stride: Literal[1, 2, 4] | None = None
    n_models: int | None = None
    dihedral_average: bool | None = None
    pixel_skip: int | None = None
    map_units: Literal["normalized", "counts", "auto"] | None = None
    loss: Literal["mse", "poisson"] | None = None
    pcc_weight: float | None = None
    pcc_given_depth: bool | None = None
    image2gene_weight: float = 0.0
    embedding_dim: int = 128

    def _check(self) -> None:
        super()._check()
        check_positive(self, "decoder_width", "n_models", "embedding_dim")
        check_positive(self, "pcc_weight", "image2gene_weight", "pixel_skip", allow_zero=True)


@dataclass(frozen=True)
class Image2GeneParams(MethodParams):
    """Image2Gene's embedding and kNN inference (Fu, Quan & Bai).

    Attributes
    ----------
    microns_per_pixel, patch_size, encoder, encoder_weights
        See :class:`MethodParams`.
    embedding_dim
        Length of the embedding.
    coordinates
        Also embed the spot's position in its image.
    k, weighting
        kNN neighbours and their weights (``"uniform"`` or ``"distance"``); both can be changed on the trained
        model's ``config``.
    map_stride
        Spacing of the dense map's embedding grid, working pixels (default ``patch_size // 4``).

    Examples
    --------
    >>> from pixnet.models import Image2GeneParams
    >>> Image2GeneParams(k=10).weighting
    'distance'

    """

    method: ClassVar[str] = "image2gene"
    embedding_dim: int = 128
    coordinates: bool = True
    k: int = 25
    weighting: Literal["uniform", "distance"] = "distance"
    map_stride: int | None = None

    def _check(self) -> None:
        super()._check()
        check_positive(self, "embedding_dim", "k", "map_stride")
