"""Training throughput of PixNet's presets: patches/s and supervised spots/s.

Usage: python benchmarks/train_speed.py [--device cpu cuda] [--epochs 1] [--size-um 640]

Trains on the 8 and 16 µm bins of a synthetic Visium HD sample with the ``"paper"`` preset (ResNet18 fine-tuned
at 1 µm/px, decoder width 512, 256 px patches; random encoder weights, as none download here), the same with a
frozen encoder, and the ``"cpu"`` preset (frozen EfficientNet-Lite0 at 4 µm/px, cached pyramids, decoder to
stride 4), and reports the training part of each epoch (the validation pass and, for the cpu preset, the one-off
encoding of the sections are excluded). Prints, does not assert.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _synthetic import read_hd

import pixnet

SETTINGS = {
    "paper": {"preset": "paper", "encoder_weights": "random"},
    "paper, frozen": {"preset": "paper", "encoder_weights": "random", "freeze_encoder": True},
    "cpu": {"preset": "cpu"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    available = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    parser.add_argument("--device", nargs="+", default=available)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--size-um", type=float, default=640.0)
    parser.add_argument("--patch-size", type=int, help="default: each preset's")
    parser.add_argument("--width", type=int, help="decoder width; default: each preset's")
    parser.add_argument("--batch-size", type=int, help="default: each preset's")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pixnet_speed_")) / "hd"
    pixnet.datasets.synthetic_visium_hd(folder, size_um=args.size_um, n_genes=50, seed=0, progress=False)
    sdata = read_hd(folder)
    print(f"synthetic HD {args.size_um:g} µm, 8+16 µm bins, torch threads {torch.get_num_threads()}")
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
