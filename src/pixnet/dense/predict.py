"""``pixnet.tl.predict`` and ``pixnet.tl.aggregate``: the lazy dense map and its read-out into any shapes."""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import warnings
from dataclasses import dataclass

import dask.array as da
import numpy as np
import zarr
from spatialdata import SpatialData
from spatialdata.models import Image2DModel
from spatialdata.transformations import Scale, Sequence, get_transformation

from ..constants import Keys
from ..data.images import MAX_UPSAMPLING, pyramid_levels
from ..data.inputs import ResolvedInputs, resolve_inputs
from ..data.spans import check_on_image, inside_fraction, resolved_spans
from ..utils.registry import recall
from ..utils.settings import settings
from .aggregate import aggregate_spans
from .elements import add_tables, check_names_free, new_elements, provenance, shape_table
from .lazy_map import check_tiles, lazy_dense_map, map_settings, map_shape
from .map_cache import MapCache, map_fingerprint
from .reliability import add_reliability, check_interval, interval_layers
from .resolution import check_map_resolves
from .store import StoreTransaction
from .threads import releases_threads

logger = logging.getLogger(__name__)

__all__ = ["aggregate", "predict"]


def _map_transformations(sdata: SpatialData, image_name: str, level0_px_per_map_px: float) -> dict:
    """The image's transformations, preceded by the map-to-image scale: the map lies exactly over the image."""
    scale = Scale([level0_px_per_map_px] * 2, axes=("x", "y"))
    return {cs: Sequence([scale, t]) for cs, t in get_transformation(sdata.images[image_name], get_all=True).items()}


@releases_threads
def predict(
    sdata: SpatialData,
    shapes: str | list[str] | None = None,
    model=None,
    *,
    image: str | None = None,
    key_added: str = Keys.PREFIX,
    tile_size: int = 512,
    halo: int | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    write: bool = False,
    table_memory_limit: int = 2**31,
    cache: MapCache | bool = False,
    uncertainty: bool = False,
    interval: float | None = None,
    progress: bool | None = None,
    copy: bool = False,
    resolve_kwargs: dict | None = None,
) -> dict | None:
    """Predict the dense expression map of an image and read it out for shapes.

    Adds the map as the image element ``{key_added}_map`` (channels = the model's genes, dims ``c, y, x``): a lazy,
    dask-backed array at the model's resolution, one task per ``tile_size`` chunk (each reading its tile plus
    ``halo`` pixels of context), with the image's transformations preceded by the map-to-image scale, so it lies
    exactly over the image in every coordinate system. Nothing is computed until the map is read.

    For each shape set, the map is summed over every shape's pixels (Eq. 9), streaming chunk by chunk, and the
    result is added as the table ``{key_added}_{shapes}`` annotating those shapes: the model's genes as ``var``,
    values in the model's target units (:func:`pixnet.tl.evaluate` compares them with measured counts),
    ``obs['area_um2']`` (each shape's area in µm²), ``obsm['spatial']``, and, where the
    shapes have a measured table, its rows first and in its order. Shapes cut by the image's edge are summed
    and measured over their part inside it (``obs['fraction_inside']``, added when some are); shapes none of
    which lie on the image are refused before anything is computed.

    Parameters
    ----------
    sdata
        The SpatialData object.
    shapes
        Shape set(s) to read out (names or bin aliases such as ``"bins_2um"``); ``None`` adds the map only.
    model
        A trained model; by default the one :func:`pixnet.tl.train` recorded for ``sdata``.
    image
        The H&E image element (see :func:`pixnet.resolve_inputs`).
    key_added
        Prefix of the new elements.
    tile_size, halo
        Chunk side and context on each side, in map pixels (multiples of 32). The default halo is half the
        model's training patch (at least 64), so that every pixel's attention window lies inside its task.
    dtype
        Map dtype: ``"float32"``, or ``"float16"`` to halve its size when written.
    overwrite
        Replace existing elements of the same names. Without it, a second call for other shapes reads them out
        of the map the first call added (same model, image and settings, this session) instead of refusing or
        running the model again; only the new tables are added.
    write
        Also write the new elements into the zarr store that backs ``sdata``. The map is written first (the model
        runs once per chunk) and read back from disk for the aggregation; tables whose values would exceed
        ``table_memory_limit`` bytes are accumulated in a temporary zarr array and written chunk-wise, and stay
        backed by the store (``X`` is a dask array). An existing element is replaced only with ``overwrite=True``,
        and only after its replacement was written completely: a failure leaves the store as it was.
    table_memory_limit
        See ``write``.
    cache
        Keep computed chunks of the map for every later read of it (plots, :func:`aggregate`, ``.compute()``),
        so that the model runs once per chunk: a :class:`MapCache` (in memory with a size bound, or in a scratch
        folder), or ``True`` for one in memory of at most 2 GiB. Without it each read runs the model again.
    uncertainty
        For an ensemble (a model trained with ``n_models`` >= 2): also add ``{key_added}_std``, the map of each
        pixel's standard deviation over the members' maps, and ``layers["std"]`` in each table, the standard
        deviation over the members of each shape's prediction (each member's own sum over the shape, in the
        table's units). The members' sums are computed exactly, so no assumption about how pixel errors
        correlate within a shape is needed; it measures how much the members disagree, not the noise of a
        measurement (see :doc:`/evaluation` for its calibration on held-out spots).
    interval
        For a model trained with ``reliability=True``: also add ``layers["lower"]`` and ``layers["upper"]``, a
        conformal interval at this level (one of the model's ``config.reliability["levels"]``, e.g. 0.9) around
        each prediction, in the table's units: the prediction plus the gene's low and high residual quantiles
        (measured - predicted, equal-tailed) on the shapes held out from the further model of training. It
        holds about that share of measured values where new shapes are exchangeable with those held out
        (another section of the same kind); on a new patient or stain it may hold fewer. Only for shapes of
        about the held-out shapes' area (within 2x): residuals grow with size.
        Such a model's tables always carry ``var["expected_pcc"]``, ``var["expected_partial_pcc"]`` and
        ``var["no_expected_skill"]`` (the held-out PCC is not above ``2 / sqrt(n_shapes)``).
    progress
        Show a progress bar; ``None``: ``pixnet.settings.progress``.
    copy
        Return the new elements (the map, its ``_std`` map with ``uncertainty``, the tables) as a SpatialData,
        with the shapes the tables annotate, instead of adding them to ``sdata``.
    resolve_kwargs
        Extra arguments for :func:`pixnet.resolve_inputs`.

    Returns
    -------
    ``None``, or with ``copy=True`` a :class:`~spatialdata.SpatialData` of the new elements.

    Examples
    --------
    A small synthetic Visium HD sample, a small model trained on its 8 µm bins (one epoch, to be quick), then the
    dense map and the 2 µm bins:

    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, progress=False)
    >>> sdata = pixnet.io.read(folder)  # dataset_id "synthetic"
    >>> model = pixnet.tl.train(sdata, shapes="bins_8um", preset="paper", encoder_weights="random",
    ...                         decoder_width=16, patch_size=64, epochs=1, progress=False)
    >>> pixnet.tl.predict(sdata, shapes="bins_2um", progress=False)
    >>> sdata["pixnet_map"].dims, sdata["pixnet_map"].sizes["c"] == len(model.genes)  # the lazy dense map
    (('c', 'y', 'x'), True)
    >>> sdata["pixnet_synthetic_square_002um"].n_obs  # one row per 2 µm bin under the tissue
    832

    """
    progress = settings.progress_for(progress)
    request = _resolve_request(
        sdata,
        shapes,
        model,
        image,
        key_added,
        tile_size,
        halo,
        dtype,
        write,
        copy,
        overwrite,
        uncertainty,
        resolve_kwargs,
        table_memory_limit,
        interval,
    )
    with StoreTransaction(sdata, request.names, overwrite) if write else contextlib.nullcontext() as transaction:
        if request.reuse_map:
            elements, dense = {}, sdata.images[request.map_name].data
            factor = map_shape(request.inputs.image, request.model.microns_per_pixel)[2]
            logger.info("Reading the shapes out of the existing map %r, made alike", request.map_name)
        else:
            cache = MapCache() if cache is True else cache or None
            elements, dense, factor = _lazy_maps(sdata, request, tile_size, dtype, cache, transaction)
        if write:
            dense = _stage_maps(transaction, elements, dense, uncertainty)
        tables = {}
        for name, resolved in request.inputs.shapes.items():
            params = {"map": request.map_name, "agg": "sum", "tile_size": tile_size, "halo": request.halo}
            params |= {"interval": interval} if interval is not None else {}
            table = _shape_table(
                sdata, request, resolved, dense, factor, {**params, "dtype": dtype}, transaction, progress
            )
            if write:
                transaction.stage("tables", request.table_names[name], table)
            else:
                tables[request.table_names[name]] = table
            logger.info("Predicted %d %s shapes of %r", len(resolved), resolved.kind, name)
        if write:
            transaction.commit()
            if not request.reuse_map:
                sdata.images[request.map_name].attrs[Keys.MAP_FINGERPRINT] = request.fingerprint
            return None
    if copy:
        return new_elements(sdata, elements, tables)
    _drop(sdata, request.names)
    for name, element in elements.items():
        sdata.images[name] = element
        logger.info("Added the lazy map %r (%d genes x %d x %d px)", name, *element.shape)
    add_tables(sdata, tables, copy=False)
    return None


@dataclass
class _Request:
    """What one :func:`predict` call reads and writes, resolved and checked before anything is computed."""

    model: object
    inputs: ResolvedInputs
    halo: int
    n_members: int  # ensemble members whose maps are kept apart (uncertainty), else 1
    map_name: str
    std_name: str | None
    table_names: dict[str, str]
    table_memory_limit: int
    interval: float | None
    fingerprint: str  # of the map this call makes (model, image, settings)
    reuse_map: bool = False  # the map exists, made the same way: only the tables are new

    @property
    def map_names(self) -> list[str]:
        return [self.map_name] if self.std_name is None else [self.map_name, self.std_name]

    @property
    def names(self) -> list[str]:
        """The elements this call adds."""
        return [*([] if self.reuse_map else self.map_names), *self.table_names.values()]


def _resolve_request(
    sdata,
    shapes,
    model,
    image,
    key_added,
    tile_size,
    halo,
    dtype,
    write,
    copy,
    overwrite,
    uncertainty,
    resolve_kwargs,
    table_memory_limit,
    interval,
) -> _Request:
    """Step 1: the model, image and shapes, every check that can fail before a pixel is computed."""
    model = model or recall(sdata)
    if model is None:
        raise ValueError("No model given and none was trained on this object; pass model= (e.g. PixNet.load(path)).")
    if halo is None:
        halo = max(64, -(-model.config.patch_size // 64) * 32)
    check_tiles(tile_size, halo)
    shape_list = [] if shapes is None else ([shapes] if isinstance(shapes, str) else list(shapes))
    inputs = resolve_inputs(
        sdata, image, shape_list, target_microns_per_pixel=model.microns_per_pixel, **(resolve_kwargs or {})
    )
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r} (an integer map would truncate).")
    coarser = inputs.image.microns_per_pixel / model.microns_per_pixel
    if coarser > MAX_UPSAMPLING:
        warnings.warn(
            f"Image {inputs.image.name!r} has {inputs.image.microns_per_pixel:.3g} µm/px, {coarser:.1f}x coarser than "
            f"the model's {model.microns_per_pixel:g} µm/px: it is upsampled, and the model never saw tissue at this "
            "detail in training. Check the image's pixel size (resolve_kwargs={'microns_per_pixel': ...}).",
            UserWarning,
            stacklevel=3,
        )
    check_map_resolves(
        inputs.shapes, inputs.image.microns_per_pixel, model.microns_per_pixel, model.map_detail_um, stacklevel=4
    )
    n_models = getattr(model.config, "n_models", 1)
    if uncertainty and n_models < 2:
        raise ValueError(
            "uncertainty=True needs an ensemble: train with n_models=2 or more (the 'cpu' preset's default), "
            f"this model has {n_models}."
        )
    if write and copy:
        raise ValueError("write=True writes into sdata; it cannot be combined with copy=True.")
    if interval is not None:
        check_interval(model, interval, inputs)
    request = _Request(
        model=model,
        inputs=inputs,
        halo=halo,
        n_members=n_models if uncertainty else 1,
        map_name=Keys.map(key_added),
        std_name=Keys.std_map(key_added) if uncertainty else None,
        table_names={name: Keys.table(key_added, name) for name in inputs.shapes},
        table_memory_limit=table_memory_limit,
        interval=interval,
        fingerprint=map_fingerprint(model, map_settings(inputs.image, tile_size, halo, dtype)),
    )
    if not copy:
        request.reuse_map = not overwrite and _map_made_alike(sdata, request, write)
        maps_only = [n for n in request.names if n in sdata.images]
        tables_taken = [n for n in request.table_names.values() if n in sdata.tables]
        if maps_only and not tables_taken and not overwrite:  # a notebook's second call, for other shapes
            raise ValueError(
                f"The map {maps_only[0]!r} exists already, from another model, image or settings (or read from "
                f"disk). To read other shapes out of it: pixnet.tl.aggregate(sdata, {maps_only[0]!r}, shapes) "
                "(sums in the map's units). For predictions of these shapes from a new map: "
                "key_added='another_name', or overwrite=True to replace the map."
            )
        check_names_free(sdata, request.names, overwrite)
    check_on_image(inputs)
    return request


def _map_made_alike(sdata: SpatialData, request: _Request, write: bool) -> bool:
    """Whether this call's map is in ``sdata`` already, made by this model from this image with these settings.

    Then a second call for other shapes (8 µm bins after 2 µm, cells after bins) reads them out of it. Only
    maps made in this session qualify (their fingerprint lives in memory), and for ``write`` only one that is
    in the store; with ``uncertainty`` the members' maps are needed, which the stored maps are not.
    """
    element = sdata.images.get(request.map_name)
    if element is None or request.std_name is not None:
        return False
    if write and not (sdata.path / "images" / request.map_name).exists():
        return False
    return element.attrs.get(Keys.MAP_FINGERPRINT) == request.fingerprint


def _lazy_maps(sdata, request: _Request, tile_size: int, dtype: str, cache, transaction):
    """Step 2: the lazy map elements (the mean map, and the spread over members), the array the read-out sums."""
    model, image = request.model, request.inputs.image
    members = request.n_members > 1
    dense, factor = lazy_dense_map(model, image, tile_size, request.halo, dtype, cache, members=members)
    if transaction is not None and members:  # the members' maps once on disk: the mean, the spread and sums read them
        dense.to_zarr(f"{transaction.scratch}/members.zarr")
        dense = da.from_zarr(f"{transaction.scratch}/members.zarr")
    transformations = _map_transformations(sdata, image.name, _levels_ratio(sdata, image) / factor)
    maps = {request.map_name: dense}
    if members:
        stacked = dense.reshape(request.n_members, len(model.channels), *dense.shape[1:])
        maps = {
            request.map_name: stacked.mean(axis=0).astype(dtype),
            request.std_name: stacked.std(axis=0).astype(dtype),
        }
    elements = {
        name: Image2DModel.parse(
            values, dims=("c", "y", "x"), c_coords=list(model.channels), transformations=transformations
        )
        for name, values in maps.items()
    }
    elements[request.map_name].attrs[Keys.MAP_FINGERPRINT] = request.fingerprint
    return elements, dense, factor


def _stage_maps(transaction, elements: dict, dense, uncertainty: bool):
    """Step 3 (``write``): the maps written to the store first; the read-out then sums the written map."""
    for name, element in elements.items():
        staged = transaction.stage("images", name, element).data
        if not uncertainty:
            dense = staged  # aggregation must not run the model again
    return dense


def _shape_table(sdata, request: _Request, resolved, dense, factor, params, transaction, progress):
    """Step 4: one shape set's sums of the map, in the model's units, as a table annotating the shapes."""
    model, write = request.model, transaction is not None
    spans, _, area_px = resolved_spans(resolved, factor)
    inside = inside_fraction(spans, len(resolved), *dense.shape[1:])
    if (inside < 1).any():
        logger.warning(
            "%d of %d shapes of %r lie partly or wholly outside the image: their sums and area_um2 count only "
            "the part inside (obs['fraction_inside'])",
            int((inside < 1).sum()),
            len(resolved),
            resolved.name,
        )
    uns = provenance("predict", params, model)
    if request.std_name is not None:
        uns[Keys.STD] = "standard deviation over the ensemble's members of each shape's prediction"
    channels, out = dense.shape[0], None
    if write and len(resolved) * channels * 8 > request.table_memory_limit:
        # sums accumulate on disk in the transaction's scratch folder, which lives until the tables are written
        scratch = tempfile.mkdtemp(prefix="sums-", dir=transaction.scratch)
        rows = max(1, min(len(resolved), 2**20 // max(channels, 1)))
        out = zarr.create_array(
            f"{scratch}/sums.zarr",
            shape=(len(resolved), channels),
            chunks=(rows, channels),
            dtype="float64",
            fill_value=0.0,
        )
    sums = aggregate_spans(dense, spans, len(resolved), progress=progress, out=out)
    del spans
    area_um2 = area_px * inside * model.microns_per_pixel**2
    counts = getattr(model.config, "map_units", "normalized") == "counts"
    read_out = functools.partial(_read_out, model.normalization, counts, request.n_members)
    parts = ("mean", "std") if request.std_name is not None else ("mean",)
    if out is None:
        values, *spread = (read_out(sums, area_um2, part) for part in parts)
    else:
        blocks = da.from_zarr(out)
        areas = da.from_array(area_um2[:, None], chunks=(blocks.chunks[0], 1))
        chunks = (blocks.chunks[0], (len(model.genes),))
        values, *spread = (
            da.map_blocks(read_out, blocks, areas, part, chunks=chunks, dtype=np.float64) for part in parts
        )
    layers = {Keys.STD: spread[0]} if spread else {}
    layers |= interval_layers(model, values, request.interval) if request.interval is not None else {}
    table = shape_table(sdata, resolved, values, model.genes, uns, area_um2, inside, layers or None)
    add_reliability(table, model)
    return table


def _read_out(normalization, counts: bool, n_models: int, sums: np.ndarray, area_um2, part: str) -> np.ndarray:
    """Per-shape sums of the map (``n_models`` members' channels side by side) in the model's target units.

    ``counts``: the map holds expected counts and a total channel, and each shape is normalised from its sums
    (its area ``area_um2`` for area-scaled units); else the sums are the values before the transform.
    ``part="mean"``: the ensemble's prediction (from the mean of the members' sums, which is the sum of the mean
    map); ``"std"``: the standard deviation over the members of their own predictions.
    """
    members = sums.reshape(len(sums), n_models, -1)
    area_um2 = np.ravel(area_um2)

    def units(channel_sums):
        return (
            normalization.from_count_sums(channel_sums, area_um2) if counts else normalization.transform(channel_sums)
        )

    if part == "mean":
        return units(members.mean(axis=1))
    return np.stack([units(members[:, m]) for m in range(n_models)], axis=1).std(axis=1)


def _drop(sdata: SpatialData, names: list[str]) -> None:
    """Remove in-memory elements (only; files on disk are handled by the store writer)."""
    for name in names:
        for container in (sdata.images, sdata.tables):
            if name in container:
                del container[name]


def _levels_ratio(sdata: SpatialData, image) -> float:
    """Level-0 pixels per pixel of the resolved level."""
    levels = pyramid_levels(sdata.images[image.name])
    return levels[0].sizes["x"] / levels[image.level].sizes["x"]


@releases_threads
def aggregate(
    sdata: SpatialData,
    image: str,
    shapes: str | list[str],
    *,
    agg: str = "sum",
    key_added: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    copy: bool = False,
) -> dict | None:
    """Aggregate any image element (e.g. a dense map) over shapes, streaming chunk by chunk.

    Parameters
    ----------
    sdata
        The SpatialData object.
    image
        Image element to aggregate (all channels; level 0 of a pyramid).
    shapes
        Shape set(s) (names or bin aliases); circles, squares and polygons.
    agg
        ``"sum"`` over the pixels whose centres lie inside each shape, or their ``"mean"``.
    key_added
        Tables are named ``{key_added}_{shapes}`` (default ``{image}_{agg}``).
    overwrite
        Replace existing tables.
    progress
        Show a progress bar; ``None``: ``pixnet.settings.progress``.
    copy
        Return the tables (in a SpatialData) instead of adding them to ``sdata``.

    Returns
    -------
    ``None``, or with ``copy=True`` a :class:`~spatialdata.SpatialData` of the new tables (and the shapes they
    annotate).

    Examples
    --------
    With ``sdata`` as after predict's example (the map ``pixnet_map`` of a model trained on 8 µm bins), the map's
    sums over the 8 and 16 µm bins:

    >>> import pixnet
    >>> pixnet.tl.aggregate(sdata, "pixnet_map", ["bins_8um", "bins_16um"], progress=False)
    >>> sdata["pixnet_map_sum_synthetic_square_008um"].n_obs, sdata["pixnet_map_sum_synthetic_square_016um"].n_obs
    (52, 13)

    """
    progress = settings.progress_for(progress)
    shape_list = [shapes] if isinstance(shapes, str) else list(shapes)
    inputs = resolve_inputs(sdata, image, shape_list, level=0, rgb=False, require_pixel_size=False)
    prefix = key_added or f"{image}_{agg}"
    names = {name: Keys.table(prefix, name) for name in inputs.shapes}
    if not copy:
        check_names_free(sdata, list(names.values()), overwrite)
    data = inputs.image.data
    tables = {}
    for name, resolved in inputs.shapes.items():
        spans, _, _ = resolved_spans(resolved)
        values = aggregate_spans(data.data, spans, len(resolved), agg=agg, progress=progress)
        uns = provenance("aggregate", {"image": image, "agg": agg})
        tables[names[name]] = shape_table(sdata, resolved, values, [str(c) for c in data.coords["c"].values], uns)
    return add_tables(sdata, tables, copy)
