"""The ``pixnet`` command line: train, predict, evaluate and a built-in demo."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import warnings
from pathlib import Path

from .constants import Keys

logger = logging.getLogger("pixnet")

EPILOG = (
    "INPUT is a SpatialData zarr store, a Space Ranger output folder (Visium or Visium HD), a HEST-1k folder "
    "(wsis/, st/, metadata/) or a folder of legacy ST sections (HER2ST / STUtility layout)."
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _resolve_kwargs(args: argparse.Namespace) -> dict:
    """The image's own pixel size and the spots' diameter, where the input does not record them."""
    given = {"microns_per_pixel": args.image_microns_per_pixel, "spot_diameter_um": args.spot_diameter_um}
    return {k: v for k, v in given.items() if v is not None}


def _read(path: Path, section: str | None = None):
    from . import io

    return io.read(path, section)


def _train(args: argparse.Namespace) -> None:
    from . import tl
    from .utils.model_files import check_model_target

    check_model_target(args.out, args.overwrite)  # before training, not after
    sections = [_read(path, section) for path in args.inputs for section in _sections_of(path, args.section)]
    model = tl.train(
        sections,
        shapes=args.shapes,
        image=args.image,
        table=args.table,
        n_top_genes=args.n_genes,
        method=args.method,
        preset=args.preset,
        seed=args.seed,
        device=args.device,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        progress=not args.quiet,
        resolve_kwargs=_resolve_kwargs(args),
        reliability=args.reliability,
        **{name: getattr(args, name) for name in _train_option_names() if hasattr(args, name)},
    )
    model.save(args.out, overwrite=args.overwrite)
    if not model.history:
        print(f"Saved {model!r}, untrained (no epochs), to {args.out}")
        return
    last = model.history[-1]
    scores = ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch" and isinstance(v, float))
    print(f"Trained {model!r}\n  last epoch: {scores}\n  saved to {args.out}")


def _sections_of(path: Path, section: str | None) -> list[str | None]:
    """Every section of a legacy ST or HEST-1k folder (or the chosen one); one ``None`` for other inputs."""
    from .io import SECTION_FORMATS, describe_folder

    kind, names = describe_folder(path)
    if kind not in (*SECTION_FORMATS, "hest") or section is not None:
        return [section]
    return list(names)


def _predict(args: argparse.Namespace) -> None:
    import spatialdata

    from . import tl
    from .io import describe_folder
    from .models.pixnet import load_model
    from .utils.device import resolve_device

    model = load_model(args.model, device=resolve_device(args.device))
    kind, _ = describe_folder(args.input)
    if kind == "zarr" and args.out is None:
        store = args.input
    elif args.out is None:
        raise ValueError(f"{args.input} is not a zarr store; give --out STORE.zarr to write the sample and results.")
    else:
        if args.out.exists():
            raise FileExistsError(f"{args.out} exists; choose another --out (or predict into it as INPUT).")
        store = args.out
    created = store != args.input
    try:
        if created:
            _read(args.input, args.section).write(store)
        sdata = spatialdata.read_zarr(store)
        tl.predict(
            sdata,
            shapes=args.shapes,
            model=model,
            image=args.image,
            key_added=args.key_added,
            tile_size=args.tile_size,
            dtype=args.dtype,
            overwrite=args.overwrite,
            write=True,
            interval=args.interval,
            progress=not args.quiet,
            resolve_kwargs=_resolve_kwargs(args),
        )
    except BaseException:
        if created:  # the store is this command's: a failed run leaves nothing behind
            shutil.rmtree(store, ignore_errors=True)
        raise
    written = [Keys.map(args.key_added), *(n for n in sdata.tables if n.startswith(f"{args.key_added}_"))]
    print(f"Wrote {', '.join(written)} to {store}")


def _evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    from . import tl

    sdata = _read(args.input)
    summary = tl.evaluate(
        sdata,
        args.predicted,
        args.measured,
        mode=args.mode,
        section_key=args.section_key,
        constant_genes=args.constant_genes,
    )
    if args.per_gene is not None:
        sdata.tables[args.predicted].uns[Keys.EVALUATION]["per_gene"].to_csv(args.per_gene, index=False)
    with pd.option_context("display.width", 160):
        print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.out is not None:
        summary.to_csv(args.out)
        print(f"Wrote {args.out}")


def _demo(args: argparse.Namespace) -> None:
    from .demo import run_demo

    run_demo(args.out, size_um=args.size_um, epochs=args.epochs, seed=args.seed, progress=not args.quiet, echo=print)


def _train_option_classes() -> tuple:
    from .models import Image2GeneParams, PixNetParams
    from .training.plan import TrainingPlan

    return (("method options", (PixNetParams, Image2GeneParams)), ("training plan", (TrainingPlan,)))


def _train_option_names() -> list[str]:
    return [name for _, classes in _train_option_classes() for cls in classes for name in cls.field_names()]


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    """The train options: one per field of the method params and the training plan."""
    from .training.presets import PRESETS
    from .utils.cli_options import add_options

    seen = {"method"}
    for title, classes in _train_option_classes():
        add_options(parser, title, classes, set(PRESETS["cpu"].to_dict()), seen)


def _add_input_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image-microns-per-pixel",
        type=_positive_float,
        help="pixel size of the input image's full-resolution level, when the input does not record it",
    )
    parser.add_argument(
        "--spot-diameter-um", type=_positive_float, help="diameter of the input's spots, e.g. 55 for Visium"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixnet`` command."""
    parser = argparse.ArgumentParser(
        prog="pixnet",
        description="Dense spatial gene expression prediction from H&E images, for SpatialData. Train a model on "
        "a slide with measured spots or bins, predict a per-pixel expression map and read it out for any shapes "
        "(bins, spots, cells), and compare predictions with measurements.",
        epilog="Run 'pixnet demo' to see the whole workflow on a built-in synthetic Visium HD sample.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="the whole workflow on a built-in synthetic Visium HD sample (about 3 minutes on 2 CPU cores)",
        description="Build a synthetic Visium HD sample, train a small model on its 8 and 16 µm bins, predict the "
        "2 µm bins, compare them with the held-back 2 µm counts, and write a SpatialData zarr store and PNG "
        "figures.",
    )
    demo.add_argument("--out", type=Path, default=Path("pixnet_demo"), help="output folder (default: %(default)s)")
    demo.add_argument(
        "--size-um", type=_positive_float, default=320.0, help="side of the capture area in µm (default: 320)"
    )
    demo.add_argument("--epochs", type=_positive_int, default=None, help="training epochs (default: the recipe's)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train a model on samples with measured expression",
        description="Train PixNet (or Image2Gene) on one or more samples: the model learns the map from H&E to "
        "the measured expression of the given shapes (spots or bins) and is saved as a folder (safetensors + JSON).",
        epilog=EPILOG,
    )
    train.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="sample(s) to train on")
    train.add_argument("--out", type=Path, required=True, help="folder to save the model in")
    train.add_argument(
        "--method", default="pixnet", choices=["pixnet", "image2gene"], help="the model to train (default: pixnet)"
    )
    train.add_argument("--shapes", nargs="+", help="measured shapes, e.g. bins_8um bins_16um (default: found)")
    train.add_argument("--image", help="the H&E image element (default: found)")
    train.add_argument("--table", help="the measured table (default: the one annotating the shapes)")
    train.add_argument("--section", help="one section of a HEST-1k or legacy ST folder (default: all)")
    train.add_argument("--n-genes", type=_positive_int, default=250, help="top genes by mean expression (default: 250)")
    train.add_argument(
        "--preset",
        default="auto",
        choices=["auto", "cpu", "cpu_fine", "paper"],
        help="the recipe the options below default to: cpu (spots: frozen ImageNet EfficientNet-Lite0 at 4 µm/px), "
        "cpu_fine (Visium HD bins and cells: the same encoder, a map at 1 µm/px), paper (histology ResNet18 "
        "fine-tuned at 1 µm/px, for a GPU) or auto (paper with a GPU, else cpu_fine for shapes of 20 µm or less, "
        "else cpu; default)",
    )
    _add_input_scale(train)
    _add_train_options(train)
    train.add_argument("--seed", type=int, default=0, help="default: 0")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    train.add_argument("--checkpoint-dir", type=Path, help="write a checkpoint after every epoch into this folder")
    train.add_argument("--resume", type=Path, help="continue the run checkpointed in this folder")
    train.add_argument(
        "--reliability",
        action="store_true",
        help="also estimate each gene's expected PCC and calibrate intervals on a held-out section (about half "
        "a training more; a model whose --map-units were chosen on held-out tissue, the cpu preset's auto, has "
        "them already)",
    )
    train.set_defaults(func=_train)

    predict = commands.add_parser(
        "predict",
        parents=[common],
        help="predict the dense map and read it out for shapes",
        description="Predict a sample's dense expression map (an image element, channels = genes) and its "
        "readout for the given shapes (tables), and write them into a zarr store: INPUT itself when it is a "
        "store, else --out (the sample is written there first).",
        epilog=EPILOG,
    )
    predict.add_argument("input", type=Path, metavar="INPUT", help="the sample")
    predict.add_argument("--model", type=Path, required=True, help="a folder written by 'pixnet train'")
    predict.add_argument("--shapes", nargs="*", help="shapes to read the map out for, e.g. bins_2um")
    predict.add_argument("--out", type=Path, help="zarr store to create (required when INPUT is not one)")
    predict.add_argument("--image", help="the H&E image element (default: found)")
    predict.add_argument("--section", help="the section, for a folder of several legacy ST sections")
    _add_input_scale(predict)
    predict.add_argument("--key-added", default="pixnet", help="prefix of the new elements (default: pixnet)")
    predict.add_argument("--tile-size", type=_positive_int, default=512, help="map chunk side, pixels (default: 512)")
    predict.add_argument("--dtype", default="float32", choices=["float32", "float16"], help="map dtype")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default: auto)")
    predict.add_argument("--overwrite", action="store_true", help="replace elements of the same names")
    predict.add_argument(
        "--interval",
        type=float,
        help="add layers lower/upper: a conformal interval at this level, e.g. 0.9 (a model trained with "
        "--reliability)",
    )
    predict.set_defaults(func=_predict)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="compare a predicted table with measured counts",
        description="Per-gene PCC, MSE and MAE of a predicted table against the measured counts of the same "
        "shapes (brought into the model's units), summarised as PCC@F/S/M (first quartile, median, mean).",
        epilog=EPILOG,
    )
    evaluate.add_argument("input", type=Path, metavar="INPUT", help="a zarr store written by 'pixnet predict'")
    evaluate.add_argument("--predicted", required=True, help="the predicted table, e.g. pixnet_<shapes>")
    evaluate.add_argument("--measured", help="the measured table (default: the one annotating the same shapes)")
    evaluate.add_argument("--mode", choices=["pooled", "per_section"], default="pooled", help="default: pooled")
    evaluate.add_argument("--section-key", help="obs column naming sections, for --mode per_section")
    evaluate.add_argument(
        "--constant-genes", choices=["omit", "minus_one"], default="omit", help="genes whose PCC is undefined"
    )
    evaluate.add_argument("--out", type=Path, help="write the summary as CSV")
    evaluate.add_argument("--per-gene", type=Path, help="write the per-gene metrics as CSV")
    evaluate.set_defaults(func=_evaluate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="zarr v3 autosharding")
            args.func(args)
    except (ValueError, KeyError, OSError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"pixnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"pixnet {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a library's own error, or a bug: one line; the traceback with --verbose
        if args.verbose:
            raise
        print(
            f"pixnet {args.command}: error: {type(err).__name__}: {err} (run again with --verbose for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
