"""Training throughput of PixNet: patches/s and supervised spots/s, default vs frozen encoder.

Usage: python benchmarks/train_speed.py [--device cpu cuda] [--epochs 1] [--size-um 640]

Trains on the 8 and 16 µm bins of a synthetic Visium HD sample at the default working resolution with the
paper's architecture (decoder width 512, 256 px patches) and reports the training part of each epoch (the
validation pass is excluded). Prints, does not assert.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _synthetic import read_hd

import pixnet

SETTINGS = {
    "default": {},
    "frozen encoder": {"freeze_encoder": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--device", nargs="+", default=available)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--size-um", type=float, default=640.0)
    parser.add_argument("--patch-size", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pixnet_speed_")) / "hd"
    pixnet.datasets.synthetic_visium_hd(folder, size_um=args.size_um, n_genes=50, seed=0, progress=False)
    sdata = read_hd(folder)
    print(
        f"synthetic HD {args.size_um:g} µm, 8+16 µm bins, {pixnet.tl.DEFAULT_MICRONS_PER_PIXEL:g} µm/px, patch "
        f"{args.patch_size}, batch {args.batch_size}, decoder width {args.width}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'device':>6} {'setting':>15} {'patches':>8} {'spots':>7} {'seconds':>8} {'patches/s':>10} {'spots/s':>8}")
    for device in args.device:
        for name, extra in SETTINGS.items():
            model = pixnet.tl.train(
                sdata,
                shapes=["bins_8um", "bins_16um"],
                patch_size=args.patch_size,
                decoder_width=args.width,
                batch_size=args.batch_size,
                epochs=args.epochs,
                n_top_genes=50,
                device=device,
                validation=None,
                progress=False,
                **extra,
            )
            epochs = [h for h in model.history if h["epoch"] > 0]
            patches = sum(h["train_patches"] for h in epochs)
            spots = sum(h["train_shapes"] for h in epochs)
            seconds = sum(h["train_seconds"] for h in epochs)
            print(
                f"{device:>6} {name:>15} {patches:>8} {spots:>7} {seconds:>8.1f} {patches / seconds:>10.2f} "
                f"{spots / seconds:>8.1f}"
            )


if __name__ == "__main__":
    main()
