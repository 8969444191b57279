"""Named training recipes: the settings :func:`pixnet.tl.train` uses for every argument it is not given."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from ..utils.device import resolve_device

__all__ = ["FINE_SHAPES_UM", "PRESETS", "TrainingPreset", "resolve_preset"]

FINE_SHAPES_UM = 20.0
"""Training shapes this small or smaller (Visium HD bins of 2-16 µm, cells) get a map at 1 µm/px from ``"auto"``."""


@dataclass(frozen=True)
class TrainingPreset:
    """One training recipe of PixNet.

    Attributes
    ----------
    name
        ``"cpu"``, ``"cpu_fine"`` or ``"paper"`` (see :data:`PRESETS`).
    microns_per_pixel, patch_size
        Working resolution and training patch side (pixels).
    encoder, encoder_weights, freeze_encoder
        The encoder (see :func:`pixnet.nn.create_encoder`) and whether it is trained.
    decoder_width, output_stride
        Channels of the deepest decoder stage; the stride at which the decoder stops (the density is upsampled
        bilinearly from there).
    epochs, batch_size, learning_rate, weight_decay
        Adam optimisation; ``batch_size`` counts patches.
    steps_per_epoch
        Optimiser steps per epoch, whatever the tissue's area (``None``: one pass over the patches).
    pcc_weight
        Lambda in fit term + lambda * (1 - PCC).
    pcc_given_depth
        The PCC term is the partial PCC given each shape's measured log depth (see
        :func:`pixnet.training.loss.pixnet_loss`), so it does not reward one depth-like map for every gene.
    loss
        The fit term beside the PCC term: ``"mse"`` on log targets (the paper's) or ``"poisson"``, the deviance
        of the counts with each spot's total as exposure (see :func:`pixnet.training.loss.pixnet_loss`).
    lr_schedule
        ``"constant"`` or ``"cosine"`` (decay from ``learning_rate`` towards 0 over the epochs).
    average_epochs
        Keep the mean of the weights after each of the last ``average_epochs`` epochs (stochastic weight
        averaging) instead of the best epoch's; 0: the best epoch's (by validation loss, else training loss).
    n_models
        Decoders trained one after another on the frozen encoder (each for ``epochs``), whose maps are averaged
        (see :class:`~pixnet.models.PixNetConfig`).
    dihedral_average
        The trained model predicts each tile in its eight rotations and flips and averages the maps (see
        :class:`~pixnet.models.PixNetConfig`).
    pixel_skip
        Channels of the full-resolution decoder stage's skip feature from the input pixels (0: none).
    map_units
        ``"normalized"``, ``"counts"`` (see :class:`~pixnet.models.PixNetConfig`) or ``"auto"``: the one whose
        single model does better on held-out training tissue (see :class:`~pixnet.models.PixNetParams`).

    Examples
    --------
    >>> from pixnet.training.presets import PRESETS
    >>> PRESETS["cpu"].encoder, PRESETS["paper"].microns_per_pixel
    ('efficientnet_lite0', 1.0)

    """

    name: str
    microns_per_pixel: float
    patch_size: int
    encoder: str
    encoder_weights: str
    freeze_encoder: bool
    decoder_width: int
    output_stride: int
    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 1e-4
    pcc_weight: float = 0.5
    pcc_given_depth: bool = False
    loss: str = "mse"
    lr_schedule: str = "constant"
    average_epochs: int = 0
    n_models: int = 1
    dihedral_average: bool = False
    pixel_skip: int = 0
    map_units: str = "normalized"
    steps_per_epoch: int | None = None

    def to_dict(self) -> dict:
        """The settings as a dict."""
        return asdict(self)

    def updated(self, **settings) -> TrainingPreset:
        """A copy with the settings that are not ``None`` replaced."""
        return replace(self, **{k: v for k, v in settings.items() if v is not None})


PRESETS = {
    # Chosen in benchmarks/real_sections.py (leave-one-section-out on HER2ST and MOB; docs/evaluation.md): a
    # frozen ImageNet encoder whose pyramids are computed once per section and rotation, an ensemble of two
    # decoders that stop at stride 4; a HER2ST-sized job (4 sections, ~730 spots) trains in minutes on 2 CPU cores.
    "cpu": TrainingPreset(
        name="cpu",
        microns_per_pixel=4.0,
        patch_size=64,
        encoder="efficientnet_lite0",
        encoder_weights="imagenet",
        freeze_encoder=True,
        decoder_width=128,
        output_stride=4,
        epochs=12,
        batch_size=16,
        learning_rate=1e-3,
        pcc_weight=1.0,
        n_models=2,
        # neither map wins on every tissue (docs/evaluation.md): counts on the olfactory bulb, normalised on breast
        map_units="auto",
    ),
    # Visium HD bins and cells (benchmarks/visium_hd_recipe.py; docs/training.md): the map must resolve 2 µm, so
    # 1 µm/px to full resolution, with the pixels themselves as the last stage's skip feature (the encoder's
    # finest level has stride 2). Small patches make many cheap optimiser steps: the steps, not the pixels seen,
    # decide whether the 2 µm predictions get their spread.
    "cpu_fine": TrainingPreset(
        name="cpu_fine",
        microns_per_pixel=1.0,
        patch_size=64,
        encoder="efficientnet_lite0",
        encoder_weights="imagenet",
        freeze_encoder=True,
        decoder_width=64,
        output_stride=1,
        pixel_skip=16,
        map_units="counts",
        epochs=8,
        steps_per_epoch=50,
        batch_size=1,
        learning_rate=6e-3,
        lr_schedule="cosine",
        pcc_weight=2.0,
    ),
    # Zhang, Yang & Pan: the histology ResNet18 fine-tuned at 1 µm/px, full-resolution decoder of width 512,
    # Adam lr 5e-4 / weight decay 1e-4. Hours per section on a CPU; meant for a GPU.
    "paper": TrainingPreset(
        name="paper",
        microns_per_pixel=1.0,
        patch_size=256,
        encoder="resnet18",
        encoder_weights="ciga",
        freeze_encoder=False,
        decoder_width=512,
        output_stride=1,
        epochs=20,
        batch_size=8,
        learning_rate=5e-4,
    ),
}
"""The recipes by name: ``"cpu"`` (spots, without a GPU), ``"cpu_fine"`` (Visium HD bins and cells, without a GPU)
and ``"paper"`` (with a GPU)."""


def resolve_preset(
    preset: str | TrainingPreset, device: str | torch.device = "auto", finest_shape_um: float | None = None
) -> TrainingPreset:
    """The preset named ``preset`` (a :class:`TrainingPreset` is returned as it is).

    ``"auto"`` is ``"paper"`` when ``device`` is (or, for ``"auto"``, finds) a GPU; without one, ``"cpu_fine"``
    when the finest training shapes (``finest_shape_um``, their median side or diameter) are at most
    :data:`FINE_SHAPES_UM`, else ``"cpu"``.

    Examples
    --------
    >>> from pixnet.training.presets import resolve_preset
    >>> resolve_preset("auto", device="cpu").name, resolve_preset("auto", device="cpu", finest_shape_um=8).name
    ('cpu', 'cpu_fine')
    >>> resolve_preset("cpu").updated(epochs=5).epochs
    5

    """
    if isinstance(preset, TrainingPreset):
        return preset
    if preset == "auto":
        if resolve_device(device).type in ("cuda", "mps"):
            return PRESETS["paper"]
        fine = finest_shape_um is not None and finest_shape_um <= FINE_SHAPES_UM
        return PRESETS["cpu_fine" if fine else "cpu"]
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose 'auto' or one of {sorted(PRESETS)}.")
    return PRESETS[preset]
