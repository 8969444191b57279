"""``pixnet.tl.parent_baseline``: what a Visium HD user has without a model, each bin read from its measured parent."""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
from spatialdata import SpatialData

from ..constants import Keys
from ..data.inputs import resolve_inputs
from ..dense.elements import add_tables, check_names_free, provenance, shape_table
from ..pp import spot_totals
from ..utils.registry import recall

logger = logging.getLogger(__name__)

__all__ = ["parent_baseline"]


def parent_baseline(
    sdata: SpatialData,
    shapes: str = "bins_2um",
    parent: str = "bins_8um",
    model=None,
    *,
    key_added: str = "parent",
    overwrite: bool = False,
    copy: bool = False,
) -> SpatialData | None:
    """Predict each bin as its measured parent bin, shared out by area: the bar a model must clear on Visium HD.

    A Visium HD user who wants 2 µm bins without a model reads the 8 µm bins: every 2 µm bin gets the
    composition of the 8 µm bin that contains it (its counts divided by 16). A model trained on the 8 and 16 µm
    bins is worth running only where it beats this against the truth (against the measured 2 µm counts it cannot:
    the parent holds the bin's own counts). The table is in the units of ``model`` (its genes and normalisation),
    so :func:`pixnet.tl.evaluate` compares it with measurements exactly as it compares the model's predictions.

    Parameters
    ----------
    sdata
        The SpatialData object.
    shapes
        The fine square bins to predict (names or aliases such as ``"bins_2um"``).
    parent
        Measured square bins whose grid contains them (e.g. ``"bins_8um"``).
    model
        A trained model (its genes and normalisation); by default the one :func:`pixnet.tl.train` recorded.
    key_added
        The table is named ``{key_added}_{shapes}``.
    overwrite
        Replace an existing table of that name.
    copy
        Return the table (in a SpatialData) instead of adding it to ``sdata``.

    Returns
    -------
    ``None``, or with ``copy=True`` a :class:`~spatialdata.SpatialData` of the new table.

    Examples
    --------
    With ``sdata`` and ``model`` as after predict's example:

    >>> import pixnet
    >>> pixnet.tl.parent_baseline(sdata, "bins_2um", "bins_8um", model)
    >>> baseline = sdata["parent_synthetic_square_002um"]
    >>> baseline.n_obs == sdata["pixnet_synthetic_square_002um"].n_obs, list(baseline.var_names) == model.genes
    (True, True)

    """
    model = model or recall(sdata)
    if model is None:
        raise ValueError("No model given and none was trained on this object; pass model= (its genes and units).")
    inputs = resolve_inputs(sdata, shapes=[shapes, parent])
    fine, coarse = inputs.shapes.values()
    if fine.kind != "square" or coarse.kind != "square":
        raise ValueError(
            f"parent_baseline needs square bins; {fine.name!r} are {fine.kind}s, {coarse.name!r} {coarse.kind}s."
        )
    if coarse.table is None:
        raise ValueError(f"The parent bins {coarse.name!r} have no measured table to read.")
    fine_side, side = 2 * float(np.median(fine.half_size)), 2 * float(np.median(coarse.half_size))
    if fine_side >= side:
        raise ValueError(f"{parent!r} ({side:.3g} px) must be coarser than {shapes!r} ({fine_side:.3g} px).")
    table_name = Keys.table(key_added, fine.name)
    if not copy:
        check_names_free(sdata, [table_name], overwrite)

    measured = coarse.centres[coarse.shape_positions]  # one per parent table row
    origin = (measured - side / 2).min(axis=0)
    cells = np.round((measured - origin) / side - 0.5).astype(np.int64)
    grid = np.full(cells.max(axis=0) + 2, -1, dtype=np.int64)  # (x, y) grid cell -> parent table row
    grid[cells[:, 0], cells[:, 1]] = np.arange(len(cells))
    inside = np.floor((fine.centres - origin) / side).astype(np.int64)
    on_grid = ((inside >= 0) & (inside < np.array(grid.shape))).all(axis=1)
    row = np.full(len(fine), -1, dtype=np.int64)
    row[on_grid] = grid[inside[on_grid, 0], inside[on_grid, 1]]
    if (orphans := int((row < 0).sum())) > 0:
        logger.warning(
            "%d of %d bins of %r lie in no measured %r bin: they get 0", orphans, len(fine), fine.name, coarse.name
        )

    share = (fine_side / side) ** 2
    normalization = model.normalization
    counts = coarse.table[:, model.genes].X
    counts = counts.toarray() if sp.issparse(counts) else np.asarray(counts)
    area_um2 = (fine_side * inputs.image.microns_per_pixel) ** 2
    per_parent = normalization.transform(
        normalization.values(counts.astype(np.float64) * share, spot_totals(coarse.table) * share, area_um2)
    )
    values = np.zeros((len(fine), len(model.genes)))
    values[row >= 0] = per_parent[row[row >= 0]]
    uns = provenance("parent_baseline", {"shapes": fine.name, "parent": coarse.name}, model)
    table = shape_table(sdata, fine, values, model.genes, uns, np.full(len(fine), area_um2))
    return add_tables(sdata, {table_name: table}, copy)
