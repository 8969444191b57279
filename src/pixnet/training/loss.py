"""The PixNet loss: MSE + lambda * (1 - PCC), PCC per gene across the spots of a batch."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pearson_per_gene(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each column of ``pred`` with the same column of ``target`` -> ``(n_genes,)``.

    A gene constant in ``target`` or ``pred`` gets 0.
    """
    p = pred - pred.mean(dim=0, keepdim=True)
    t = target - target.mean(dim=0, keepdim=True)
    # clamp inside the sqrt: its derivative at 0 is infinite, which turned constant genes into NaN gradients
    return (p * t).sum(dim=0) / (p.square().sum(dim=0) * t.square().sum(dim=0)).clamp_min(eps).sqrt()


def pixnet_loss(
    pred: torch.Tensor, target: torch.Tensor, group: torch.Tensor, pcc_weight: float = 0.5
) -> tuple[torch.Tensor, dict[str, float]]:
    """MSE + ``pcc_weight`` * (1 - mean PCC).

    The PCC is computed within each group (shape set: one bin size of one element) holding at least two
    spots and averaged, so bins of different sizes are never correlated with each other.
    """
    mse = F.mse_loss(pred, target)
    pccs = [
        pearson_per_gene(pred[group == g], target[group == g]).mean()
        for g in torch.unique(group)
        if int((group == g).sum()) >= 2
    ]
    pcc = torch.stack(pccs).mean() if pccs else torch.zeros((), device=pred.device)
    loss = mse + pcc_weight * (1 - pcc)
    return loss, {"loss": float(loss.detach()), "mse": float(mse.detach()), "pcc": float(pcc.detach())}


def expression_correlation(target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation between the spots' (rows') expression profiles -> ``(n, n)``."""
    centred = target - target.mean(dim=1, keepdim=True)
    return F.normalize(centred, dim=1, eps=eps) @ F.normalize(centred, dim=1, eps=eps).T


def gene_moments(targets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene mean and standard deviation of the training targets, for :func:`image2gene_loss`."""
    targets = np.asarray(targets, dtype=np.float64)
    return torch.from_numpy(targets.mean(axis=0)).float(), torch.from_numpy(targets.std(axis=0) + 1e-6).float()


def image2gene_loss(
    embeddings: torch.Tensor, target: torch.Tensor, moments: tuple[torch.Tensor, torch.Tensor] | None = None
) -> torch.Tensor:
    """The Image2Gene loss: how far the embeddings' cosine self-similarity is from the spots' expression correlation.

    The mean squared difference over all pairs of the batch's spots: alignment within image space. With
    ``moments`` (:func:`gene_moments` of the training targets) each gene is standardised first, so that the
    correlation between two spots measures how they differ from the average spot in the same way; raw
    profiles share the genes' mean levels and correlate above 0.9 for almost every pair of spots.
    """
    target = target.float()
    if moments is not None:
        target = (target - moments[0].to(target.device)) / moments[1].to(target.device)
    unit = F.normalize(embeddings.float(), dim=1)
    return F.mse_loss(unit @ unit.T, expression_correlation(target))
