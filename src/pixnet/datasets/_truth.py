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


def synthetic_truth(folder: str | Path, sdata: SpatialData, shapes: str) -> ad.AnnData:
    """Expected counts (the Poisson rates) of the measured shapes of a :func:`synthetic_visium_hd` sample.

    The generator is re-run from the folder's ``pixnet_synthetic.json``; the image is rendered whole, so this is
    meant for the small samples of tests and benchmarks.

    Parameters
    ----------
    folder
        The sample folder.
    sdata
        The sample read with :func:`spatialdata_io.visium_hd`.
    shapes
        A bin shapes element (or alias such as ``"bins_8um"``) whose measured rows to compute.

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
    inputs = resolve_inputs(sdata, shapes=name)
    resolved = inputs.shapes[name]
    if resolved.table is None or resolved.kind != "square":
        raise ValueError(f"{name!r} must be measured Visium HD bins (squares with a table).")
    tissue = SyntheticTissue(record["seed"], record["n_genes"], record["microns_per_pixel"], record["cell_spacing_um"])
    _, labels = tissue.render(0, 0, *inputs.image.shape)
    rows = resolved.shape_positions
    spans = shape_spans("square", resolved.centres[rows], resolved.half_size[rows])
    histogram = np.zeros((len(rows), tissue.n_labels))
    for label in range(tissue.n_labels):
        cumulative = np.pad(np.cumsum(labels == label, axis=1, dtype=np.int32), ((0, 0), (1, 0)))
        per_span = cumulative[spans.row, spans.x1] - cumulative[spans.row, spans.x0]
        histogram[:, label] = np.bincount(spans.shape, weights=per_span, minlength=len(rows))
    rates = tissue.expected_counts(histogram, record["counts_per_um2"])
    truth = ad.AnnData(rates.astype(np.float32), obs=resolved.table.obs[[]].copy())
    truth.var_names = tissue.gene_names
    return truth
