"""``pixnet.tl.train_baseline`` and ``pixnet.tl.predict_baseline``: spot-level references for PixNet."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from spatialdata import SpatialData

from ..constants import Keys
from ..data.inputs import resolve_inputs
from ..data.patches import build_section, section_crop, spot_patches
from ..data.spans import resolved_spans
from ..data.training_sections import resolve_sections
from ..dense.elements import add_tables, check_names_free, provenance, shape_table
from ..models.baseline import BASELINES, FeatureExtractor, SpotBaseline, make_estimator
from ..models.pixnet import PixNet
from ..nn import EncoderConfig
from ..pp import Normalization, select_genes
from ..training.presets import PRESETS
from ..utils.device import resolve_device
from ..utils.settings import settings

logger = logging.getLogger(__name__)

__all__ = ["predict_baseline", "train_baseline"]


def train_baseline(
    sdata: SpatialData | Sequence[SpatialData],
    method: str = "ridge",
    *,
    like: PixNet | None = None,
    image: str | list[str | None] | None = None,
    shapes: str | list | None = None,
    table: str | list[str | None] | None = None,
    genes: list[str] | None = None,
    n_top_genes: int = 250,
    normalization: str | Normalization = "total_log",
    microns_per_pixel: float = PRESETS["cpu"].microns_per_pixel,
    patch_size: int = PRESETS["cpu"].patch_size,
    encoder: str = PRESETS["cpu"].encoder,
    encoder_weights: str | None = PRESETS["cpu"].encoder_weights,
    n_components: int = 256,
    k: int = 25,
    seed: int = 0,
    device: str | None = None,
    progress: bool | None = None,
    resolve_kwargs: dict | None = None,
) -> SpotBaseline:
    """Fit a spot-level baseline on measured spots, sharing PixNet's data path.

    Spots are read exactly as :func:`pixnet.tl.train` reads them (same image level and resampling, genes,
    normalisation and units); each spot's features are the pooled deepest features of a frozen encoder on a
    ``patch_size`` patch centred on it.

    Parameters
    ----------
    sdata, image, shapes, table
        As for :func:`pixnet.tl.train` (one object or one per section).
    method
        ``"ridge"``, ``"knn"``, ``"mean"`` or ``"depth"``, see :class:`~pixnet.models.SpotBaseline`.
    like
        A PixNet model whose genes, normalisation, working resolution, patch size and encoder (its pretrained
        weights, not its fine-tuned ones) to share; these then override the arguments below.
    genes, n_top_genes, normalization, microns_per_pixel, patch_size, encoder, encoder_weights
        As for :func:`pixnet.tl.train`; the defaults are its ``"cpu"`` preset's.
    n_components
        PCA components (HEST-Benchmark: 256; fewer when there are fewer spots).
    k
        Neighbours of ``"knn"``.
    seed
        Fixes random encoder weights (when no pretrained ones are given).
    device
        Where the encoder runs (``"auto"``: cuda, mps or cpu).
    progress
        Show a progress bar; ``None``: ``pixnet.settings.progress``.
    resolve_kwargs
        Extra arguments for :func:`pixnet.resolve_inputs`.

    Returns
    -------
    The fitted :class:`~pixnet.models.SpotBaseline`.

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example, a ridge baseline on the same genes, resolution and
    encoder, trained on the 8 µm bins and read out for the 16 µm bins:

    >>> import pixnet
    >>> ridge = pixnet.tl.train_baseline(sdata, "ridge", shapes="bins_8um", like=model, progress=False)
    >>> pixnet.tl.predict_baseline(sdata, "bins_16um", ridge, progress=False)
    >>> sdata["ridge_synthetic_square_016um"].var_names.tolist() == model.genes
    True

    """
    progress = settings.progress_for(progress)
    if method not in BASELINES:
        raise ValueError(f"Unknown baseline {method!r}; choose one of {BASELINES}.")
    if like is not None:
        genes, normalization = like.genes, like.normalization
        microns_per_pixel, patch_size = like.microns_per_pixel, like.config.patch_size
        encoder_config = EncoderConfig.from_dict(like.config.encoder)
    else:
        normalization = normalization if isinstance(normalization, Normalization) else Normalization(normalization)
        encoder_config = EncoderConfig(encoder, "random" if encoder_weights is None else str(encoder_weights))
    _, resolved = resolve_sections(sdata, image, shapes, table, microns_per_pixel, resolve_kwargs)
    gene_record = select_genes([s.table for r in resolved for s in r.shapes.values()], n_top=n_top_genes, genes=genes)
    extractor = None
    if method != "mean":
        extractor = FeatureExtractor(encoder_config, seed, resolve_device(device))
        encoder_config = extractor.config  # with the normalisation the encoder's weights expect
        if encoder_config.weights == "random":
            logger.warning("Baseline %r uses features of an encoder with random weights; pass pretrained ones.", method)
    features, targets, log_depth = [], [], []
    for i, r in enumerate(resolved):
        section = build_section(
            r,
            name=str(i),
            genes=gene_record["genes"],
            normalization=normalization,
            microns_per_pixel=microns_per_pixel,
            margin_px=patch_size // 2,
        )
        for s in section.shape_sets:
            targets.append(s.targets)
            log_depth.append(np.log1p(s.totals.astype(np.float64)))
            if extractor is not None:
                features.append(extractor(spot_patches(section.image, s.centres, patch_size), progress=progress))
    y = np.concatenate(targets)
    x = np.concatenate(features) if features else np.zeros((len(y), 1), np.float32)
    estimator = make_estimator(method, len(y), x.shape[1], n_components, k)
    if method == "depth":
        estimator.fit(x, y, np.concatenate(log_depth))
    else:
        estimator.fit(x, y)
    logger.info("Fitted the %s baseline on %d spots x %d features", method, *x.shape)
    return SpotBaseline(
        method=method,
        genes=gene_record["genes"],
        normalization=normalization,
        microns_per_pixel=float(microns_per_pixel),
        patch_size=int(patch_size),
        encoder=encoder_config if extractor is not None else None,
        estimator=estimator,
        n_train=len(y),
        params={"n_components": n_components, "k": k, "seed": seed},
    )


def predict_baseline(
    sdata: SpatialData,
    shapes: str | list[str],
    baseline: SpotBaseline,
    *,
    image: str | None = None,
    key_added: str | None = None,
    overwrite: bool = False,
    device: str | None = None,
    progress: bool | None = None,
    copy: bool = False,
    resolve_kwargs: dict | None = None,
) -> dict | None:
    """Predict shapes with a baseline, into tables like those of :func:`pixnet.tl.predict`.

    The tables record the baseline's units, so :func:`pixnet.tl.evaluate` compares them with measured counts.

    Parameters
    ----------
    sdata
        The SpatialData object.
    shapes
        Shape set(s) to predict (one patch per shape: meant for spots, not millions of bins).
    baseline
        From :func:`pixnet.tl.train_baseline`.
    image
        The H&E image element.
    key_added
        Tables are named ``{key_added}_{shapes}`` (default: the baseline's method).
    overwrite
        Replace existing tables.
    device
        Where the encoder runs.
    progress
        Show a progress bar; ``None``: ``pixnet.settings.progress``.
    copy
        Return the tables (in a SpatialData) instead of adding them to ``sdata``.
    resolve_kwargs
        Extra arguments for :func:`pixnet.resolve_inputs`.

    Returns
    -------
    ``None``, or with ``copy=True`` a :class:`~spatialdata.SpatialData` of the new tables (and the shapes they
    annotate).

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example, ridge and PixNet on the 2 µm bins neither saw (on
    real sections: train on some, e.g. ``[pixnet.datasets.her2st(s) for s in ("C3", "C4", "C5")]``, predict
    another):

    >>> import pixnet
    >>> ridge = pixnet.tl.train_baseline(sdata, "ridge", shapes="bins_8um", like=model, progress=False)
    >>> pixnet.tl.predict_baseline(sdata, "bins_2um", ridge, progress=False)
    >>> ridge_summary = pixnet.tl.evaluate(sdata, "ridge_synthetic_square_002um")
    >>> pixnet_summary = pixnet.tl.evaluate(sdata, "pixnet_synthetic_square_002um")
    >>> int(ridge_summary["n_spots"].iloc[0]) == int(pixnet_summary["n_spots"].iloc[0])
    True

    """
    progress = settings.progress_for(progress)
    shape_list = [shapes] if isinstance(shapes, str) else list(shapes)
    inputs = resolve_inputs(
        sdata, image, shape_list, target_microns_per_pixel=baseline.microns_per_pixel, **(resolve_kwargs or {})
    )
    names = {name: Keys.table(key_added or baseline.method, name) for name in inputs.shapes}
    if not copy:
        check_names_free(sdata, list(names.values()), overwrite)
    extractor = None
    if baseline.encoder is not None:
        extractor = FeatureExtractor(baseline.encoder, baseline.params["seed"], resolve_device(device))
    factor = inputs.image.microns_per_pixel / baseline.microns_per_pixel
    if extractor is not None:
        crop, origin, factor = section_crop(
            inputs, baseline.microns_per_pixel, baseline.patch_size // 2, measured_only=False
        )
    tables = {}
    uns = provenance("predict_baseline", {}, baseline)
    for name, resolved in inputs.shapes.items():
        _, centres, area_px = resolved_spans(resolved, factor)
        if extractor is not None:
            x = extractor(spot_patches(crop, centres - origin, baseline.patch_size), progress=progress)
        else:
            x = np.zeros((len(centres), 1), np.float32)
        values = baseline.estimator.predict(x)
        area_um2 = area_px * baseline.microns_per_pixel**2
        tables[names[name]] = shape_table(sdata, resolved, values, baseline.genes, uns, area_um2)
    return add_tables(sdata, tables, copy)
