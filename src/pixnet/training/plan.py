"""The training plan: how a model is optimised, whatever the method (``plan=`` of :func:`pixnet.tl.train`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..utils.options import Options, check_positive

__all__ = ["TrainingPlan"]


@dataclass(frozen=True)
class TrainingPlan(Options):
    """Optimisation, validation and early stopping; ``None`` fields take the preset's (or the method's) value.

    Attributes
    ----------
    epochs
        Passes over the training patches (PixNet) or spots (Image2Gene).
    batch_size
        Patches per step (PixNet) or spots per step (Image2Gene, default 64: its loss compares every pair).
    steps_per_epoch
        PixNet: optimiser steps per epoch, drawing ``steps_per_epoch * batch_size`` of the epoch's patches (every
        patch as often as the others: a small section is passed over several times, a large one sampled), so
        that the number of steps, which decides how far the map learns, does not depend on the tissue's area.
        ``None``: one pass over the patches; but when neither this nor ``epochs`` is chosen and the preset's
        epochs would make fewer than 100 optimiser steps in all (a small section's few patches), each epoch
        passes over them again until they do: fewer left the predictions nearly constant.
    learning_rate, weight_decay
        Adam (the paper: 5e-4 and 1e-4).
    lr_schedule
        ``"constant"``, or ``"cosine"`` decay towards 0 over the epochs.
    average_epochs
        Keep the mean of the weights after each of the last ``average_epochs`` epochs instead of the best epoch's.
    freeze_encoder
        Train the decoder only (with pretrained weights; its pyramids are then computed once and reused).
    augment
        Random flips, rot90 and mild colour jitter.
    validation
        ``None`` (train on every spot for ``epochs``), ``"region"`` (hold out the right-most
        ``validation_fraction`` of each section for early stopping) or ``"section"`` (hold out
        ``validation_sections``). On the real-section benchmark a held-out region cost more than early stopping
        gained (HER2ST C2 0.247 vs 0.277 PCC@M, C4 0.214 vs 0.311; docs: Evaluation).
    validation_fraction
        Share of each section's extent held out with ``validation="region"``.
    validation_sections
        Section names held out with ``validation="section"``.
    patience
        Early stopping: epochs without a better validation loss.

    Examples
    --------
    >>> from pixnet.training.plan import TrainingPlan
    >>> TrainingPlan(epochs=3).merged({"learning_rate": 1e-3}).learning_rate
    0.001
    >>> TrainingPlan(validation="half")
    Traceback (most recent call last):
    ...
    ValueError: validation must be one of ('region', 'section'), got 'half'.

    """

    epochs: int | None = None
    batch_size: int | None = None
    steps_per_epoch: int | None = None
    learning_rate: float | None = None
    weight_decay: float | None = None
    lr_schedule: Literal["constant", "cosine"] | None = None
    average_epochs: int | None = None
    freeze_encoder: bool | None = None
    augment: bool = True
    validation: Literal["region", "section"] | None = None
    validation_fraction: float = 0.2
    validation_sections: tuple[str, ...] | None = None
    patience: int = 5

    def _check(self) -> None:
        check_positive(self, "batch_size", "steps_per_epoch", "learning_rate", "patience")
        check_positive(self, "epochs", "weight_decay", "average_epochs", allow_zero=True)  # 0 epochs: untrained
        if not 0 < self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}.")
        if self.validation == "section" and not self.validation_sections:
            raise ValueError("validation='section' needs validation_sections= (names of training sections).")
        if isinstance(self.validation_sections, str):
            object.__setattr__(self, "validation_sections", (self.validation_sections,))
        elif self.validation_sections is not None:
            object.__setattr__(self, "validation_sections", tuple(self.validation_sections))
