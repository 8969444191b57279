"""The ``pixnet`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

logger = logging.getLogger("pixnet")


def _demo(args: argparse.Namespace) -> None:
    import spatialdata_io

    from . import datasets
    from ._inputs import bin_shapes, resolve_inputs

    folder = Path(args.out) / "synthetic_visium_hd"
    print(f"Writing a synthetic Visium HD sample ({args.size_um:g} µm, seed {args.seed}) to {folder}")
    datasets.synthetic_visium_hd(folder, size_um=args.size_um, seed=args.seed, overwrite=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        sdata = spatialdata_io.visium_hd(folder, dataset_id="synthetic", load_segmentations_only=False)
    print(sdata)
    inputs = resolve_inputs(sdata, shapes=bin_shapes(sdata))
    print("pixnet resolved:")
    print(inputs.summary())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pixnet`` command."""
    parser = argparse.ArgumentParser(
        prog="pixnet", description="Dense spatial gene expression prediction from H&E images, for SpatialData."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo",
        help="run pixnet on a built-in synthetic Visium HD sample",
        description="Build a synthetic Visium HD sample (Space Ranger layout), read it with spatialdata-io and "
        "show what pixnet finds in it: image, µm per pixel, bins and their measured tables.",
    )
    demo.add_argument("--out", default="pixnet_demo", help="output folder (default: %(default)s)")
    demo.add_argument(
        "--size-um", type=float, default=320.0, help="side of the capture area in µm (default: %(default)s)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        args.func(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"pixnet {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
