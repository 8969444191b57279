"""Leave-one-section-out on real sections: PixNet and Image2Gene against ridge, kNN and the training mean.

Usage:
    python benchmarks/real_sections.py                      # HER2ST C2-C5 and MOB1-3, the "cpu" preset
    python benchmarks/real_sections.py --preset paper --device cuda   # the paper's recipe, on a GPU
    python benchmarks/real_sections.py --test-section PATH  # train on all sections of PATH's format, test on PATH
    python benchmarks/real_sections.py --test-section HEST_FOLDER --train-dataset her2st  # a HEST-1k sample
    python benchmarks/real_sections.py --methods pixnet pixnet_i2g --baselines ridge --output-stride 1  # auxiliary loss

For each held-out section, every method is trained on the other sections of its dataset with the same genes
(the top ``--n-genes`` by mean over the training sections that the test section also measures), the same
normalisation, working resolution and patch size, and the same frozen encoder weights for the baselines'
features; the settings not given default to ``--preset`` (the library's presets, ``pixnet.tl.PRESETS``). Each is
then evaluated on the held-out spots with ``pixnet.tl.evaluate`` (pooled within the section; constant genes
omitted), with calibration (``std_ratio``, ``slope``: medians over genes). Sections of one dataset come from
one patient (HER2ST C) or two animals (MOB), so this is a within-study generalisation test. Prints one table
(method x section: PCC@F/S/M, the worst gene and the share of negative genes, MSE, MAE, calibration, spots, wall
time), the per-dataset mean and PixNet's ratio to ridge; does not assert.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import pixnet
from pixnet.datasets import her2st, stutility_mob

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FORMATS = {  # dataset: (reader, folder, file pattern that names a section)
    "her2st": (her2st, "her2st", pixnet.io.SECTION_FORMATS["her2st"]),
    "mob": (stutility_mob, "stutility_mob", pixnet.io.SECTION_FORMATS["stutility_mob"]),
}


def detect_format(folder: Path, train_dataset: str | None) -> tuple[str, str, object]:
    """(training dataset, section name, reader) of a single-section folder: HER2ST, STUtility MOB or HEST-1k."""
    kind, names = pixnet.io.describe_folder(folder)
    if kind not in (*pixnet.io.SECTION_FORMATS, "hest") or len(names) != 1:
        raise SystemExit(f"{folder} holds no single section in the HER2ST, STUtility MOB or HEST-1k format.")
    if kind == "hest":
        if train_dataset is None:
            raise SystemExit(f"{folder} is a HEST-1k sample: say which sections train with --train-dataset.")
        return train_dataset, names[0], pixnet.datasets.hest
    dataset = {"her2st": "her2st", "stutility_mob": "mob"}[kind]
    return train_dataset or dataset, names[0], FORMATS[dataset][0]


def shared_genes(train: list, test, n_genes: int) -> list[str]:
    """The top genes by mean over the training sections, among those the test section measures."""
    tables = [t for s in train for t in s.tables.values() if "pixnet" not in t.uns]  # measured tables only
    ranked = pixnet.pp.select_genes(tables, n_top=min(t.n_vars for t in tables))["genes"]
    measured = set(next(iter(test.tables.values())).var_names)
    return [g for g in ranked if g in measured][:n_genes]


def train_method(method: str, train: list, genes: list[str], args):
    """PixNet, PixNet with the auxiliary Image2Gene loss (``pixnet_i2g``) or Image2Gene, with the shared settings."""
    common = {
        "preset": args.preset,
        "genes": genes,
        "microns_per_pixel": args.microns_per_pixel,
        "patch_size": args.patch_size,
        "encoder": args.encoder,
        "encoder_weights": args.encoder_weights,
        "freeze_encoder": args.freeze_encoder,
        "learning_rate": args.learning_rate,
        "validation": None if args.validation == "none" else args.validation,
        "augment": not args.no_augment,
        "seed": args.seed,
        "device": args.device,
        "progress": args.progress,
    }
    if method == "image2gene":
        return pixnet.tl.train(
            train,
            method="image2gene",
            epochs=args.i2g_epochs,
            batch_size=args.i2g_batch_size,
            k=args.k,
            map_stride=args.i2g_map_stride,
            **common,
        )
    recipe = pixnet.tl.PRESETS[args.preset].updated(lr_schedule=args.lr_schedule, average_epochs=args.average_epochs)
    model = pixnet.tl.train(
        train,
        **{**common, "preset": recipe},
        decoder_width=args.decoder_width,
        output_stride=args.output_stride,
        epochs=args.epochs,
        batch_size=args.batch_size,
        n_models=args.n_models,
        pcc_weight=args.pcc_weight,
        image2gene_weight=args.image2gene_weight if method == "pixnet_i2g" else 0.0,
    )
    if args.dihedral_average is not None:
        model.config.dihedral_average = args.dihedral_average
    return model


def run_fold(dataset: str, train: list, test, test_name: str, args) -> list[dict]:
    """Train every method on ``train``, evaluate on ``test``; one result row per method."""
    genes = shared_genes(train, test, args.n_genes)
    spots = f"{test_name}_spots"
    rows, timings, models = [], {}, {}
    for method in args.methods:
        started = time.perf_counter()
        models[method] = train_method(method, train, genes, args)
        pixnet.tl.predict(
            test,
            shapes=spots,
            model=models[method],
            key_added=method,
            tile_size=512,
            uncertainty=getattr(models[method].config, "n_models", 1) > 1,  # an ensemble's spread, calibrated below
            progress=args.progress,
            overwrite=True,
        )
        timings[method] = time.perf_counter() - started
    like = next(iter(models.values()))
    for method in args.baselines:
        started = time.perf_counter()
        baseline = pixnet.tl.train_baseline(
            train, method, like=like, k=args.k, seed=args.seed, device=args.device, progress=args.progress
        )
        pixnet.tl.predict_baseline(test, spots, baseline, device=args.device, progress=False, overwrite=True)
        timings[method] = time.perf_counter() - started
    for method, seconds in timings.items():
        summary = pixnet.tl.evaluate(test, f"{method}_{spots}", constant_genes=args.constant_genes)
        pcc = test[f"{method}_{spots}"].uns["pixnet_evaluation"]["per_gene"]["pcc"].dropna()
        tail = {"pcc_min": pcc.min(), "neg": (pcc < 0).mean()}  # the worst gene, the share of genes below 0
        rows.append(
            {"dataset": dataset, "section": test_name, "method": method, **summary.iloc[0], **tail, "seconds": seconds}
        )
    if args.plots is not None and "pixnet" in models:
        save_plots(test, spots, models["pixnet"], list(timings), args.plots / f"{dataset}_{test_name}")
    for name in [n for n, t in test.tables.items() if "pixnet" in t.uns]:  # the next fold trains on this section
        del test.tables[name]
    for name in [n for m in models for n in (f"{m}_map", f"{m}_std") if n in test.images]:
        del test.images[name]
    epochs = ", ".join(f"{m} {model.epochs_trained} epochs" for m, model in models.items())
    results = ", ".join(f"{r['method']} PCC@M {r['pcc_m']:.3f} ({r['seconds']:.0f} s)" for r in rows)
    print(f"[{dataset} {test_name}] {epochs}; {results}", flush=True)
    return rows


def save_plots(test, spots: str, model, methods: list[str], prefix: Path) -> None:
    """Pictures of one fold: the best-predicted genes on the tissue, PCC distributions, training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix.parent.mkdir(parents=True, exist_ok=True)
    per_gene = test[f"pixnet_{spots}"].uns["pixnet_evaluation"]["per_gene"]
    best = per_gene.dropna(subset=["pcc"]).nlargest(3, "pcc")["gene"].tolist()
    pixnet.pl.expression(test, best, f"pixnet_{spots}", map_name="pixnet_map", save=f"{prefix}_expression.png")
    pixnet.pl.pcc_distribution({m: test[f"{m}_{spots}"] for m in methods}, save=f"{prefix}_pcc.png")
    pixnet.pl.scatter(test, best[0], f"pixnet_{spots}", save=f"{prefix}_scatter.png")
    pixnet.pl.training_curves(model, save=f"{prefix}_curves.png")
    plt.close("all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="folder holding her2st/ and stutility_mob/")
    parser.add_argument("--datasets", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--sections", nargs="+", help="hold out only these sections (default: each in turn)")
    parser.add_argument(
        "--test-section", type=Path, help="a folder with one section: HER2ST, STUtility MOB or a HEST-1k sample"
    )
    parser.add_argument(
        "--train-dataset", choices=list(FORMATS), help="with --test-section: train on these sections (default: its own)"
    )
    parser.add_argument("--n-genes", type=int, default=250)
    parser.add_argument(
        "--preset", default="cpu", choices=["cpu", "paper"], help="the recipe the settings below default to"
    )
    parser.add_argument("--microns-per-pixel", type=float, help="default: the preset's")
    parser.add_argument("--patch-size", type=int, help="default: the preset's")
    parser.add_argument("--encoder", help="default: the preset's")
    parser.add_argument("--encoder-weights", help="default: the preset's")
    parser.add_argument("--decoder-width", type=int, help="default: the preset's")
    parser.add_argument("--output-stride", type=int, choices=[1, 2, 4], help="default: the preset's")
    parser.add_argument("--freeze-encoder", action=argparse.BooleanOptionalAction, help="default: the preset's")
    parser.add_argument("--epochs", type=int, help="PixNet's; default: the preset's")
    parser.add_argument("--batch-size", type=int, help="PixNet's, patches; default: the preset's")
    parser.add_argument("--n-models", type=int, help="PixNet's ensemble of decoders; default: the preset's")
    parser.add_argument("--learning-rate", type=float, help="default: the preset's")
    parser.add_argument("--lr-schedule", choices=["constant", "cosine"], help="PixNet's; default: the preset's")
    parser.add_argument(
        "--average-epochs", type=int, help="PixNet keeps the mean weights of the last N epochs (default: the preset's)"
    )
    parser.add_argument("--pcc-weight", type=float, help="PixNet's lambda of (1 - PCC); default: the preset's")
    parser.add_argument(
        "--dihedral-average",
        action=argparse.BooleanOptionalAction,
        help="PixNet predicts each tile in 8 rotations / flips and averages (default: the preset's)",
    )
    parser.add_argument("--validation", choices=["region", "none"], default="none")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["pixnet", "image2gene"],
        choices=["pixnet", "pixnet_i2g", "image2gene"],
        help="learned methods; pixnet_i2g is PixNet with the auxiliary Image2Gene loss (--image2gene-weight)",
    )
    parser.add_argument("--image2gene-weight", type=float, default=0.5)
    parser.add_argument("--i2g-epochs", type=int, default=5)
    parser.add_argument("--i2g-batch-size", type=int, default=64)
    parser.add_argument("--i2g-map-stride", type=int, default=32, help="Image2Gene's dense-map grid, pixels")
    parser.add_argument("--baselines", nargs="*", default=["ridge", "knn", "mean"])
    parser.add_argument("--k", type=int, default=25, help="neighbours of Image2Gene and of the kNN baseline")
    parser.add_argument("--constant-genes", default="omit", choices=["omit", "minus_one"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    parser.add_argument("--plots", type=Path, help="write each fold's pictures into this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)

    started = time.perf_counter()
    rows = []
    if args.test_section is not None:
        dataset, name, test_reader = detect_format(args.test_section, args.train_dataset)
        reader, folder, pattern = FORMATS[dataset]
        names = pixnet.io.section_names(args.data / folder, pattern)
        train = [reader(s, args.data / folder) for s in names if s != name]
        rows += run_fold(dataset, train, test_reader(name, args.test_section), name, args)
    else:
        for dataset in args.datasets:
            reader, folder, pattern = FORMATS[dataset]
            names = pixnet.io.section_names(args.data / folder, pattern)
            if len(names) < 2:
                raise SystemExit(f"{args.data / folder} needs at least two sections, found {names}.")
            sections = {n: reader(n, args.data / folder) for n in names}
            for name in args.sections or names:
                if name in sections:
                    train = [s for n, s in sections.items() if n != name]
                    rows += run_fold(dataset, train, sections[name], name, args)

    table = pd.DataFrame(rows)
    means = table.groupby(["dataset", "method"], sort=False).mean(numeric_only=True).reset_index()
    means["section"] = "mean"
    table = pd.concat([table, means], ignore_index=True)
    table = table.sort_values(["dataset", "section", "method"], key=lambda c: c.map(_order), kind="stable")
    columns = ["dataset", "section", "method", "pcc_f", "pcc_s", "pcc_m", "pcc_min", "neg", "mse", "mae"]
    columns += ["std_ratio", "slope", "n_spots", "seconds"]
    pd.set_option("display.width", 200)
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "progress", "out", "plots")}
    settings["preset_settings"] = pixnet.tl.PRESETS[args.preset].to_dict()
    print(f"\nsettings: {settings}")
    print(table[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("pcc_min: the worst gene's PCC; neg: the share of genes with PCC < 0; std_ratio, slope: medians over genes")
    calibration = ["coverage_50", "coverage_90", "error_std_spearman"]
    if set(calibration) <= set(table.columns):
        spread = table.dropna(subset=calibration)
        print("\nensemble spread (layers['std']) on the held-out spots: the share of measured values inside the")
        print("predicted 50 % / 90 % intervals, and the mean over genes of Spearman(|error|, std) across spots")
        print(
            spread[["dataset", "section", "method", *calibration]].to_string(index=False, float_format="{:.3f}".format)
        )
    for method in args.methods:
        wins, folds = _wins(table, method)
        ratios = _ratios(table, method)
        print(f"{method} PCC@M above ridge on {wins} of {folds} held-out sections; PCC@M / ridge's: {ratios}")
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.out:
        table.to_csv(args.out, index=False)


def _order(value):
    return (1, value) if value == "mean" else (0, value)


def _ratios(table: pd.DataFrame, method: str) -> str:
    """PCC@M of ``method`` over ridge's, on each dataset's mean."""
    means = table[table["section"] == "mean"].pivot_table(index="dataset", columns="method", values="pcc_m")
    if "ridge" not in means:
        return "no ridge"
    return ", ".join(f"{d} {means.loc[d, method] / means.loc[d, 'ridge']:.2f}x" for d in means.index)


def _wins(table: pd.DataFrame, method: str) -> tuple[int, int]:
    held_out = table[table["section"] != "mean"].pivot_table(
        index=["dataset", "section"], columns="method", values="pcc_m"
    )
    if "ridge" not in held_out:
        return 0, 0
    return int(np.sum(held_out[method] > held_out["ridge"])), len(held_out)


if __name__ == "__main__":
    main()
