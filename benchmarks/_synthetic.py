"""Shared helpers for benchmarks on the synthetic Visium HD sample."""

from __future__ import annotations

import warnings

import numpy as np
import spatialdata_io
import torch

import pixnet
from pixnet.data.patches import build_section, split_by_region
from pixnet.data.spans import span_sums
from pixnet.training.loss import pearson_per_gene


def read_hd(folder, bin_size=None, bins_as_squares=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return spatialdata_io.visium_hd(
            folder,
            dataset_id="synthetic",
            load_segmentations_only=False,
            bin_size=bin_size,
            bins_as_squares=bins_as_squares,
        )


def held_out_pcc(model, folder, sdata, shapes: str, fraction: float = 0.2) -> dict:
    """Mean per-gene PCC on the held-out region (the right-most ``fraction``), against truth and measurement."""
    section = build_section(
        pixnet.resolve_inputs(sdata, shapes=[shapes], target_microns_per_pixel=model.microns_per_pixel),
        name="eval",
        genes=model.genes,
        normalization=model.normalization,
        microns_per_pixel=model.microns_per_pixel,
        margin_px=0,
    )
    split_by_region([section], fraction)
    bins = section.shape_sets[0]
    density = model.predict_tiles(torch.from_numpy(section.image).permute(2, 0, 1)[None])
    index = [
        torch.from_numpy(a).to(density.device) for a in (bins.spans.row, bins.spans.x0, bins.spans.x1, bins.spans.shape)
    ]
    zeros = torch.zeros(len(bins.spans), dtype=torch.long, device=density.device)
    pred = model.normalization.transform(span_sums(density, zeros, *index, len(bins))).cpu().numpy()
    area = (np.sqrt(bins.area_px) * model.microns_per_pixel) ** 2
    truth = pixnet.pp.normalize(
        pixnet.datasets.synthetic_truth(folder, sdata, shapes), model.genes, model.normalization, area
    )
    held = bins.validation
    as_t = lambda a: torch.from_numpy(np.ascontiguousarray(a[held]))  # noqa: E731
    return {
        "n": int(held.sum()),
        "pcc_truth": float(pearson_per_gene(as_t(pred), as_t(truth)).mean()),
        "pcc_measured": float(pearson_per_gene(as_t(pred), as_t(bins.targets)).mean()),
        "pcc_truth_vs_measured": float(pearson_per_gene(as_t(truth), as_t(bins.targets)).mean()),
    }
