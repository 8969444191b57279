"""Training Image2Gene: spot patches -> embeddings whose self-similarity follows the expression correlation."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.patches import Section, spot_patches
from ..utils.device import resolve_device
from .augment import augment_images, draw_augmentations
from .distributed import Distributed
from .loop import (
    EpochTracker,
    Trainable,
    TrainingConfig,
    learning_rate_schedule,
    make_optimizer,
    place_network,
    run_epochs,
    training_mode,
)
from .loss import gene_moments, image2gene_loss, pearson_per_gene

logger = logging.getLogger(__name__)


@dataclass
class Spots:
    """Every measured shape of the training sections, one row each."""

    section: np.ndarray  # (n,) index into the sections
    centres: np.ndarray  # (n, 2) x, y in the section crop's pixels
    positions: np.ndarray  # (n, 2) x, y in [0, 1] of the whole image
    targets: np.ndarray  # (n, n_genes) in target units
    area_px: np.ndarray
    validation: np.ndarray

    @classmethod
    def collect(cls, sections: list[Section]) -> Spots:
        """All shapes of all shape sets, with their ``validation`` flags."""
        parts = [
            (np.full(len(s), i), s.centres, section.positions(s.centres), s.targets, s.area_px, s.validation)
            for i, section in enumerate(sections)
            for s in section.shape_sets
        ]
        return cls(*(np.concatenate(p) for p in zip(*parts, strict=True)))

    def images(self, sections: list[Section], rows: np.ndarray, patch_size: int) -> torch.Tensor:
        """``(len(rows), 3, P, P)`` float patches in [0, 1] centred on the shapes ``rows``."""
        out = np.empty((len(rows), patch_size, patch_size, 3), np.uint8)
        for i in np.unique(self.section[rows]):
            here = np.flatnonzero(self.section[rows] == i)
            out[here] = spot_patches(sections[i].image, self.centres[rows[here]], patch_size)
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255)


def _embed(model: Trainable, sections, spots: Spots, rows: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    out = []
    for i in range(0, len(rows), batch_size):
        chosen = rows[i : i + batch_size]
        out.append(
            model.embed(
                spots.images(sections, chosen, model.config.patch_size), torch.from_numpy(spots.positions[chosen])
            )
        )
    return torch.cat(out)


def _set_bank(model: Trainable, sections, spots: Spots, rows: np.ndarray) -> None:
    density = model.normalization.inverse_transform(torch.from_numpy(spots.targets[rows]).double())
    area = torch.from_numpy(spots.area_px[rows])
    model.set_bank(_embed(model, sections, spots, rows), (density / area[:, None]).float(), float(area.median()))


@torch.no_grad()
def evaluate(model: Trainable, sections, spots: Spots, train: np.ndarray, held_out: np.ndarray, moments) -> dict:
    """Similarity loss on the held-out spots, and the PCC of their kNN prediction from the training spots."""
    _set_bank(model, sections, spots, train)
    embeddings = _embed(model, sections, spots, held_out)
    target = torch.from_numpy(spots.targets[held_out])
    area = torch.from_numpy(spots.area_px[held_out]).float()[:, None]
    pred = model.normalization.transform((model.knn(embeddings.to(model.device)).cpu() * area).double()).float()
    sample = held_out[:4096] if len(held_out) > 4096 else held_out  # the loss is quadratic in spots
    loss = image2gene_loss(embeddings[: len(sample)], target[: len(sample)], moments)
    return {"val_loss": float(loss), "val_pcc": float(pearson_per_gene(pred, target).mean())}


def fit_image2gene(
    model: Trainable,
    sections: list[Section],
    config: TrainingConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
) -> Trainable:
    """Train ``model`` on the shapes of ``sections`` (``validation`` flags already set).

    Afterwards the model keeps every measured shape (training and validation) for its kNN inference.
    """
    if Distributed().world > 1:
        raise RuntimeError(
            "Image2Gene trains in one process (its loss compares every pair of a batch); run it without torchrun."
        )
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    spots = Spots.collect(sections)
    train, held_out = np.flatnonzero(~spots.validation), np.flatnonzero(spots.validation)
    if len(train) < 2:
        raise ValueError(f"Image2Gene needs at least 2 training spots, got {len(train)}.")
    moments = gene_moments(spots.targets[train])
    network = place_network(model, config, device)
    optimizer = make_optimizer([p for p in network.parameters() if p.requires_grad], config, device)
    tracker = EpochTracker(model, optimizer, config, checkpoint_dir, resume, progress, device)
    rng = tracker.rng
    schedule = learning_rate_schedule(config)

    def train_epoch(epoch: int) -> dict:
        started = time.perf_counter()
        training_mode(network, config)
        order = rng.permutation(train)
        batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        batches = [b for b in batches if len(b) >= 2]  # a similarity matrix needs two spots
        total = 0.0
        for step, chosen in enumerate(batches):
            for group in optimizer.param_groups:
                group["lr"] = schedule(epoch + step / len(batches))
            images = spots.images(sections, chosen, model.config.patch_size)
            if config.augment:
                images = augment_images(images, draw_augmentations(len(chosen), rng))
            positions = torch.from_numpy(spots.positions[chosen]).to(device)
            embeddings = network(images.to(device), positions)
            loss = image2gene_loss(embeddings, torch.from_numpy(spots.targets[chosen]).to(device), moments)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            total += value / len(batches)
        return {
            "epoch": epoch + 1,
            "train_loss": total,
            "train_shapes": len(train),
            "train_seconds": round(time.perf_counter() - started, 2),
        }

    run_epochs(
        tracker,
        tracker.start_epoch,
        train_epoch,
        functools.partial(evaluate, model, sections, spots, train, held_out, moments) if len(held_out) > 1 else None,
        before_checkpoint=lambda: _set_bank(model, sections, spots, train),
    )
    _set_bank(model, sections, spots, np.arange(len(spots.targets)))
    return model
