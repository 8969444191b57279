"""Which working resolution (µm/px) and decoder output stride should PixNet use? Train at several and compare.

Usage: python benchmarks/working_resolution.py [--mpp 0.5 1 2] [--stride 1 4] [--epochs 6] [--patch-um 128]

Each run trains on 8 and 16 µm bins of a synthetic Visium HD sample (the same patch extent in µm at every
resolution) with the paper's architecture from random weights, with the decoder stopping at each ``--stride``
(the density upsampled bilinearly from there), then reports seconds per epoch and the mean per-gene PCC on the
held-out region for 8 µm bins and for 2 µm bins (never trained on), against the generator's truth and against
the measured counts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _synthetic import held_out_pcc, read_hd

import pixnet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mpp", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    parser.add_argument("--stride", type=int, nargs="+", default=[1], choices=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--patch-um", type=float, default=128.0)
    parser.add_argument("--size-um", type=float, default=320.0)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="pixnet_res_")) / "hd"
    pixnet.datasets.synthetic_visium_hd(folder, size_um=args.size_um, n_genes=16, seed=3, progress=False)
    sdata = read_hd(folder)
    print(
        f"synthetic HD {args.size_um:g} µm, {args.epochs} epochs, patches of {args.patch_um:g} µm, width {args.width}"
    )
    columns = {
        "µm/px": 6,
        "stride": 6,
        "patch_px": 8,
        "s/epoch": 8,
        "8um_truth": 10,
        "8um_meas": 9,
        "2um_truth": 10,
        "2um_meas": 9,
    }
    print(" ".join(f"{name:>{width}}" for name, width in columns.items()))
    for mpp, stride in ((m, s) for m in args.mpp for s in args.stride):
        patch = round(args.patch_um / mpp / 32) * 32
        model = pixnet.tl.train(
            sdata,
            shapes=["bins_8um", "bins_16um"],
            preset="paper",
            encoder_weights="random",
            output_stride=stride,
            microns_per_pixel=mpp,
            patch_size=patch,
            decoder_width=args.width,
            epochs=args.epochs,
            batch_size=4,
            n_top_genes=16,
            seed=args.seed,
            progress=False,
        )
        seconds = sum(h["train_seconds"] for h in model.history[1:]) / args.epochs
        r8, r2 = held_out_pcc(model, folder, sdata, "bins_8um"), held_out_pcc(model, folder, sdata, "bins_2um")
        print(
            f"{mpp:>6g} {stride:>6} {patch:>8} {seconds:>8.1f} {r8['pcc_truth']:>10.3f} {r8['pcc_measured']:>9.3f} "
            f"{r2['pcc_truth']:>10.3f} {r2['pcc_measured']:>9.3f}"
        )
    print(
        f"ceiling (truth vs measured): 8 µm {r8['pcc_truth_vs_measured']:.3f}, 2 µm {r2['pcc_truth_vs_measured']:.3f}"
    )


if __name__ == "__main__":
    main()
