"""``pixnet.tl.train``: fit PixNet on one or more SpatialData sections."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from spatialdata import SpatialData

from ..data.inputs import resolve_inputs
from ..data.patches import build_section, split_by_region, split_by_section
from ..models.image2gene import WEIGHTINGS, Image2Gene, Image2GeneConfig
from ..models.pixnet import PixNet, PixNetConfig
from ..models.registry import remember
from ..nn import ENCODERS, EncoderConfig
from ..pp import Normalization, check_counts, select_genes
from ..training.image2gene import fit_image2gene
from ..training.loop import TrainingConfig, fit
from ..training.presets import TrainingPreset, resolve_preset
from ..utils.settings import settings

logger = logging.getLogger(__name__)

__all__ = ["METHODS", "train"]

METHODS = ("pixnet", "image2gene")


def _per_section(value, n: int, what: str) -> list:
    """One value per section.

    For ``shapes`` a flat list of names means "these shape sets in every section"; per-section shapes are a
    list of lists (or names, or None).
    """
    per_section = isinstance(value, list | tuple) and (
        what != "shapes" or any(isinstance(v, list | tuple) or v is None for v in value)
    )
    if not per_section:
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{what}= has {len(value)} entries for {n} sections; give one per section or one for all.")
    return list(value)


def resolve_sections(
    sdata: SpatialData | Sequence[SpatialData],
    image,
    shapes,
    table,
    microns_per_pixel: float,
    resolve_kwargs: dict | None,
) -> tuple[list[SpatialData], list]:
    """The training objects and their resolved, measured inputs (bad input fails here, before any image is read)."""
    objects = [sdata] if isinstance(sdata, SpatialData) else list(sdata)
    if not objects:
        raise ValueError("Training needs at least one SpatialData object.")
    n = len(objects)
    per_section = zip(
        objects,
        _per_section(image, n, "image"),
        _per_section(shapes, n, "shapes"),
        _per_section(table, n, "table"),
        strict=True,
    )
    resolved = [
        resolve_inputs(
            o, i, s, t, require_table=True, target_microns_per_pixel=microns_per_pixel, **(resolve_kwargs or {})
        )
        for o, i, s, t in per_section
    ]
    for r in resolved:
        for shape_set in r.shapes.values():
            check_counts(shape_set.table, shape_set.table_name)
    return objects, resolved


def train(
    sdata: SpatialData | Sequence[SpatialData],
    *,
    image: str | list[str | None] | None = None,
    shapes: str | list | None = None,
    table: str | list[str | None] | None = None,
    section_names: list[str] | None = None,
    method: str = "pixnet",
    genes: list[str] | None = None,
    n_top_genes: int = 250,
    normalization: str | Normalization = "total_log",
    preset: str | TrainingPreset = "auto",
    microns_per_pixel: float | None = None,
    patch_size: int | None = None,
    encoder: str | None = None,
    encoder_weights: str | Path | None = None,
    decoder_width: int | None = None,
    output_stride: int | None = None,
    freeze_encoder: bool | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate: float | None = None,
    weight_decay: float | None = None,
    n_models: int | None = None,
    pcc_weight: float | None = None,
    image2gene_weight: float = 0.0,
    embedding_dim: int = 128,
    coordinates: bool = True,
    k: int = 25,
    weighting: str = "distance",
    map_stride: int | None = None,
    validation: str | None = None,
    validation_fraction: float = 0.2,
    validation_sections: list[str] | None = None,
    patience: int = 5,
    augment: bool = True,
    seed: int = 0,
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    resolve_kwargs: dict | None = None,
) -> PixNet | Image2Gene:
    """Train PixNet (or Image2Gene) on measured spots or bins.

    Image patches containing measured shapes are sampled at the working resolution; every shape lying wholly
    inside a patch is supervised through the sum of the dense map over its pixels (Eq. 9), for circles,
    squares and polygons of mixed sizes in one batch. Several shape sets of one object (e.g. Visium HD 8 and
    16 µm bins) train jointly, as do several sections.

    With ``method="image2gene"``, an encoder and a learnable embedding of spot positions are trained instead, so
    that the cosine self-similarity of the spots' embeddings matches the Pearson correlation of their
    expression profiles; the model then predicts by kNN among the training spots in that space (see
    :class:`~pixnet.models.Image2Gene`). Data, genes, normalisation, splits, seeds, progress, history and
    checkpoints are the same for both.

    Parameters
    ----------
    sdata
        One SpatialData object or a list (one per section; the same object may appear twice with different
        ``image``/``shapes`` to train on two images of one object).
    image, shapes, table
        Element names, as for :func:`pixnet.resolve_inputs`: one value for all sections, or a list with one per
        section. ``shapes`` may name several shape sets (e.g. ``["bins_8um", "bins_16um"]``).
    section_names
        Names of the sections (for validation and logs); default: the image element names.
    method
        ``"pixnet"`` (the dense map of Zhang, Yang & Pan) or ``"image2gene"`` (Fu, Quan & Bai).
    genes
        Genes to model; default: the ``n_top_genes`` with the highest mean over the training sections.
    n_top_genes
        See ``genes`` (the paper: 250).
    normalization
        Target normalisation, a :class:`~pixnet.pp.Normalization` or its method name (the paper: per-spot total,
        then log: ``"total_log"``).
    preset
        The recipe every setting below that is left at ``None`` comes from (see
        :data:`pixnet.training.presets.PRESETS`): ``"cpu"`` (frozen ImageNet EfficientNet-Lite0 at 4 µm/px with
        cached encoder pyramids, decoder to stride 4: minutes on a laptop), ``"paper"`` (the histology ResNet18
        fine-tuned at 1 µm/px, full-resolution decoder: for a GPU) or ``"auto"`` (``"paper"`` when ``device``
        is or finds a GPU, else ``"cpu"``), or a :class:`~pixnet.training.presets.TrainingPreset`.
    microns_per_pixel
        Working resolution; images are resampled from the best pyramid level.
    patch_size
        Patch side in working pixels (Image2Gene: the patch centred on each spot; for Visium spots at 4 µm/px,
        64 px = 256 µm).
    encoder, encoder_weights
        See :func:`pixnet.nn.create_encoder` (``encoder_weights="ciga"`` is the paper's histology encoder,
        ``"random"`` no pretrained weights).
    decoder_width
        Channels of the deepest decoder stage (the paper: 512).
    output_stride
        1 (the paper): the decoder runs to full resolution; 2 or 4: it stops at that stride and the density is
        upsampled bilinearly (4-16x cheaper; the map keeps the working resolution).
    freeze_encoder
        Train the decoder only (fast on CPU; use with pretrained weights). The encoder's pyramids of every
        section are then computed once per rotation / flip and reused by every epoch.
    epochs, batch_size, learning_rate, weight_decay
        Adam optimisation (paper defaults: lr 5e-4, weight decay 1e-4). ``batch_size`` counts patches for
        PixNet and spots for Image2Gene (default 64: its loss compares every pair of a batch).
    n_models
        PixNet with a frozen encoder: train this many decoders one after another (each ``epochs`` long, from
        its own initialisation, patch order and augmentation) and predict the mean of their maps, a deep
        ensemble that shares one encoder and its cached pyramids.
    pcc_weight
        Lambda in MSE + lambda * (1 - PCC) (PixNet; the paper's 0.5, the ``"cpu"`` preset's 1.0).
    image2gene_weight
        PixNet only: add this weight times the Image2Gene loss, computed on an embedding of each supervised
        shape (its decoder features averaged over its pixels, then a linear projection), as an auxiliary term.
    embedding_dim
        Length of the Image2Gene embedding (also of PixNet's auxiliary one).
    coordinates, k, weighting, map_stride
        Image2Gene: embed the spot's position in its image too; kNN neighbours and weighting (``"uniform"`` or
        ``"distance"``); spacing of the dense map's embedding grid (default ``patch_size // 4``). ``k`` and
        ``weighting`` can be changed on the trained model's ``config``.
    validation
        ``None`` (the default: train on every spot for ``epochs``), ``"region"`` (hold out the
        right-most ``validation_fraction`` of each section for early stopping) or ``"section"`` (hold out
        ``validation_sections``). On the real-section benchmark a held-out region cost more than early stopping
        gained (HER2ST C2 0.247 vs 0.277 PCC@M, C4 0.214 vs 0.311; docs: Evaluation).
    validation_fraction
        Share of each section's extent held out with ``validation="region"``.
    validation_sections
        Section names held out with ``validation="section"``.
    patience
        Early stopping: epochs without a better validation loss.
    augment
        Random flips, rot90 and mild colour jitter.
    seed
        Controls initialisation, patch sampling and augmentation: the same seed gives the same model on the
        same machine.
    device
        ``"auto"`` (cuda, mps, cpu), or a torch device; mixed precision (bfloat16) is used on cuda.
    checkpoint_dir
        Write ``last/`` (model) and ``trainer_state.pt`` after every epoch.
    resume
        A ``checkpoint_dir`` to continue from.
    progress
        Show progress bars; ``None``: ``pixnet.settings.progress``.
    resolve_kwargs
        Extra arguments for :func:`pixnet.resolve_inputs` (e.g. ``microns_per_pixel``, ``coordinate_system``).

    Returns
    -------
    The trained :class:`~pixnet.models.PixNet` or :class:`~pixnet.models.Image2Gene`; it is also recorded as
    the model of each training object.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
    >>> model = pixnet.tl.train(sdata, epochs=1, n_top_genes=8, validation=None, progress=False)
    >>> model.config.n_models, model.microns_per_pixel, len(model.genes)  # the "cpu" preset: two decoders, 4 µm/px
    (2, 4.0, 8)

    """
    progress, device = settings.progress_for(progress), settings.device_for(device)
    normalization = normalization if isinstance(normalization, Normalization) else Normalization(normalization)
    recipe = resolve_preset(preset, device).updated(
        microns_per_pixel=microns_per_pixel,
        patch_size=patch_size,
        encoder=encoder,
        encoder_weights=None if encoder_weights is None else str(encoder_weights),
        decoder_width=decoder_width,
        output_stride=output_stride,
        freeze_encoder=freeze_encoder,
        epochs=epochs,
        batch_size=batch_size if method == "pixnet" else None,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        n_models=n_models if method == "pixnet" else None,
        pcc_weight=pcc_weight,
    )
    microns_per_pixel, patch_size, encoder = recipe.microns_per_pixel, recipe.patch_size, recipe.encoder
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r}; choose one of {METHODS}.")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"Unknown kNN weighting {weighting!r}; choose one of {WEIGHTINGS}.")
    if image2gene_weight and method != "pixnet":
        raise ValueError("image2gene_weight= adds the Image2Gene loss to PixNet's; it needs method='pixnet'.")
    if image2gene_weight and recipe.output_stride != 1:
        raise ValueError(
            f"image2gene_weight= embeds each shape's full-resolution decoder features; it needs output_stride=1 "
            f"(the {recipe.name!r} preset has {recipe.output_stride})."
        )
    if method == "pixnet" and recipe.n_models < 1:
        raise ValueError(f"n_models must be at least 1, got {recipe.n_models}.")
    if method == "pixnet" and recipe.n_models > 1 and not recipe.freeze_encoder:
        if n_models is not None:
            raise ValueError(
                f"n_models={n_models} trains several decoders on one shared encoder; it needs freeze_encoder=True."
            )
        recipe = recipe.updated(n_models=1)  # the preset's ensemble shares its frozen encoder
    if n_models not in (None, 1) and method != "pixnet":
        raise ValueError("n_models= trains an ensemble of PixNet decoders; it needs method='pixnet'.")
    if validation not in ("region", "section", None):
        raise ValueError(f"validation must be 'region', 'section' or None, got {validation!r}.")
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}.")
    if patch_size < 32:
        raise ValueError(f"patch_size must be at least 32 pixels, got {patch_size}.")
    objects, resolved = resolve_sections(sdata, image, shapes, table, microns_per_pixel, resolve_kwargs)
    names = section_names or [r.image.name for r in resolved]
    if len(set(names)) != len(names):
        names = [f"{name}_{i}" for i, name in enumerate(names)]
    measured = [s.table for r in resolved for s in r.shapes.values()]
    gene_record = select_genes(measured, n_top=n_top_genes, genes=genes)

    sections = [
        build_section(
            r,
            name=name,
            genes=gene_record["genes"],
            normalization=normalization,
            microns_per_pixel=microns_per_pixel,
            margin_px=patch_size // 2,
        )
        for r, name in zip(resolved, names, strict=True)
    ]
    for section in sections:
        for s in section.shape_sets:
            extent = int(max((s.bbox[:, 1] - s.bbox[:, 0]).max(), (s.bbox[:, 3] - s.bbox[:, 2]).max()))
            if extent > patch_size:
                raise ValueError(
                    f"Shapes {s.name!r} of section {section.name!r} span up to {extent} px at {microns_per_pixel:g} "
                    f"µm/px, more than patch_size={patch_size}; use a larger patch_size or a coarser "
                    "microns_per_pixel."
                )
    if validation == "region":
        split_by_region(sections, validation_fraction)
    elif validation == "section":
        if not validation_sections:
            raise ValueError(f"validation='section' needs validation_sections= (some of {names}).")
        split_by_section(sections, list(validation_sections))
    else:
        split_by_section(sections, [])

    if encoder not in ENCODERS:
        raise ValueError(f"Unknown encoder {encoder!r}; choose one of {ENCODERS}.")
    shared = {
        "genes": gene_record["genes"],
        "gene_selection": {k: v for k, v in gene_record.items() if k != "genes"},
        "normalization": normalization.to_dict(),
        "microns_per_pixel": float(microns_per_pixel),
        "patch_size": int(patch_size),
        "encoder": EncoderConfig(encoder).to_dict(),
    }
    torch.manual_seed(seed)
    if method == "image2gene":
        stride = map_stride or max(patch_size // 4, 1)
        config = Image2GeneConfig(
            **shared, embedding_dim=embedding_dim, coordinates=coordinates, k=k, weighting=weighting, map_stride=stride
        )
        model = Image2Gene.build(config, recipe.encoder_weights)
        fit_model = fit_image2gene
    else:
        config = PixNetConfig(
            **shared,
            decoder_width=int(recipe.decoder_width),
            embedding_dim=embedding_dim if image2gene_weight else 0,
            output_stride=int(recipe.output_stride),
            dihedral_average=recipe.dihedral_average,
            n_models=int(recipe.n_models),
        )
        model = PixNet.build(config, recipe.encoder_weights)
        fit_model = fit
    training = TrainingConfig(
        epochs=recipe.epochs,
        batch_size=recipe.batch_size if method == "pixnet" else batch_size or 64,
        learning_rate=recipe.learning_rate,
        weight_decay=recipe.weight_decay,
        lr_schedule=recipe.lr_schedule,
        average_epochs=min(recipe.average_epochs, recipe.epochs),
        pcc_weight=recipe.pcc_weight,
        loss=recipe.loss,
        image2gene_weight=image2gene_weight,
        patience=patience,
        augment=augment,
        freeze_encoder=recipe.freeze_encoder,
        preset=recipe.name,
        seed=seed,
        device=device,
    )
    fit_model(model, sections, training, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)
    for o in objects:
        remember(o, model)
    return model
