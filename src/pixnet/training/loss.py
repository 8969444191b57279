"""The PixNet loss: a fit term (MSE on log targets, or a Poisson likelihood of the counts) + lambda * (1 - PCC).

The PCC is per gene across the spots of a batch.
"""

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


def without_depth(values: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """``values`` (rows: shapes) minus their least-squares fit on ``[1, depth]``, column by column."""
    d = (depth - depth.mean()).to(values.dtype)[:, None]
    centred = values - values.mean(dim=0, keepdim=True)
    return centred - d * (d * centred).sum(dim=0, keepdim=True) / d.square().sum().clamp_min(1e-12)


LOSSES = ("mse", "poisson")
"""Fit terms of :func:`pixnet_loss`: ``"mse"`` (the paper's) and ``"poisson"``."""


def poisson_deviance(
    pred: torch.Tensor, target: torch.Tensor, exposure: torch.Tensor, count_means: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean Poisson deviance of the spots' counts, each gene's divided by its mean count.

    ``pred`` and ``target`` are log targets (``log1p`` of the extensive values that the dense map sums to);
    ``exposure`` is each spot's counts per unit of value, so ``counts = expm1(target) * exposure`` and the
    predicted rate is ``expm1(pred) * exposure``: the map's sum over a spot is its rate in count space, where
    sums are additive. Dividing by the gene's mean count makes every gene weigh alike, as the PCC does;
    ``count_means`` (``(n_genes,)``, e.g. over all training spots) are steadier than the batch's, the default.
    """
    exposure = exposure.to(pred.dtype)[:, None]
    rate = torch.expm1(pred).clamp_min(1e-8) * exposure
    counts = torch.expm1(target).clamp_min(0) * exposure
    # xlogy(counts, counts / rate) in one call has a 0/0 gradient where counts are 0
    deviance = rate - counts + torch.xlogy(counts, counts) - counts * rate.log()
    means = counts.mean(dim=0) if count_means is None else count_means.to(counts)
    return (deviance / means.clamp_min(1e-3)).mean()


def pixnet_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    group: torch.Tensor,
    pcc_weight: float = 0.5,
    loss: str = "mse",
    exposure: torch.Tensor | None = None,
    count_means: torch.Tensor | None = None,
    depth: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Fit term + ``pcc_weight`` * (1 - mean PCC).

    The fit term is the MSE of the log targets (``loss="mse"``, the paper's) or the :func:`poisson_deviance`
    of the counts (``loss="poisson"``, needs ``exposure``; ``count_means`` as there). The PCC is computed
    within each group (shape set: one bin size of one element) holding at least two spots and averaged, so
    bins of different sizes are never correlated with each other. With ``depth`` (each shape's measured log
    depth), the PCC is the partial PCC given depth: prediction and target each lose their linear dependence on
    depth within the group first, so that the term rewards what each gene has of its own, not the one pattern
    of sequencing depth that nearly every gene's log-normalised values share on sparse spots.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
    mse = F.mse_loss(pred, target)
    fit = mse if loss == "mse" else poisson_deviance(pred, target, exposure, count_means)
    pccs = []
    for g in torch.unique(group):
        rows = group == g
        if int(rows.sum()) < 2:
            continue
        p, t = pred[rows], target[rows]
        if depth is not None:
            p, t = without_depth(p, depth[rows]), without_depth(t, depth[rows])
        pccs.append(pearson_per_gene(p, t).mean())
    pcc = torch.stack(pccs).mean() if pccs else torch.zeros((), device=pred.device)
    total = fit + pcc_weight * (1 - pcc)
    parts = {"loss": float(total.detach()), "mse": float(mse.detach()), "pcc": float(pcc.detach())}
    return total, parts


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
