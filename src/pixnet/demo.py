"""``pixnet demo``: the whole workflow on the built-in synthetic Visium HD sample, written to one folder."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .constants import Keys

__all__ = ["run_demo"]

logger = logging.getLogger(__name__)

TRAIN_SHAPES = ["bins_8um", "bins_16um"]
PREDICT_SHAPES = "bins_2um"
PARENT_SHAPES = "bins_8um"


def run_demo(
    out: str | Path,
    *,
    size_um: float = 320.0,
    epochs: int | None = None,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = logger.info,
) -> pd.DataFrame:
    """Build the sample, train on 8/16 µm bins, predict 2 µm bins, evaluate, write a zarr store and figures.

    Training runs the library's defaults (``preset="auto"``: the ``"cpu_fine"`` recipe for bins without a GPU);
    ``epochs`` overrides the recipe's. Each step and the final summary are reported through ``echo`` (the CLI
    passes ``print``).

    Returns
    -------
    The evaluation summary: the 2 µm predictions against the measured 2 µm counts and against the sample's
    noise-free truth, and what a user has without a model (each 2 µm bin read from its measured 8 µm bin) against
    the truth.

    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import datasets, io, pl, tl
    from .data.names import find_shapes

    out = Path(out)
    started = time.perf_counter()
    folder = datasets.synthetic_visium_hd(
        out / "synthetic_visium_hd", size_um=size_um, seed=seed, overwrite=True, progress=progress
    )
    sdata = io.read(folder)
    echo(f"1/4 Sample: {size_um:g} µm Visium HD capture area in {folder}")

    model = tl.train(sdata, shapes=TRAIN_SHAPES, epochs=epochs, seed=seed, progress=progress)
    model.save(out / "model", overwrite=True)
    echo(f"2/4 Trained on the 8 and 16 µm bins: {model!r}; saved to {out / 'model'}")

    tl.predict(sdata, shapes=PREDICT_SHAPES, model=model, progress=progress)
    shapes = find_shapes(sdata, PREDICT_SHAPES)
    predicted = Keys.table(Keys.PREFIX, shapes)
    truth = datasets.synthetic_truth(folder, sdata, shapes)
    tl.parent_baseline(sdata, PREDICT_SHAPES, PARENT_SHAPES, model)
    summary = pd.concat(
        {
            "measured 2 µm counts": tl.evaluate(sdata, predicted),  # also stored with the table
            "noise-free 2 µm truth": tl.evaluate(sdata, predicted, truth, key_added=None),
            "no model: 8 µm parent vs truth": tl.evaluate(sdata, Keys.table("parent", shapes), truth, key_added=None),
        }
    ).droplevel(1)
    echo(f"3/4 Predicted the 2 µm bins ({sdata.tables[predicted].n_obs} bins) and the dense map 'pixnet_map'")

    store = out / "pixnet_demo.zarr"
    staged = out / ".pixnet_demo.zarr.partial"  # a failed write leaves an earlier store as it was
    shutil.rmtree(staged, ignore_errors=True)
    sdata.write(staged)
    shutil.rmtree(store, ignore_errors=True)
    staged.rename(store)
    per_gene = sdata.tables[predicted].uns[Keys.EVALUATION]["per_gene"]
    best = per_gene.dropna(subset=["pcc"]).nlargest(3, "pcc")["gene"].tolist()
    figures = {
        "expression": out / "predicted_vs_measured.png",
        "pcc": out / "pcc_per_gene.png",
        "training": out / "training_curves.png",
    }
    pl.expression(sdata, best, predicted, map_name=Keys.map(Keys.PREFIX), save=figures["expression"])
    pl.pcc_distribution({"PixNet (2 µm bins)": sdata.tables[predicted]}, save=figures["pcc"])
    pl.training_curves(model, save=figures["training"])
    plt.close("all")
    echo(f"4/4 Wrote the SpatialData store {store} and figures:")
    for path in figures.values():
        echo(f"    {path}")
    columns = ["pcc_f", "pcc_s", "pcc_m", "mse", "mae", "std_ratio", "slope", "n_spots", "n_genes"]
    echo("\nPredicted 2 µm bins against:")
    echo(summary[columns].to_string(float_format=lambda v: f"{v:.3f}"))
    echo(f"\nDone in {time.perf_counter() - started:.0f} s.")
    return summary
