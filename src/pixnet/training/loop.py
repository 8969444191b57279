"""The training loop: sparse supervision of the dense map through the spots inside each patch."""

from __future__ import annotations

import copy
import functools
import logging
import math
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.patches import Batch, Section, make_batch, sample_patches
from ..data.spans import span_pixels, span_sums
from ..pp import Normalization
from ..utils.device import resolve_device
from ..utils.model_files import WEIGHTS, load_tensors, read_record
from .augment import augment_images, augmented_positions, draw_augmentations, undo_augmentation
from .distributed import Distributed
from .loss import LOSSES, gene_moments, image2gene_loss, pixnet_loss
from .pyramids import ALIGN, IDENTITY, PyramidCache, dihedral_variants, fits_cache, pad_image

logger = logging.getLogger(__name__)

_STATE = "trainer_state.pt"


class Trainable(Protocol):
    """What the training loops need of a model (PixNet, Image2Gene): its network, config, history and units."""

    network: torch.nn.Module
    config: Any
    history: list[dict]

    @property
    def normalization(self) -> Normalization:
        """The target normalisation the model's sums are compared in."""


@dataclass
class TrainingConfig:
    """Optimisation settings (recorded in the model's config)."""

    epochs: int = 20
    batch_size: int = 8
    steps_per_epoch: int | None = None
    min_steps: int = 0  # with steps_per_epoch unset, the members' epochs make at least this many steps in all
    learning_rate: float = 5e-4
    weight_decay: float = 1e-4
    pcc_weight: float = 0.5
    pcc_given_depth: bool = False
    loss: str = "mse"
    image2gene_weight: float = 0.0
    patience: int = 5
    augment: bool = True
    freeze_encoder: bool = False
    cache_pyramids: bool = True
    lr_schedule: str = "constant"
    average_epochs: int = 0
    preset: str = ""
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        if not 0 <= self.pcc_weight < float("inf"):
            raise ValueError(f"pcc_weight must be a finite number >= 0, got {self.pcc_weight}.")
        if not 0 <= self.average_epochs <= self.epochs:
            raise ValueError(f"average_epochs must be in [0, epochs={self.epochs}], got {self.average_epochs}.")


LR_SCHEDULES = ("constant", "cosine")


def learning_rate_schedule(config: TrainingConfig):
    """The learning rate at ``t`` epochs into training (fractional): constant, or cosine decay towards 0."""
    if config.lr_schedule == "cosine":
        return lambda t: config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(t / config.epochs, 1.0)))
    return lambda t: config.learning_rate


def make_optimizer(parameters, config: TrainingConfig, device: torch.device) -> torch.optim.Adam:
    """Adam with the config's learning rate and weight decay; fused (one kernel per tensor) on CPU and CUDA.

    The unfused CPU step loops over a dozen element-wise kernels per tensor: 3-4x slower on the decoder.
    """
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)


def place_network(model: Trainable, config: TrainingConfig, device: torch.device) -> torch.nn.Module:
    """The model's network on ``device``, its encoder frozen when the config says so."""
    network = model.network.to(device)
    if config.freeze_encoder:
        network.encoder.requires_grad_(False)
    return network


def training_mode(network: torch.nn.Module, config: TrainingConfig) -> None:
    """Train mode, but a frozen encoder stays in eval mode (its batch-norm statistics are frozen too)."""
    network.train()
    if config.freeze_encoder:
        network.encoder.eval()


def predict_batch(
    model: Trainable, batch: Batch, ops=None, amp: bool = False, network=None, embed: bool = False, features=None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eq. 9 sums of the (augmented) patches' maps over the batch's shapes, in the model's normalisation.

    Where the shapes cover less than half of the batch's pixels, the head runs only at their pixels (found in
    the augmented frame) instead of over whole maps that are then un-augmented. With ``embed``, also each
    shape's embedding: the mean of its pixels' projected decoder features (the auxiliary Image2Gene loss).
    ``features``: the augmented patches' cached encoder pyramids (see :class:`PyramidCache`), decoded instead
    of running the network on ``batch.images``.
    """
    device = batch.images.device
    network = network or model.network
    if features is not None:
        network = functools.partial(_decode_cached, network, features, batch.images.shape[-2:])
    n_shapes = len(batch.targets)
    image, row, x, shape = span_pixels(batch.batch, batch.row, batch.x0, batch.x1, batch.shape)
    size = batch.images.shape[-1]
    embeddings = None
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        if embed or 2 * image.numel() < batch.images[:, 0].numel():
            if ops is not None:
                moved = augmented_positions(ops, size).to(device)[image, row * size + x]
                row, x = moved // size, moved % size
            if embed:
                density, pixels = network(batch.images, at=(image, row, x), with_embedding=True)
                sums = torch.zeros(n_shapes, density.shape[1], device=device).index_add_(0, shape, density.float())
            else:
                sums = network(batch.images, at=(image, row, x), sum_by=(shape, n_shapes))
            if embed:
                embeddings = torch.zeros(n_shapes, pixels.shape[1], device=device).index_add_(0, shape, pixels.float())
                embeddings = embeddings / torch.bincount(shape, minlength=n_shapes).clamp_min(1)[:, None]
        else:
            maps = network(batch.images)
            if ops is not None:
                maps = undo_augmentation(maps, ops)
            sums = span_sums(maps, batch.batch, batch.row, batch.x0, batch.x1, batch.shape, n_shapes)
    if counts_map(model):  # log expected counts, compared with the log measured counts (batch_targets)
        return sums.float().log1p(), embeddings
    return model.normalization.transform(sums), embeddings


def counts_map(model) -> bool:
    """Whether the model's map holds expected counts and an other-genes channel (``map_units="counts"``)."""
    return getattr(getattr(model, "config", None), "map_units", "normalized") == "counts"


def batch_targets(model, batch: Batch) -> torch.Tensor:
    """What :func:`predict_batch` is compared with: the targets, or for a counts map the log measured counts.

    A counts map learns each gene's counts and the other genes' counts, depth included: a shape's composition
    (the targets' units) is a ratio of its sums, and fitting that ratio directly trained worse at 2 µm (PCC@M
    0.69 vs 0.85 against the truth on a synthetic 640 µm Visium HD section).
    """
    if not counts_map(model):
        return batch.targets
    counts = model.normalization.inverse_transform(batch.targets) * batch.exposure[:, None]
    other = (batch.totals - counts.sum(dim=1)).clamp_min(0)
    return torch.cat([counts, other[:, None]], dim=1).log1p()


def _decode_cached(network, features, size, images, at=None, with_embedding=False, sum_by=None):
    """``network(images, ...)`` for images whose encoder pyramids are already ``features``.

    A decoder that takes the pixels themselves (``pixel_skip``) gets ``images``, which the caller augmented as
    the cached pyramids were.
    """
    pixels = network.normalise(images) if getattr(network, "uses_pixels", False) else None
    return network.decode(features, tuple(size), at, with_embedding, sum_by, image=pixels)


def initial_density(model: Trainable, sections: list[Section]) -> torch.Tensor:
    """Per-channel mean density per pixel implied by the training targets (counts, and totals, for a counts map)."""
    values = model.normalization.inverse_transform(training_targets(sections).astype(np.float64))
    shape_sets = [s for section in sections for s in section.shape_sets]
    areas = np.concatenate([s.area_px[~s.validation] for s in shape_sets])
    if counts_map(model):
        counts = values * np.concatenate([s.exposure[~s.validation] for s in shape_sets])[:, None]
        totals = np.concatenate([s.totals[~s.validation] for s in shape_sets])
        values = np.column_stack([counts, np.maximum(totals - counts.sum(axis=1), 0)])
    return torch.from_numpy(values.sum(axis=0) / areas.sum()).float()


def training_count_means(model: Trainable, sections: list[Section]) -> torch.Tensor:
    """Per-gene mean count of the training shapes (scales each gene's Poisson deviance)."""
    shape_sets = [s for section in sections for s in section.shape_sets]
    counts = [
        model.normalization.inverse_transform(s.targets[~s.validation].astype(np.float64))
        * s.exposure[~s.validation, None]
        for s in shape_sets
    ]
    return torch.from_numpy(np.concatenate(counts).mean(axis=0)).float()


def training_targets(sections: list[Section]) -> np.ndarray:
    """Targets of every training (not validation) shape."""
    return np.concatenate([s.targets[~s.validation] for section in sections for s in section.shape_sets])


class EpochTracker:
    """What happens between epochs, shared by the training loops.

    History and logs, the best weights (by validation loss, else training loss) or, with
    ``config.average_epochs``, the mean of the weights after each of the last epochs (stochastic weight
    averaging), checkpoints, early stopping and resuming. ``rng`` is the loop's random generator (restored
    with the rest when resuming). The members of an ensemble train one after another, each from
    :meth:`begin_member` to :meth:`finish`.
    """

    def __init__(self, model, optimizer, config: TrainingConfig, checkpoint_dir, resume, progress: bool, device):
        self.model, self.optimizer, self.config, self.progress = model, optimizer, config, progress
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.member, self.start_member, self.optimizer_state = 0, 0, None
        self._reset()
        self.rng = np.random.default_rng(config.seed)
        self.resumed = resume is not None
        model.config.training = asdict(config)
        if self.resumed:
            r = _restore(model, Path(resume), device)
            self.start_member, self.start_epoch, self.best_loss, self.stale = r.member, r.epoch, r.best_loss, r.stale
            self.best_state, self.average, self.n_averaged, self.rng = r.best_state, r.average, r.n_averaged, r.rng
            self.optimizer_state = r.optimizer
            if optimizer is not None:
                self._load_optimizer(optimizer)
        # one bar for the whole training, epoch metrics in its postfix (each epoch's record is logged at INFO)
        self.n_members = getattr(model.config, "n_models", 1)
        self.bar = tqdm(total=config.epochs * self.n_members, desc="training", unit="epoch", disable=not progress)
        self.bar.update(self.start_member * config.epochs + self.start_epoch)

    def _reset(self) -> None:
        self.start_epoch, self.best_loss, self.best_state, self.stale = 0, float("inf"), None, 0
        self.average, self.n_averaged = None, 0

    def _load_optimizer(self, optimizer) -> None:
        optimizer.load_state_dict(self.optimizer_state)
        for group in optimizer.param_groups:  # the optimiser's state keeps the old run's values
            group["lr"], group["weight_decay"] = self.config.learning_rate, self.config.weight_decay
        self.optimizer_state = None

    def begin_member(self, member: int, optimizer) -> int:
        """Start training ensemble member ``member`` with ``optimizer``; the epoch it starts from."""
        self.member, self.optimizer = member, optimizer
        if self.optimizer_state is not None and member == self.start_member:
            self._load_optimizer(optimizer)  # resuming within this member
        else:
            self._reset()
        return self.start_epoch

    def _with_member(self, record: dict) -> dict:
        return {"member": self.member + 1, **record} if getattr(self.model.config, "n_models", 1) > 1 else record

    def record_untrained(self, metrics: dict) -> None:
        """Record the validation metrics before training (epoch 0), so that history shows what training gained."""
        self.model.history.append(self._with_member({"epoch": 0, **metrics}))

    def end_epoch(self, record: dict, write_checkpoint: bool = True, before_checkpoint=None) -> bool:
        """Record an epoch; ``True`` when training should stop early."""
        record = self._with_member(record)
        self.model.history.append(record)
        logger.info("epoch %d: %s", record["epoch"], record)
        shown = ("train_loss", "train_pcc", "val_loss", "val_pcc")
        self.bar.set_postfix({k.replace("train_", ""): f"{record[k]:.4g}" for k in shown if k in record}, refresh=False)
        self.bar.update(1)
        monitored = record.get("val_loss", record["train_loss"])
        if monitored < self.best_loss:
            self.best_loss, self.best_state, self.stale = monitored, copy.deepcopy(self.model.network.state_dict()), 0
        else:
            self.stale += 1
        if record["epoch"] > self.config.epochs - self.config.average_epochs:
            self._accumulate()
        if self.checkpoint_dir is not None and write_checkpoint:
            if before_checkpoint is not None:
                before_checkpoint()
            _checkpoint(self, record["epoch"])
        if "val_loss" in record and self.stale >= self.config.patience:
            logger.info(
                "Early stopping after epoch %d (no validation improvement for %d epochs)", record["epoch"], self.stale
            )
            return True
        return False

    def _accumulate(self) -> None:
        state = {k: v.detach().to("cpu", torch.float32, copy=True) for k, v in self.model.network.state_dict().items()}
        self.n_averaged += 1
        if self.average is None:
            self.average = state
        else:
            for key, value in state.items():
                self.average[key] += (value - self.average[key]) / self.n_averaged

    def finish(self) -> None:
        """Keep the averaged weights, else the best ones."""
        if self.average is not None:
            reference = self.model.network.state_dict()
            self.model.network.load_state_dict({k: v.to(reference[k].dtype) for k, v in self.average.items()})
            self.model.history[-1]["averaged_epochs"] = self.n_averaged
        elif self.best_state is not None:
            self.model.network.load_state_dict(self.best_state)
        self.model.network.eval()
        if self.member + 1 >= self.n_members:
            self.bar.close()


def run_epochs(
    tracker: EpochTracker,
    start: int,
    train_epoch,
    validate=None,
    *,
    write_checkpoint: bool = True,
    barrier=None,
    before_checkpoint=None,
) -> None:
    """The epochs of one model (or ensemble member) from ``start``, for every method.

    ``train_epoch(epoch)`` trains one epoch and returns its record; ``validate()`` (optional) returns validation
    metrics, recorded for the untrained model too when starting from scratch. The tracker keeps history, best
    or averaged weights and checkpoints, and stops early; ``barrier`` keeps distributed processes in step.
    """
    if validate is not None and start == 0:
        tracker.record_untrained(validate())
    for epoch in range(start, tracker.config.epochs):
        started = time.perf_counter()
        record = train_epoch(epoch)
        if validate is not None:
            record.update(validate())
        record["seconds"] = round(time.perf_counter() - started, 2)
        stop = tracker.end_epoch(record, write_checkpoint=write_checkpoint, before_checkpoint=before_checkpoint)
        if barrier is not None:
            barrier()
        if stop:
            break
    tracker.finish()


def fit(
    model: Trainable,
    sections: list[Section],
    config: TrainingConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
) -> Trainable:
    """Train ``model`` on ``sections`` (each shape's ``validation`` flag already set)."""
    torch.manual_seed(config.seed)
    group = Distributed()
    device = group.device(resolve_device(config.device))
    progress = progress and group.is_main
    auxiliary = config.image2gene_weight > 0
    if auxiliary and model.network.embedding is None:
        raise ValueError("image2gene_weight > 0 needs a model built with embedding_dim > 0.")
    n_members = model.config.n_models
    if n_members > 1 and not config.freeze_encoder:
        raise ValueError(f"n_models={n_members} trains decoders on one shared encoder; it needs freeze_encoder=True.")
    if n_members > 1 and auxiliary:
        raise ValueError("image2gene_weight > 0 trains the embedding of a single model; it needs n_models=1.")
    patch_size = model.config.patch_size
    groups = {name: i for i, name in enumerate(sorted({s.name for sec in sections for s in sec.shape_sets}))}
    network = place_network(model, config, device)
    cache = None
    # a slice of a whole section's pyramid equals the patch's own only for a convolutional (local) encoder
    local = getattr(network.encoder, "local", True)
    variants = dihedral_variants(np.random.default_rng(config.seed + 2)) if config.augment else [IDENTITY]
    cacheable = config.freeze_encoder and config.cache_pyramids and local and group.world == 1
    if cacheable and patch_size % ALIGN == 0 and fits_cache(network.encoder, sections, len(variants)):
        for section in sections:
            section.image = pad_image(section.image, patch_size)
        # before the training bar opens: a bar nested in another prints a line per update in a notebook's text
        cache = PyramidCache(network, sections, variants, device, progress)
    tracker = EpochTracker(model, None, config, checkpoint_dir, resume, progress, device)
    rng = tracker.rng
    if not tracker.resumed:
        network.set_initial_density(initial_density(model, sections))
    schedule = learning_rate_schedule(config)
    moments = gene_moments(training_targets(sections)) if auxiliary else None
    count_means = training_count_means(model, sections) if config.loss == "poisson" else None
    align = ALIGN if cache is not None else 1
    validation = sample_patches(
        sections, patch_size, validation=True, rng=np.random.default_rng(config.seed + 1), align=align
    )
    has_validation = len(validation) > 0
    run = _Run(
        model, sections, config, rng, cache, align, groups, group, device, schedule, moments, count_means, progress
    )
    for member in range(tracker.start_member, n_members):
        alone = network.member(member)
        optimizer = make_optimizer(alone.train_only_this(), config, device)
        start = tracker.begin_member(member, optimizer)
        trained = group.wrap(alone, device)
        run_epochs(
            tracker,
            start,
            functools.partial(_train_epoch, run, alone, trained, optimizer),
            functools.partial(evaluate, run, validation, alone) if has_validation else None,
            write_checkpoint=group.is_main,
            barrier=group.barrier,
        )
    for member in range(n_members):
        for module in network.member_modules(member):
            module.requires_grad_(True)
    return model


@dataclass
class _Run:
    """What every epoch of one :func:`fit` shares."""

    model: Trainable
    sections: list[Section]
    config: TrainingConfig
    rng: np.random.Generator
    cache: PyramidCache | None
    align: int
    groups: dict[str, int]
    group: Distributed
    device: torch.device
    schedule: object
    moments: object
    count_means: torch.Tensor | None
    progress: bool


def epoch_order(n_patches: int, config: TrainingConfig, rng: np.random.Generator, n_members: int = 1) -> np.ndarray:
    """The patches of one epoch, in order: a permutation, or ``steps_per_epoch`` batches of shuffled passes.

    Without ``steps_per_epoch``, an epoch too short for ``config.min_steps`` over all epochs of ``n_members``
    members makes the steps that are missing from further shuffled passes (a small section's handful of patches).
    """
    steps = config.steps_per_epoch
    if not steps and config.min_steps:
        floor = -(-config.min_steps // max(1, config.epochs * n_members))
        steps = floor if -(-n_patches // config.batch_size) < floor else None
    if not steps or n_patches == 0:
        return rng.permutation(n_patches)
    wanted = steps * config.batch_size
    passes = [rng.permutation(n_patches) for _ in range(-(-wanted // n_patches))]
    return np.concatenate(passes)[:wanted]


def _train_epoch(run: _Run, alone, trained, optimizer, epoch: int) -> dict:
    """One epoch of one member; the epoch's record."""
    model, sections, config, rng = run.model, run.sections, run.config, run.rng
    cache, align, groups, group = run.cache, run.align, run.groups, run.group
    device, schedule, moments = run.device, run.schedule, run.moments
    started = time.perf_counter()
    patch_size, amp, auxiliary = model.config.patch_size, device.type == "cuda", moments is not None
    training_mode(alone, config)
    patches = sample_patches(sections, patch_size, validation=False, rng=rng, align=align)
    order = epoch_order(len(patches), config, rng, getattr(model.config, "n_models", 1))
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    batches = [b for b in batches if len(b) >= group.world]  # every process needs a share
    totals = {"loss": 0.0, "mse": 0.0, "pcc": 0.0, **({"image2gene": 0.0} if auxiliary else {})}
    for step, chosen in enumerate(batches):
        for param_group in optimizer.param_groups:
            param_group["lr"] = schedule(epoch + step / len(batches))
        features = None
        if cache is not None:
            variant = rng.integers(len(cache.variants), size=len(chosen))
            ops = [cache.variants[v] for v in variant] if config.augment else None
            batch = make_batch(sections, [patches[i] for i in chosen], patch_size, groups).to(device)
            features = cache.batch([patches[i] for i in chosen], variant, patch_size, device)
            if ops is not None and getattr(alone, "uses_pixels", False):
                batch.images = augment_images(batch.images, ops)  # as the cached pyramids were
        else:
            ops = draw_augmentations(len(chosen), rng) if config.augment else None  # drawn for the global batch
            mine = group.share(list(range(len(chosen))))
            batch = make_batch(sections, [patches[chosen[i]] for i in mine], patch_size, groups).to(device)
            ops = [ops[i] for i in mine] if ops is not None else None
            if ops is not None:
                batch.images = augment_images(batch.images, ops)
        pred, embeddings = predict_batch(model, batch, ops, amp, network=trained, embed=auxiliary, features=features)
        targets = group.gather(batch_targets(model, batch))
        loss, parts = pixnet_loss(
            group.gather(pred),
            targets,
            group.gather(batch.group),
            config.pcc_weight,
            config.loss,
            group.gather(batch.exposure),
            run.count_means,
            group.gather(batch.totals).log1p() if config.pcc_given_depth else None,
        )
        if auxiliary:
            similarity = image2gene_loss(group.gather(embeddings), targets[:, : len(model.config.genes)], moments)
            loss = loss + config.image2gene_weight * similarity
            parts["image2gene"], parts["loss"] = float(similarity.detach()), float(loss.detach())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"The loss became {parts['loss']} in epoch {epoch + 1}; try a lower learning_rate."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key in totals:
            totals[key] += parts[key] / len(batches)
    return {
        "epoch": epoch + 1,
        **{f"train_{k}": v for k, v in totals.items()},
        "train_patches": len(patches),
        "train_steps": len(batches),
        "train_shapes": sum(m.size for p in patches for _, m in p.shapes),
        "train_seconds": round(time.perf_counter() - started, 2),
    }


@torch.no_grad()
def evaluate(run: _Run, patches, network=None) -> dict:
    """Validation loss and mean per-gene PCC (per shape set over all its held-out shapes, then averaged).

    ``network``: the network to evaluate (an ensemble member), default ``run.model.network``.

    With the run's pyramid cache, patches are decoded from their cached pyramids (variant 0, unaugmented): the
    section around a patch is its context in training and in prediction, so an isolated patch would not match.
    """
    model, sections, groups, config, device, cache = (
        run.model,
        run.sections,
        run.groups,
        run.config,
        run.device,
        run.cache,
    )
    network = network or model.network
    network.eval()
    preds, targets, exposures, group_ids, totals = [], [], [], [], []
    size = model.config.patch_size
    for i in range(0, len(patches), config.batch_size):
        chosen = patches[i : i + config.batch_size]
        batch = make_batch(sections, chosen, size, groups).to(device)
        features = None if cache is None else cache.batch(chosen, [0] * len(chosen), size, device)
        preds.append(predict_batch(model, batch, amp=device.type == "cuda", network=network, features=features)[0])
        targets.append(batch_targets(model, batch))
        exposures.append(batch.exposure)
        group_ids.append(batch.group)
        totals.append(batch.totals)
    pred, target, group = torch.cat(preds), torch.cat(targets), torch.cat(group_ids)
    depth = torch.cat(totals).log1p() if config.pcc_given_depth else None
    exposure = torch.cat(exposures)
    _, parts = pixnet_loss(pred, target, group, config.pcc_weight, config.loss, exposure, run.count_means, depth)
    return {"val_loss": parts["loss"], "val_mse": parts["mse"], "val_pcc": parts["pcc"]}


def _checkpoint(tracker: EpochTracker, epoch: int) -> None:
    """Weights, best weights and trainer state as one folder, swapped in whole (a kill leaves one or the other)."""
    state = {
        "member": tracker.member,
        "epoch": epoch,
        "best_loss": tracker.best_loss,
        "best": tracker.best_state or {},
        "stale": tracker.stale,
        "optimizer": tracker.optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": tracker.rng.bit_generator.state,
        "average": tracker.average or {},
        "n_averaged": tracker.n_averaged,
    }
    tracker.model.save(
        tracker.checkpoint_dir / "last", overwrite=True, extra=lambda folder: torch.save(state, folder / _STATE)
    )


# settings a resumed run must share with the checkpoint: they define the network and what its outputs mean
_RESUME_FIXED = (
    "method",
    "n_models",
    "genes",
    "normalization",
    "microns_per_pixel",
    "patch_size",
    "decoder_width",
    "decoder_norm",
    "embedding_dim",
    "output_stride",
    "pixel_skip",
    "map_units",
    "coordinates",
    "k",
    "weighting",
    "map_stride",
)


def _restore(model, folder: Path, device):
    state_file = folder / "last" / _STATE
    if not state_file.is_file():
        raise FileNotFoundError(f"No training checkpoint in {folder} (expected last/{_STATE}).")
    saved = read_record(folder / "last", [WEIGHTS])
    current = asdict(model.config)
    changed = [
        f"{key}: {_brief(saved['config'].get(key))} in the checkpoint, {_brief(current.get(key))} now"
        for key in _RESUME_FIXED
        if key in current and saved["config"].get(key) != current.get(key)
    ]
    if saved["config"].get("encoder", {}).get("name") != current["encoder"]["name"]:
        changed.append(
            f"encoder: {saved['config']['encoder'].get('name')} in the checkpoint, {current['encoder']['name']} now"
        )
    if changed:
        raise ValueError(f"Cannot resume from {folder}: the run differs from the checkpoint's ({'; '.join(changed)}).")
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    model.network.load_state_dict(load_tensors(folder / "last" / WEIGHTS))
    model.network.to(device)
    before = saved["config"].get("training", {})
    for key in ("learning_rate", "weight_decay", "lr_schedule"):
        if key in before and before[key] != model.config.training[key]:
            logger.warning(
                "Resuming with %s=%s (the checkpoint's run had %s)", key, model.config.training[key], before[key]
            )
    model.history = saved["history"]
    torch.set_rng_state(state["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = state["numpy_rng"]
    logger.info("Resuming from epoch %d of %s", state["epoch"], folder)
    return ResumedState(
        int(state.get("member", 0)),
        int(state["epoch"]),
        float(state["best_loss"]),
        state["best"] or None,
        int(state["stale"]),
        rng,
        state["average"] or None,
        int(state["n_averaged"]),
        state["optimizer"],
    )


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class ResumedState:
    """What :class:`EpochTracker` takes over from a checkpoint."""

    member: int
    epoch: int
    best_loss: float
    best_state: dict | None
    stale: int
    rng: np.random.Generator
    average: dict | None
    n_averaged: int
    optimizer: dict


MIN_STEPS = 100
"""Fewer optimiser steps than this left the predictions nearly constant in every recipe measured."""


def warn_if_undertrained(history: list[dict]) -> None:
    """Warn when training made too few optimiser steps, or its loss did not fall, to have learned a map."""
    steps = sum(int(h.get("train_steps", 0)) for h in history)
    if history and "train_steps" in history[0] and steps < MIN_STEPS:
        warnings.warn(
            f"Training made only {steps} optimiser steps in all ({len(history)} epochs, ensemble members included): "
            "too few for the map to learn its spread, so its predictions may be nearly constant (check std_ratio "
            "in tl.evaluate). Raise epochs= or steps_per_epoch= (e.g. steps_per_epoch=50 fixes the steps per "
            "epoch whatever the area).",
            UserWarning,
            stacklevel=3,
        )
    members: dict[int, list[float]] = {}
    for h in history:
        if "train_loss" in h:
            members.setdefault(int(h.get("member", 1)), []).append(float(h["train_loss"]))
    for member, losses in members.items():
        if len(losses) >= 2 and not losses[-1] < losses[0]:
            warnings.warn(
                f"The training loss did not fall ({losses[0]:.4g} in the first epoch, {losses[-1]:.4g} in the last"
                f"{f', ensemble member {member}' if len(members) > 1 else ''}): the model may not have learned. "
                "Try a lower learning_rate or more epochs, and check the inputs.",
                UserWarning,
                stacklevel=3,
            )
