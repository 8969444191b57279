"""Time and peak memory of writing synthetic Visium HD samples of growing size.

Usage: python benchmarks/synthetic_scale.py [--sizes-um 1000 2000 6500] [--out DIR]

Each size runs in a fresh process so that peak RSS is that run's own. Prints, does not assert.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _one(size_um: float, out: Path) -> dict:
    from pixnet.datasets import synthetic_visium_hd

    start = time.perf_counter()
    synthetic_visium_hd(out, size_um=size_um, seed=0, overwrite=True, progress=False)
    seconds = time.perf_counter() - start
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    meta = json.loads((out / "pixnet_synthetic.json").read_text())["layout"]
    return {
        "size_um": size_um,
        "image_px": meta["image_shape"][0],
        "bins_2um": meta["bins_per_side"]["2um"] ** 2,
        "seconds": round(seconds, 1),
        "peak_rss_mb": round(peak_mb),
        "disk_mb": round(disk / 1e6),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-um", type=float, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pixnet_bench_"))
    if args.child is not None:
        print(json.dumps(_one(args.child, out / f"hd_{args.child:g}um")))
        return
    print(f"{'size_um':>8} {'image_px':>9} {'2um_bins':>10} {'seconds':>8} {'peak_MB':>8} {'disk_MB':>8}")
    for size in args.sizes_um:
        result = subprocess.run(
            [sys.executable, __file__, "--child", str(size), "--out", str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(result.stdout.strip().splitlines()[-1])
        widths = {"size_um": 8, "image_px": 9, "bins_2um": 10, "seconds": 8, "peak_rss_mb": 8, "disk_mb": 8}
        print(" ".join(f"{r[key]:>{width}}" for key, width in widths.items()))


if __name__ == "__main__":
    main()
