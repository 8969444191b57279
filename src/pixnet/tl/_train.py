"""``pixnet.tl.train``: fit PixNet (or Image2Gene) on one or more SpatialData sections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from spatialdata import SpatialData

from ..models.image2gene import Image2Gene
from ..models.params import MethodParams
from ..models.pixnet import PixNet
from ..pp import Normalization
from ..training.plan import TrainingPlan
from ..training.presets import TrainingPreset

__all__ = ["METHODS", "train"]

MODELS = {cls.method: cls for cls in (PixNet, Image2Gene)}
METHODS = tuple(MODELS)


def method_options(
    method: str | MethodParams,
    method_params: Mapping | None,
    plan: TrainingPlan | Mapping | None,
    options: Mapping,
) -> tuple[type[PixNet | Image2Gene], MethodParams, TrainingPlan]:
    """The model class, its params and the plan from ``train``'s arguments (each option named once)."""
    if isinstance(method, MethodParams):
        params = method
    elif method in MODELS:
        params = MODELS[method].params_class()
    else:
        raise ValueError(
            f"Unknown method {method!r}; choose one of {METHODS} (or pass a PixNetParams / Image2GeneParams)."
        )
    model_class = MODELS[params.method]
    method_names, plan_names = set(params.field_names()), set(TrainingPlan.field_names())
    unknown = sorted(set(options) - method_names - plan_names)
    for name in unknown:
        elsewhere = [m for m, cls in MODELS.items() if name in cls.params_class.field_names()]
        if elsewhere:
            raise TypeError(f"{name}= is an option of method {elsewhere[0]!r} only, not of {params.method!r}.")
    if unknown:
        raise TypeError(
            f"train() got unexpected option(s) {unknown} for method {params.method!r}; its options are "
            f"{sorted(method_names)} (method_params=) and {sorted(plan_names)} (plan=)."
        )
    twice = sorted(set(options) & (set(method_params or {}) | set(plan if isinstance(plan, Mapping) else {})))
    if twice:
        raise TypeError(f"Option(s) {twice} given both as keywords and in method_params= / plan=; give each once.")
    params = params.merged({**dict(method_params or {}), **{k: v for k, v in options.items() if k in method_names}})
    plan_options = {k: v for k, v in options.items() if k in plan_names}  # merged at once: checks see them together
    plan = (
        plan.merged(plan_options)
        if isinstance(plan, TrainingPlan)
        else TrainingPlan().merged({**(plan or {}), **plan_options})
    )
    return model_class, params, plan


def train(
    sdata: SpatialData | Sequence[SpatialData],
    *,
    image: str | list[str | None] | None = None,
    shapes: str | list | None = None,
    table: str | list[str | None] | None = None,
    section_names: list[str] | None = None,
    method: str | MethodParams = "pixnet",
    genes: list[str] | None = None,
    n_top_genes: int = 250,
    normalization: str | Normalization = "total_log",
    preset: str | TrainingPreset = "auto",
    epochs: int | None = None,
    method_params: Mapping | None = None,
    plan: TrainingPlan | Mapping | None = None,
    seed: int = 0,
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool | None = None,
    resolve_kwargs: dict | None = None,
    reliability: bool = False,
    **options,
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
        ``"pixnet"`` (the dense map of Zhang, Yang & Pan) or ``"image2gene"`` (Fu, Quan & Bai), or the method's
        options as a :class:`~pixnet.models.PixNetParams` or :class:`~pixnet.models.Image2GeneParams`.
    genes
        Genes to model; default: the ``n_top_genes`` with the highest mean over the training sections.
    n_top_genes
        See ``genes`` (the paper: 250).
    normalization
        Target normalisation, a :class:`~pixnet.pp.Normalization` or its method name (the paper: per-spot total,
        then log: ``"total_log"``).
    preset
        The recipe every option of ``method_params`` and ``plan`` that is left at ``None`` comes from (see
        :data:`pixnet.training.presets.PRESETS`): ``"cpu"`` (spots: frozen ImageNet EfficientNet-Lite0 at 4 µm/px
        with cached encoder pyramids, decoder to stride 4: minutes on a laptop), ``"cpu_fine"`` (Visium HD bins
        and cells: the same encoder, a full-resolution map at 1 µm/px that resolves 2 µm bins), ``"paper"`` (the
        histology ResNet18 fine-tuned at 1 µm/px, full-resolution decoder: for a GPU) or ``"auto"`` (``"paper"``
        when ``device`` is or finds a GPU; else ``"cpu_fine"`` when the finest training shapes are 20 µm or
        smaller, ``"cpu"`` otherwise), or a :class:`~pixnet.training.presets.TrainingPreset`.
    epochs
        Training epochs (a field of the plan, given here because it is the one most often changed).
    method_params
        Options of the method, merged into its :class:`~pixnet.models.PixNetParams` or
        :class:`~pixnet.models.Image2GeneParams` (architecture, resolution, encoder, loss; e.g.
        ``{"decoder_width": 64, "n_models": 3}``).
    plan
        The :class:`~pixnet.training.plan.TrainingPlan` or a mapping merged into one (optimiser, batch,
        augmentation, validation and early stopping; e.g. ``{"learning_rate": 1e-3, "validation": "region"}``).
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
    reliability
        Also estimate, on tissue the model did not see, how far each gene's predictions can be trusted: a
        further single model (same genes and settings) is trained without one section (chosen by ``seed``; with
        one section, without the right-most quarter of its shapes) and measured where it was held out. The
        model stores each gene's expected PCC and partial PCC given depth and the residual quantiles that
        ``pixnet.tl.predict(interval=...)`` turns into intervals (``model.config.reliability``). Costs about half
        of a two-member training more (one member, on less data). A model whose map units were chosen on held-out
        tissue (``map_units="auto"``, the ``"cpu"`` preset's) has it already, from the held-out model of the
        chosen units: no further model is trained.
    **options
        Any option of ``method_params`` or ``plan`` by name (``patch_size=64``, ``learning_rate=1e-3``): a
        shorthand for the mappings.

    Returns
    -------
    The trained :class:`~pixnet.models.PixNet` or :class:`~pixnet.models.Image2Gene`; it is also recorded as
    the model of each training object.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
    >>> model = pixnet.tl.train(sdata, epochs=1, n_top_genes=8, progress=False)
    >>> model.config.n_models, model.microns_per_pixel, len(model.genes)  # the "cpu" preset: two decoders, 4 µm/px
    (2, 4.0, 8)
    >>> model.config.map_units_choice["split"]  # its map units were chosen on tissue held out from training
    'the right-most 25% of the shapes'
    >>> model = pixnet.tl.train(sdata, method="image2gene", epochs=1, n_top_genes=8, method_params={"k": 5},
    ...                         plan={"batch_size": 32}, progress=False)
    >>> model.config.k, model.config.training["batch_size"]
    (5, 32)

    """
    model_class, params, plan = method_options(
        method, method_params, plan, {**options, **({} if epochs is None else {"epochs": epochs})}
    )
    model = model_class.train(
        sdata,
        image=image,
        shapes=shapes,
        table=table,
        section_names=section_names,
        params=params,
        plan=plan,
        preset=preset,
        genes=genes,
        n_top_genes=n_top_genes,
        normalization=normalization,
        seed=seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        progress=progress,
        resolve_kwargs=resolve_kwargs,
        reliability=reliability,
    )
    return model
