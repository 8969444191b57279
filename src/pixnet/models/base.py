"""What every trained pixnet model (PixNet, Image2Gene) shares: training, prediction, its outputs, save and load."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from spatialdata import SpatialData

from ..data.images import MAX_UPSAMPLING
from ..data.shape_size import finest_shapes_um
from ..data.training_sections import check_patch_fits, name_sections, resolve_sections, training_sections
from ..dense.predict import predict
from ..dense.resolution import check_map_resolves
from ..nn import EncoderConfig, create_encoder
from ..pp import Normalization, select_genes
from ..training.loop import MIN_STEPS, TrainingConfig, warn_if_undertrained
from ..training.plan import TrainingPlan
from ..training.presets import PRESETS, TrainingPreset, resolve_preset
from ..utils.model_files import CONFIG, WEIGHTS, check_shapes, load_tensors, meta_state_shapes, read_record, save_folder
from ..utils.registry import remember
from ..utils.settings import settings
from .held_out import HeldOutFit, held_out_fit, reliability_record
from .params import MethodParams

logger = logging.getLogger(__name__)


class TrainedModel:
    """What PixNet and Image2Gene share: training, prediction, properties, ``save`` and ``load``.

    A subclass names its ``method`` (recorded in ``config.json``), its ``params_class`` (the options
    :meth:`train` takes) and ``config_class`` (what a trained model records), and supplies what differs: its
    config from resolved options (:meth:`_config`), its training function (``fit``), its dense maps
    (``predict_tiles``) and the further tensor files it saves beside the network's weights (:meth:`_tensors`,
    :meth:`_check_files`, :meth:`_read_files`).
    """

    network: torch.nn.Module
    history: list[dict]
    method: ClassVar[str]
    params_class: ClassVar[type[MethodParams]]
    config_class: ClassVar[type]
    config_defaults: ClassVar[dict] = {}  # fields that older model files lack, with the value they meant
    plan_defaults: ClassVar[dict] = {}  # the method's own defaults of the training plan, before the preset's
    extra_files: ClassVar[tuple[str, ...]] = ()
    fit: ClassVar[Callable]

    # ------------------------------------------------------------------------------------------ training
    @classmethod
    def train(
        cls,
        sdata: SpatialData | Sequence[SpatialData],
        *,
        image=None,
        shapes=None,
        table=None,
        section_names: list[str] | None = None,
        params: MethodParams | None = None,
        plan: TrainingPlan | None = None,
        preset: str | TrainingPreset = "auto",
        genes: list[str] | None = None,
        n_top_genes: int = 250,
        normalization: str | Normalization = "total_log",
        seed: int = 0,
        device: str | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: str | Path | None = None,
        progress: bool | None = None,
        resolve_kwargs: dict | None = None,
        reliability: bool = False,
    ):
        """Train a model of this class; :func:`pixnet.tl.train` (``method=``) describes every argument.

        ``params`` (this class's ``params_class``) and ``plan`` are completed from ``preset``: options left at
        ``None`` take the method's defaults, then the preset's.

        Examples
        --------
        >>> import pixnet
        >>> from pixnet.models import Image2Gene, Image2GeneParams
        >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
        >>> model = Image2Gene.train(sdata, params=Image2GeneParams(k=5), n_top_genes=4, progress=False)
        >>> model.config.k, model.config.training["batch_size"]  # the plan's batch: Image2Gene's default
        (5, 64)

        """
        progress, device = settings.progress_for(progress), settings.device_for(device)
        if checkpoint_dir is not None and Path(checkpoint_dir).exists() and not Path(checkpoint_dir).is_dir():
            raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file; checkpoints need a folder.")
        normalization = normalization if isinstance(normalization, Normalization) else Normalization(normalization)
        given, chosen = params or cls.params_class(), plan or TrainingPlan()
        recipe, plan, params, objects, resolved = cls.resolve_options(
            sdata, image, shapes, table, given, chosen, preset, device, resolve_kwargs
        )
        check_patch_fits(resolved, params.patch_size, params.microns_per_pixel)
        names = name_sections(resolved, section_names)
        gene_record = select_genes(
            [s.table for r in resolved for s in r.shapes.values()], n_top=n_top_genes, genes=genes
        )
        sections = training_sections(
            resolved,
            names,
            gene_record["genes"],
            normalization,
            params.microns_per_pixel,
            params.patch_size,
            plan.validation,
            plan.validation_fraction,
            plan.validation_sections or (),
        )
        shared = {
            "genes": gene_record["genes"],
            "gene_selection": {k: v for k, v in gene_record.items() if k != "genes"},
            "normalization": normalization.to_dict(),
            "microns_per_pixel": float(params.microns_per_pixel),
            "patch_size": int(params.patch_size),
            "encoder": EncoderConfig(params.encoder).to_dict(),
        }

        def train_held_out(options: dict) -> HeldOutFit:
            """A single model with ``options`` on top, trained without part of the data and measured there."""
            single = {"n_models": 1} if "n_models" in params.field_names() else {}
            variant = dataclasses.replace(params, **options, **single)
            further = {"params": variant, "plan": chosen, "preset": recipe, "genes": gene_record["genes"]}
            common = {"normalization": normalization, "seed": seed, "device": device, "progress": progress}

            def train_further(subset, **elements):
                return cls.train(subset, **elements, **further, **common, resolve_kwargs=resolve_kwargs)

            return held_out_fit(train_further, objects, resolved, names, seed, resolve_kwargs)

        params, decided = cls._decide_on_held_out(params, train_held_out)
        if reliability and "reliability" not in decided:  # a choice made on held-out tissue measured it already
            decided["reliability"] = reliability_record(train_held_out({}))
        torch.manual_seed(seed)
        model = cls.build(cls._config(params, shared), params.encoder_weights)
        for field_name, value in decided.items():
            setattr(model.config, field_name, value)
        for r in resolved:  # a map coarser than the training shapes cannot fit them
            check_map_resolves(r.shapes, r.image.microns_per_pixel, model.microns_per_pixel, model.map_detail_um, 3)
        options = {**plan.to_dict(), **params.to_dict(), "preset": recipe.name, "seed": seed, "device": device}
        if chosen.epochs is None and chosen.steps_per_epoch is None:
            # a preset's epochs over a small section's few patches made one or two steps each and learned nothing
            options["min_steps"] = MIN_STEPS
        training = TrainingConfig(
            **{f.name: options[f.name] for f in dataclasses.fields(TrainingConfig) if f.name in options}
        )
        cls.fit(model, sections, training, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)
        warn_if_undertrained(model.history)
        for o in objects:
            remember(o, model)
        return model

    @classmethod
    def resolve_options(
        cls,
        sdata: SpatialData | Sequence[SpatialData],
        image,
        shapes,
        table,
        given: MethodParams,
        chosen: TrainingPlan,
        preset: str | TrainingPreset,
        device: str | None,
        resolve_kwargs: dict | None,
    ) -> tuple[TrainingPreset, TrainingPlan, MethodParams, list[SpatialData], list]:
        """The recipe, plan and params :meth:`train` uses for these sections, and the sections resolved for them.

        ``"auto"`` follows the training shapes (bins of a few µm need a fine map); the working resolution
        follows an image coarser than the recipe's.
        """
        resolved = None
        if preset == "auto":
            # at the fine recipe's resolution: bins keep it, so only spots are resolved a second time
            provisional = given.microns_per_pixel or PRESETS["cpu_fine"].microns_per_pixel
            objects, resolved = resolve_sections(sdata, image, shapes, table, provisional, resolve_kwargs)
            recipe = resolve_preset(preset, device, finest_shape_um=finest_shapes_um(resolved))
        else:
            recipe = resolve_preset(preset, device)
        plan = chosen.resolved(cls.plan_defaults, recipe)
        plan = dataclasses.replace(plan, average_epochs=min(plan.average_epochs, plan.epochs))
        params = cls._resolve_params(given, recipe, plan)
        if resolved is None or params.microns_per_pixel != provisional:
            objects, resolved = resolve_sections(sdata, image, shapes, table, params.microns_per_pixel, resolve_kwargs)
        image_mpp = max(r.image.microns_per_pixel for r in resolved)  # the coarsest of the sections' finest levels
        if params.microns_per_pixel * MAX_UPSAMPLING < image_mpp:
            params = cls._at_image_resolution(given, params, image_mpp, recipe, plan)
            objects, resolved = resolve_sections(sdata, image, shapes, table, params.microns_per_pixel, resolve_kwargs)
        return recipe, plan, params, objects, resolved

    @classmethod
    def _resolve_params(cls, params: MethodParams, preset: TrainingPreset, plan: TrainingPlan) -> MethodParams:
        """``params`` completed from ``preset`` and checked against the resolved ``plan``."""
        return params.resolved(preset)

    @classmethod
    def _decide_on_held_out(
        cls, params: MethodParams, train_held_out: Callable[[dict], HeldOutFit]
    ) -> tuple[MethodParams, dict]:
        """Settings left to be chosen on held-out tissue, and config fields that record the choice.

        ``train_held_out(options)`` trains a single model with ``options`` without part of the training data and
        returns how it did there (:func:`pixnet.models.held_out.held_out_fit`). Nothing to decide by default.
        """
        return params, {}

    @classmethod
    def _at_image_resolution(cls, given, params, image_mpp: float, preset, plan):
        """Params for an image coarser than the working resolution: the image's, unless the user chose otherwise."""
        if given.microns_per_pixel is not None:
            warnings.warn(
                f"microns_per_pixel={given.microns_per_pixel:g} is {image_mpp / given.microns_per_pixel:.1f}x finer "
                f"than the image ({image_mpp:.3g} µm/px): it is upsampled, which adds cost but no detail. Leave "
                "microns_per_pixel unset to work at the image's resolution.",
                UserWarning,
                stacklevel=4,
            )
            return params
        patch_um = params.patch_size * params.microns_per_pixel
        patch_size = given.patch_size or max(64, round(patch_um / image_mpp / 32) * 32)
        logger.warning(
            "The image has %.3g µm/px, coarser than the %r preset's %g µm/px: working at %.3g µm/px (patch %d px) "
            "instead of upsampling it. Pass microns_per_pixel= to force a resolution.",
            image_mpp,
            preset.name,
            params.microns_per_pixel,
            image_mpp,
            patch_size,
        )
        return cls._resolve_params(
            dataclasses.replace(given, microns_per_pixel=image_mpp, patch_size=patch_size), preset, plan
        )

    @classmethod
    def _config(cls, params: MethodParams, shared: dict):
        """The config of a new model: ``shared`` (genes, normalisation, resolution, encoder) and the method's."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ prediction
    def predict(self, sdata: SpatialData, shapes: str | list[str] | None = None, **kwargs) -> SpatialData | None:
        """The dense map of ``sdata``'s image and its readout: :func:`pixnet.tl.predict` with this model.

        Examples
        --------
        With ``sdata`` and ``model`` as after predict's example:

        >>> model.predict(sdata, shapes="bins_16um", key_added="again", progress=False)
        >>> sdata["again_synthetic_square_016um"].var_names.tolist() == model.genes
        True

        """
        return predict(sdata, shapes, self, **kwargs)

    @property
    def genes(self) -> list[str]:
        """Genes, in output order."""
        return list(self.config.genes)

    @property
    def normalization(self) -> Normalization:
        """The target normalisation."""
        return Normalization.from_dict(self.config.normalization)

    @property
    def microns_per_pixel(self) -> float:
        """Working resolution of the model."""
        return float(self.config.microns_per_pixel)

    @property
    def channels(self) -> list[str]:
        """The dense map's channels (the genes)."""
        return self.genes

    @property
    def map_detail_um(self) -> float:
        """Side, in µm, of the finest independent cell of the model's map (its pixel, unless it interpolates)."""
        return self.microns_per_pixel

    @property
    def device(self) -> torch.device:
        """Where the network's parameters are."""
        return next(self.network.parameters()).device

    @property
    def epochs_trained(self) -> int:
        """Training epochs in ``history`` (epoch 0 there is the untrained model's validation)."""
        return sum(h["epoch"] > 0 for h in self.history)

    @staticmethod
    def _create_encoder(config, encoder_weights: str | None) -> tuple[torch.nn.Module, EncoderConfig]:
        """The encoder ``config`` names: random, or with ``encoder_weights`` (then recorded in ``config.encoder``)."""
        encoder_config = EncoderConfig.from_dict(config.encoder)
        encoder, loaded = create_encoder(encoder_config.name, encoder_weights)
        if encoder_weights is not None:
            config.encoder = loaded.to_dict()
            encoder_config = loaded
        return encoder, encoder_config

    # ------------------------------------------------------------------------------------------ persistence
    def _tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The tensor files to save, by file name."""
        return {WEIGHTS: self.network.state_dict()}

    @classmethod
    def _check_files(cls, config, path: Path) -> None:
        """Refuse further files whose tensors do not match ``config`` (before anything is built)."""

    def _read_files(self, path: Path) -> None:
        """Read the further files back into the built model."""

    def save(self, path: str | Path, overwrite: bool = False, extra: Callable[[Path], None] | None = None) -> Path:
        """Write the network's weights (``model.safetensors``), any further tensor files and ``config.json``.

        The folder is written beside its target (symlinks resolved) and swapped in under a write lock, so a
        failed or killed save leaves the existing model or the new one, never neither, and two processes cannot
        both write one path. ``extra(folder)`` writes further files into the new folder before the swap
        (training checkpoints keep their trainer state there).
        """
        return save_folder(path, self._tensors(), self.config, self.history, overwrite, extra)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu"):
        """Load a saved model. Only tensors and JSON are read: loading never executes code.

        ``config.json`` and every tensor's shape are checked against each other before the network is built.
        """
        record = read_record(path, [WEIGHTS, *cls.extra_files], cls.method)
        path = Path(path)
        try:
            config = cls.config_class(**{**cls.config_defaults, **record["config"]})
        except TypeError as error:
            article = "an" if cls.__name__[0] in "AEIOU" else "a"
            raise ValueError(f"{path / CONFIG} is not {article} {cls.__name__} config: {error}.") from None
        check_shapes(meta_state_shapes(lambda: cls.build(config).network), path / WEIGHTS)
        cls._check_files(config, path)
        model = cls.build(config)
        model.network.load_state_dict(load_tensors(path / WEIGHTS))
        model._read_files(path)
        model.history = record.get("history", [])
        model.network.to(device)
        logger.info("Loaded %r from %s", model, path)
        return model
