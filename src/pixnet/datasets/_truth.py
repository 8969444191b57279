"""The noise-free expression of a synthetic sample: what a perfect model would predict."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
from spatialdata import SpatialData

from ..data.inputs import resolve_inputs
from ..data.names import find_shapes
from ..data.spans import shape_spans
from ._tissue import SyntheticTissue

__all__ = ["synthetic_truth"]


def synthetic_truth(folder: str | Path, sdata: SpatialData, shapes: str, image: str | None = None) -> ad.AnnData:
    """Expected counts (the Poisson rates) of the measured shapes of a :func:`synthetic_visium_hd` sample.

    The generator is re-run from the folder's ``pixnet_synthetic.json`` over the bins' extent, so this is meant
    for the small samples of tests and benchmarks; a crop of the sample (``spatialdata.bounding_box_query``)
    works too.

    Parameters
    ----------
    folder
        The sample folder.
    sdata
        The sample read with :func:`spatialdata_io.visium_hd` (or a crop of it).
    shapes
        A bin shapes element (or alias such as ``"bins_8um"``) whose measured rows to compute.
    image
        The full-resolution image element (see :func:`pixnet.resolve_inputs`); found when there is one.

    Returns
    -------
    An AnnData aligned with the measured table's rows (same ``obs_names``), genes as ``var``.

    Examples
    --------
    >>> import pixnet
    >>> folder = pixnet.datasets.synthetic_visium_hd("sample_hd", size_um=128, seed=0, progress=False)
    >>> sdata = pixnet.io.read(folder)
    >>> truth = pixnet.datasets.synthetic_truth(folder, sdata, "bins_8um")
    >>> list(truth.obs_names) == list(sdata["square_008um"].obs_names)
    True

    """
    record = json.loads((Path(folder) / "pixnet_synthetic.json").read_text())
    name = find_shapes(sdata, shapes)
    inputs = resolve_inputs(sdata, image=image, shapes=name, level=0)
    resolved = inputs.shapes[name]
    if resolved.table is None or resolved.kind != "square":
        raise ValueError(f"{name!r} must be measured Visium HD bins (squares with a table).")
    tissue = SyntheticTissue(record["seed"], record["n_genes"], record["microns_per_pixel"], record["cell_spacing_um"])
    rows = resolved.shape_positions
    centres, half = resolved.centres[rows], resolved.half_size[rows]
    # the generator's frame is the whole sample's image; a crop's image is translated within it
    to_cs = inputs.image.pixel_to_cs
    offset = np.array([to_cs[0, 2] / to_cs[0, 0], to_cs[1, 2] / to_cs[1, 1]])
    low = np.floor((centres - half[:, None]).min(axis=0)).astype(int)
    high = np.ceil((centres + half[:, None]).max(axis=0)).astype(int)
    origin = np.round(offset).astype(int) + low
    _, labels = tissue.render(int(origin[1]), int(origin[0]), int(high[1] - low[1]), int(high[0] - low[0]))
    spans = shape_spans("square", centres - low, half)
    histogram = np.zeros((len(rows), tissue.n_labels))
    for label in range(tissue.n_labels):
        cumulative = np.pad(np.cumsum(labels == label, axis=1, dtype=np.int32), ((0, 0), (1, 0)))
        per_span = cumulative[spans.row, spans.x1] - cumulative[spans.row, spans.x0]
        histogram[:, label] = np.bincount(spans.shape, weights=per_span, minlength=len(rows))
    rates = tissue.expected_counts(histogram, record["counts_per_um2"])
    truth = ad.AnnData(rates.astype(np.float32), obs=resolved.table.obs[[]].copy())
    truth.var_names = tissue.gene_names
    return truth
