"""Which CPU recipe resolves 2 µm bins? Train on the 8 and 16 µm bins of synthetic Visium HD sections, read out 2 µm.

Usage:
    python benchmarks/visium_hd_recipe.py                                   # the library's defaults
    python benchmarks/visium_hd_recipe.py --recipe stride4='{"output_stride": 4}' --seeds 0 1 --sample-seeds 0 1

Each recipe (options of ``pixnet.tl.train`` as JSON, on top of the defaults) is trained on every sample seed x
model seed; its 2 µm predictions are compared with the sample's noise-free truth (PCC@M, std ratio) beside the
baseline a user has without a model: each 2 µm bin gets its measured 8 µm parent's composition (same units).
Training and prediction seconds are per mm² of the capture area. Prints every run, then each recipe's mean and
standard error over runs, and its paired difference from the first recipe (same sample and seed); ``--csv``
writes the runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd

import pixnet
from pixnet.constants import Keys
from pixnet.data.names import find_shapes

TRAIN, READ_OUT = ["bins_8um", "bins_16um"], "bins_2um"


def sample(folder: Path, size_um: float, seed: int):
    """The synthetic sample (written once) and its SpatialData."""
    if not (folder / "pixnet_synthetic.json").exists():
        pixnet.datasets.synthetic_visium_hd(folder, size_um=size_um, seed=seed, overwrite=True, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pixnet.io.read(folder)


def run(folder: Path, size_um: float, sample_seed: int, seed: int, options: dict) -> dict:
    sdata = sample(folder, size_um, sample_seed)
    started = time.perf_counter()
    model = pixnet.tl.train(sdata, shapes=TRAIN, seed=seed, progress=False, **options)
    trained = time.perf_counter()
    pixnet.tl.predict(sdata, shapes=READ_OUT, model=model, progress=False)
    predicted_s = time.perf_counter() - trained
    shapes = find_shapes(sdata, READ_OUT)
    predicted = Keys.table(Keys.PREFIX, shapes)
    truth = pixnet.datasets.synthetic_truth(folder, sdata, shapes)
    ours = pixnet.tl.evaluate(sdata, predicted, truth, key_added=None).iloc[-1]
    pixnet.tl.parent_baseline(sdata, READ_OUT, "bins_8um", model)
    parent = pixnet.tl.evaluate(sdata, Keys.table("parent", shapes), truth, key_added=None).iloc[-1]
    area_mm2 = (size_um / 1000) ** 2
    return {
        "pcc_m": ours.pcc_m,
        "std_ratio": ours.std_ratio,
        "parent_pcc_m": parent.pcc_m,
        "vs_parent": ours.pcc_m / parent.pcc_m,
        "train_s_per_mm2": (trained - started) / area_mm2,
        "predict_s_per_mm2": predicted_s / area_mm2,
        "steps": sum(h.get("train_steps", 0) for h in model.history),
        "model": repr(model),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", default=["defaults={}"], help="NAME=JSON options of tl.train")
    parser.add_argument("--size-um", type=float, default=640.0)
    parser.add_argument("--sample-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "pixnet_hd_recipe")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    recipes = dict(r.split("=", 1) for r in args.recipe)
    rows = []
    for name, options in recipes.items():
        for sample_seed in args.sample_seeds:
            for seed in args.seeds:
                folder = args.folder / f"hd_{args.size_um:g}_{sample_seed}"
                result = run(folder, args.size_um, sample_seed, seed, json.loads(options))
                rows.append({"recipe": name, "sample_seed": sample_seed, "seed": seed, **result})
                shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}
                print(json.dumps(shown), flush=True)
    runs = pd.DataFrame(rows)
    if args.csv:
        runs.to_csv(args.csv, index=False)
    columns = ["pcc_m", "std_ratio", "parent_pcc_m", "vs_parent", "train_s_per_mm2", "predict_s_per_mm2"]
    summary = runs.groupby("recipe", sort=False)[columns].agg(["mean", "sem"])
    print(f"\n{args.size_um:g} µm sections, sample seeds {args.sample_seeds} x seeds {args.seeds}: mean (sem)")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    first = runs[runs.recipe == next(iter(recipes))].set_index(["sample_seed", "seed"]).pcc_m
    for name in list(recipes)[1:]:
        diff = runs[runs.recipe == name].set_index(["sample_seed", "seed"]).pcc_m - first
        print(f"{name} - {next(iter(recipes))}: PCC@M {diff.mean():+.3f} (sem {diff.sem():.3f}, n={len(diff)})")


if __name__ == "__main__":
    main()
