"""Leave-one-section-out on real sections: PixNet and Image2Gene against ridge, kNN, depth and the training mean.

Usage:
    python benchmarks/real_sections.py                      # HER2ST C2-C5 and MOB1-3, the "cpu" preset
    python benchmarks/real_sections.py --methods pixnet --seeds 0 1 2 --recipe 'counts={"map_units": "counts"}'
    python benchmarks/real_sections.py --preset paper --device cuda   # the paper's recipe, on a GPU
    python benchmarks/real_sections.py --test-section PATH  # train on all sections of PATH's format, test on PATH
    python benchmarks/real_sections.py --test-section HEST_FOLDER --train-dataset her2st  # a HEST-1k sample
    python benchmarks/real_sections.py --methods pixnet pixnet_i2g --baselines ridge --output-stride 1  # auxiliary loss

For each held-out section, every method is trained on the other sections of its dataset with the same genes
(the top ``--n-genes`` by mean over the training sections that the test section also measures), the same
normalisation, working resolution and patch size, and the same frozen encoder weights for the baselines'
features; the settings not given default to ``--preset`` (the library's presets, ``pixnet.tl.PRESETS``). Each is
then evaluated on the held-out spots with ``pixnet.tl.evaluate`` (pooled within the section; constant genes
omitted), with calibration (``std_ratio``: median over genes). Sections of one dataset come from one patient
(HER2ST C) or two animals (MOB; MOB3 is the second animal, trained on MOB1-2: the closest to a new patient), so
this is a within-study generalisation test.

On sparse spots PCC@M mostly measures each spot's sequencing depth, so beside PCC@F/S/M the tables report the
partial PCC given the spot's measured log depth (``partial_pcc_*``; a depth-only predictor scores 0), the first
principal component's share of the predictions' variance (``pc1_share``; 1: every gene is one map with a sign),
the ``depth`` baseline (image features -> the spot's log depth, which every gene then follows) and the
``measured_depth`` oracle (each spot's measured log depth as every gene's prediction).

Learned methods run once per ``--seeds`` value (baselines and the oracle do not depend on it); ``--recipe
NAME=JSON`` adds PixNet variants (``pixnet.tl.train`` options on top of the settings below). Prints every fold,
the per-section means over seeds, each dataset's mean over (fold, seed) with its standard error, and paired
differences (over fold and seed, with the standard error of the mean difference) of every learned method against
ridge and of every recipe against ``pixnet``; ``--out`` writes the runs as CSV. Does not assert.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import pixnet
from pixnet.data.pairing import paired_values
from pixnet.data.tables import measured_table
from pixnet.datasets import her2st, stutility_mob
from pixnet.models.pixnet import MAP_UNITS

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


def train_method(method: str, train: list, genes: list[str], seed: int, args):
    """PixNet, a PixNet recipe (``--recipe``), PixNet with the auxiliary Image2Gene loss or Image2Gene."""
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
        "seed": seed,
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
    options = {**common, "preset": recipe}
    model = pixnet.tl.train(
        train,
        **options,
        decoder_width=args.decoder_width,
        output_stride=args.output_stride,
        epochs=args.epochs,
        batch_size=args.batch_size,
        n_models=args.n_models,
        pcc_weight=args.pcc_weight,
        image2gene_weight=args.image2gene_weight if method == "pixnet_i2g" else 0.0,
        reliability=args.reliability,
        **args.recipes.get(method, {}),
    )
    if args.dihedral_average is not None:
        model.config.dihedral_average = args.dihedral_average
    return model


def run_fold(dataset: str, train: list, test, test_name: str, args) -> list[dict]:
    """Train every method on ``train`` (learned ones once per seed), evaluate on ``test``; one row per run."""
    genes = shared_genes(train, test, args.n_genes)
    spots = f"{test_name}_spots"
    rows, like = [], None
    for seed in args.seeds:
        for method in args.methods:
            started = time.perf_counter()
            model = train_method(method, train, genes, seed, args)
            pixnet.tl.predict(
                test,
                shapes=spots,
                model=model,
                key_added=method,
                tile_size=512,
                uncertainty=getattr(model.config, "n_models", 1) > 1,  # an ensemble's spread, calibrated below
                progress=args.progress,
                overwrite=True,
            )
            rows.append(_evaluated(test, method, spots, seed, time.perf_counter() - started, args))
            if getattr(model.config, "reliability", None):
                rows[-1].update(interval_coverages(test, f"{method}_{spots}", model.config.reliability))
            if getattr(model.config, "map_units_choice", None):
                rows[-1].update(map_units_chosen(model.config.map_units_choice))
            if args.plots is not None and method == args.methods[0] and seed == args.seeds[0]:
                save_plots(test, spots, model, method, args.plots / f"{dataset}_{test_name}")
            if like is None:  # the baselines share the first model's genes, units and encoder
                like = model
    for method in args.baselines:  # deterministic given the pretrained encoder: once per fold
        started = time.perf_counter()
        baseline = pixnet.tl.train_baseline(
            train, method, like=like, k=args.k, seed=args.seeds[0], device=args.device, progress=args.progress
        )
        pixnet.tl.predict_baseline(test, spots, baseline, device=args.device, progress=False, overwrite=True)
        rows.append(_evaluated(test, method, spots, None, time.perf_counter() - started, args))
    test.tables[f"measured_depth_{spots}"] = measured_depth(test, spots, f"{args.methods[0]}_{spots}")
    rows.append(_evaluated(test, "measured_depth", spots, None, 0.0, args))
    for row in rows:
        row.update(dataset=dataset, section=test_name)
    for name in [n for n, t in test.tables.items() if "pixnet" in t.uns]:  # the next fold trains on this section
        del test.tables[name]
    for name in [n for m in args.methods for n in (f"{m}_map", f"{m}_std") if n in test.images]:
        del test.images[name]
    results = "; ".join(
        f"{r['method']}{'' if r['seed'] is None else ' seed ' + str(r['seed'])} PCC@M {r['pcc_m']:.3f} "
        f"partial {r['partial_pcc_m']:.3f} PC1 {r['pc1_share']:.2f}"
        + (f" ({r['map_units']} map)" if isinstance(r.get("map_units"), str) else "")
        + (
            f" intervals 50/90 hold {r['interval_coverage_50']:.2f}/{r['interval_coverage_90']:.2f}, expected PCC "
            f"Spearman {r['reliability_spearman']:.2f}"
            if "interval_coverage_50" in r
            else ""
        )
        for r in rows
    )
    print(f"[{dataset} {test_name}] {results}", flush=True)
    return rows


def _evaluated(test, method: str, spots: str, seed: int | None, seconds: float, args) -> dict:
    """``pixnet.tl.evaluate``'s summary of one method's table, the worst gene and the share of genes below 0."""
    summary = pixnet.tl.evaluate(test, f"{method}_{spots}", constant_genes=args.constant_genes)
    pcc = test[f"{method}_{spots}"].uns["pixnet_evaluation"]["per_gene"]["pcc"].dropna()
    tail = {"pcc_min": pcc.min(), "neg": (pcc < 0).mean()}
    return {"method": method, "seed": seed, **summary.iloc[0], **tail, "seconds": seconds}


def map_units_chosen(record: dict) -> dict:
    """The units ``map_units="auto"`` chose, each one's held-out mean partial PCC and the seconds it took."""
    return {
        "map_units": record["chosen"],
        **{f"held_out_partial_{u}": record[u]["partial_pcc"] for u in MAP_UNITS},
        "choice_seconds": sum(record[u]["seconds"] for u in MAP_UNITS),
    }


def interval_coverages(test, predicted: str, record: dict, levels=(0.5, 0.9)) -> dict:
    """The share of held-out measured values inside each level's conformal interval (mean over genes)."""
    pair = paired_values(test, predicted)
    out = {"reliability_seconds": record["seconds"]}
    for level in levels:
        index = record["levels"].index(level)
        low, high = (np.asarray(record[k][index])[None, :] for k in ("residual_low", "residual_high"))
        residual = pair.measured - pair.predicted
        inside = (residual >= low) & (residual <= high)
        out[f"interval_coverage_{int(level * 100)}"] = float(inside.mean(axis=0).mean())
        out[f"interval_width_{int(level * 100)}"] = float((high - low).mean())
    return out


def measured_depth(test, spots: str, predicted: str):
    """The oracle of depth: each spot's measured log depth as every gene's prediction, in ``predicted``'s units."""
    measured = test.tables[measured_table(test, spots, None, required=True)]
    genes = list(test.tables[predicted].var_names)
    oracle = measured[:, genes].copy()
    depth = np.log1p(pixnet.pp.spot_totals(measured)).astype(np.float32)
    oracle.X = np.repeat(depth[:, None], len(genes), axis=1)
    oracle.uns["pixnet"] = dict(test.tables[predicted].uns["pixnet"])
    return oracle


def save_plots(test, spots: str, model, method: str, prefix: Path) -> None:
    """Pictures of one fold: the best-predicted genes on the tissue, PCC distributions, training curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix.parent.mkdir(parents=True, exist_ok=True)
    per_gene = test[f"{method}_{spots}"].uns["pixnet_evaluation"]["per_gene"]
    best = per_gene.dropna(subset=["pcc"]).nlargest(3, "pcc")["gene"].tolist()
    pixnet.pl.expression(test, best, f"{method}_{spots}", map_name=f"{method}_map", save=f"{prefix}_expression.png")
    pixnet.pl.scatter(test, best[0], f"{method}_{spots}", save=f"{prefix}_scatter.png")
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
        "--reliability",
        action="store_true",
        help="train PixNet with reliability=True: per-gene expected PCC and conformal intervals, measured here",
    )
    parser.add_argument(
        "--methods",
        nargs="*",
        default=["pixnet", "image2gene"],
        choices=["pixnet", "pixnet_i2g", "image2gene"],
        help="learned methods (none: only the --recipe ones); pixnet_i2g is PixNet with the auxiliary Image2Gene "
        "loss (--image2gene-weight)",
    )
    parser.add_argument("--image2gene-weight", type=float, default=0.5)
    parser.add_argument("--i2g-epochs", type=int, default=5)
    parser.add_argument("--i2g-batch-size", type=int, default=64)
    parser.add_argument("--i2g-map-stride", type=int, default=32, help="Image2Gene's dense-map grid, pixels")
    parser.add_argument(
        "--recipe",
        nargs="*",
        default=[],
        metavar="NAME=JSON",
        help='PixNet variants, pixnet.tl.train options on top of the settings: \'counts={"map_units": "counts"}\'',
    )
    parser.add_argument("--baselines", nargs="*", default=["ridge", "knn", "depth", "mean"])
    parser.add_argument("--k", type=int, default=25, help="neighbours of Image2Gene and of the kNN baseline")
    parser.add_argument("--constant-genes", default="omit", choices=["omit", "minus_one"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="learned methods run once per seed")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the table as CSV")
    parser.add_argument("--plots", type=Path, help="write each fold's pictures into this folder")
    args = parser.parse_args()
    args.recipes = {name: json.loads(options) for name, options in (r.split("=", 1) for r in args.recipe)}
    args.methods = [*args.methods, *args.recipes]
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

    runs = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "progress", "out", "plots", "recipe")}
    settings["preset_settings"] = pixnet.tl.PRESETS[args.preset].to_dict()
    print(f"\nsettings: {settings}")
    report(runs, args.methods)
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    if args.out:
        runs.to_csv(args.out, index=False)


COLUMNS = ["pcc_f", "pcc_s", "pcc_m", "partial_pcc_f", "partial_pcc_s", "partial_pcc_m", "pc1_share"]
COLUMNS += ["depth_abs_pcc", "neg", "std_ratio", "seconds"]
COMPARED = ["partial_pcc_m", "pcc_m", "pc1_share"]


def report(runs: pd.DataFrame, learned: list[str]) -> None:
    """Per-section means over seeds; per-dataset means over (fold, seed) with standard errors; paired differences."""
    runs = runs.assign(seed=runs["seed"].astype("Int64"))
    keys = ["dataset", "section", "method"]
    sections = runs.groupby(keys, sort=False)[COLUMNS].mean().reset_index()
    print("\nper held-out section (learned methods: mean over seeds)")
    print(sections.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        "partial_pcc_*: PCC given the spot's measured log depth (first quartile, median, mean over genes); pc1_share: "
        "the first principal component's share of the predictions' variance; depth_abs_pcc: median |PCC(prediction, "
        "depth)|; neg: the share of genes with PCC < 0; std_ratio: median over genes"
    )
    summary = runs.groupby(["dataset", "method"], sort=False)[COMPARED].agg(["mean", "sem"])
    summary[("pc1_share", "worst fold")] = sections.groupby(["dataset", "method"], sort=False)["pc1_share"].max()
    print("\nper dataset: mean over (fold, seed) and its standard error (baselines: over folds)")
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    for method in [m for m in learned if m in set(runs["method"])]:
        for reference in ["ridge", *(["pixnet"] if method != "pixnet" and "pixnet" in learned else [])]:
            print(paired(runs, method, reference))
    calibration = ["coverage_50", "coverage_90", "error_std_spearman"]
    if set(calibration) <= set(runs.columns) and runs[calibration].notna().any().all():
        spread = runs.dropna(subset=calibration).groupby(keys, sort=False)[calibration].mean().reset_index()
        print("\nensemble spread (layers['std']) on the held-out spots: the share of measured values inside the")
        print("predicted 50 % / 90 % intervals, and the mean over genes of Spearman(|error|, std) across spots")
        print(spread.to_string(index=False, float_format="{:.3f}".format))
    trust = ["interval_coverage_50", "interval_coverage_90", "reliability_spearman", "interval_width_90"]
    if set(trust) <= set(runs.columns) and runs[trust].notna().any().all():
        trusted = runs.dropna(subset=trust)
        print("\nreliability=True: conformal intervals from the held-out section of training (the share of measured")
        print("values inside, mean over genes) and Spearman(expected, actual per-gene PCC); per fold, then per dataset")
        per_fold = trusted.groupby(keys, sort=False)[trust].mean().reset_index()
        print(per_fold.to_string(index=False, float_format="{:.3f}".format))
        per_dataset = trusted.groupby(["dataset", "method"], sort=False)[trust].agg(["mean", "sem"])
        print(per_dataset.to_string(float_format="{:.3f}".format))


def paired(runs: pd.DataFrame, method: str, reference: str) -> str:
    """``method`` - ``reference`` per dataset, paired by (fold, seed): mean (standard error of the mean, n)."""
    ours = runs[runs["method"] == method].set_index(["dataset", "section", "seed"])
    theirs = runs[runs["method"] == reference]
    if theirs.empty:
        return f"{method} - {reference}: no {reference} runs"
    if theirs["seed"].isna().all():  # a baseline: one run per fold, paired with every seed's
        theirs = theirs.drop(columns="seed").set_index(["dataset", "section"])
        theirs = theirs.reindex(ours.index.droplevel("seed"))
        theirs.index = ours.index
    else:
        theirs = theirs.set_index(["dataset", "section", "seed"]).reindex(ours.index)
    lines = []
    for dataset in ours.index.unique("dataset"):
        parts = []
        for column in COMPARED:
            diff = (ours.loc[dataset, column] - theirs.loc[dataset, column]).dropna()
            ratio = ours.loc[dataset, column].mean() / theirs.loc[dataset, column].mean()
            parts.append(f"{column} {diff.mean():+.3f} (sem {diff.sem():.3f}, n={len(diff)}, ratio {ratio:.2f}x)")
        lines.append(f"{method} - {reference}, {dataset}: " + "; ".join(parts))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
