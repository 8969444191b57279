"""Prediction at scale: memory and time of the lazy map and the streaming aggregation.

Usage:
  python benchmarks/predict_scale.py a [--sizes-um 1000 2000]     # two slides 4x apart in area
  python benchmarks/predict_scale.py b [--map-px 2048 --genes 50]  # 1M squares, 100k circles, vs spatialdata
  python benchmarks/predict_scale.py c [--size-um 6500]            # a whole capture area at 2 µm

Each measurement runs in a fresh process so that its peak RSS is its own. Prints, does not assert.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _model(n_genes: int, width: int):
    import torch

    from pixnet.models.pixnet import PixNet, PixNetConfig
    from pixnet.nn import EncoderConfig

    torch.manual_seed(0)
    genes = [f"SYN{i:03d}" for i in range(n_genes)]
    config = PixNetConfig(
        genes=genes,
        gene_selection={"method": "list"},
        normalization={"method": "total_log", "params": {}},
        microns_per_pixel=1.0,
        patch_size=256,
        encoder=EncoderConfig().to_dict(),
        decoder_width=width,
    )
    return PixNet.build(config)  # random weights: the cost of prediction does not depend on them


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


# ------------------------------------------------------------------------------------------------ (a) and (c)
def run_slide(size_um: float, bins: int, width: int, out: Path, write: bool) -> dict:
    sys.path.insert(0, str(Path(__file__).parent))
    import psutil
    import spatialdata
    from _memory import PeakRSS
    from _synthetic import read_hd

    import pixnet
    import pixnet.dense.predict as predict_module

    start = time.perf_counter()
    reuse = (out / "sample.zarr").exists()  # a store from an earlier run: predict again, replacing its elements
    folder = out / "hd"
    if not folder.exists():
        pixnet.datasets.synthetic_visium_hd(folder, size_um=size_um, n_genes=50, seed=0, progress=False)
    generated = time.perf_counter()
    if not reuse:  # through a zarr store: its chunked image is read window by window (the TIFF is decoded whole)
        # bins as circles: pixnet treats Visium HD circles as the square bins they are, at a tenth of the memory
        read_hd(folder, bin_size=bins, bins_as_squares=False).write(out / "sample.zarr")
    sdata = spatialdata.read_zarr(out / "sample.zarr")
    loaded_mb = psutil.Process().memory_info().rss / 1e6
    read = time.perf_counter()
    phases = {"write_element": 0.0, "aggregate_spans": 0.0}
    for name in phases:
        original = getattr(predict_module, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                phases[_name] += time.perf_counter() - t0

        setattr(predict_module, name, timed)
    with PeakRSS() as memory:
        pixnet.tl.predict(
            sdata,
            shapes=f"bins_{bins}um",
            model=_model(50, width),
            dtype="float16",
            write=write,
            overwrite=reuse,
            progress=False,
        )
    done = time.perf_counter()
    table = next(t for n, t in sdata.tables.items() if n.startswith("pixnet_"))
    result = {
        "size_um": size_um,
        "bins": f"{bins} µm",
        "shapes": table.n_obs,
        "generate_s": round(generated - start, 1),
        "read_s": round(read - generated, 1),
        "predict_s": round(done - read, 1),
        "aggregate_s": round(phases["aggregate_spans"], 1),
        "rss_after_reading_mb": round(loaded_mb),
        "predict_peak_rss_mb": round(memory.peak / 1e6),
        "process_peak_rss_mb": round(_peak_mb()),
    }
    if write:  # the map is written first (the model runs there), tables are written after their aggregation
        result["map_write_s"] = round(phases["write_element"], 1)
        result["store_mb"] = round(_disk_mb(out / "sample.zarr"))
        result["map_mb"] = round(_disk_mb(out / "sample.zarr" / "images" / "pixnet_map"))
        result["table_mb"] = round(_disk_mb(out / "sample.zarr" / "tables" / f"pixnet_synthetic_square_{bins:03d}um"))
    else:  # the model runs inside the aggregation tasks
        result["note"] = "model runs inside aggregation"
    return result


# ------------------------------------------------------------------------------------------------ (b)
def run_aggregation(map_px: int, n_genes: int, out: Path) -> dict:
    import dask.array as da

    from pixnet.data.spans import shape_spans
    from pixnet.dense.aggregate import aggregate_spans

    path = out / "map.zarr"
    rng = da.random.default_rng(0)
    rng.random((n_genes, map_px, map_px), chunks=(n_genes, 512, 512), dtype=np.float32).to_zarr(str(path))
    dense = da.from_zarr(str(path))
    t0 = time.perf_counter()
    dense.sum().compute()
    read_once = time.perf_counter() - t0
    n_side = map_px // 2  # 2 µm squares at 1 µm/px
    yy, xx = np.mgrid[:n_side, :n_side]
    centres = np.column_stack([xx.ravel() * 2 + 1.0, yy.ravel() * 2 + 1.0])
    t0 = time.perf_counter()
    squares = aggregate_spans(
        dense, shape_spans("square", centres, np.ones(len(centres))), len(centres), progress=False
    )
    squares_s = time.perf_counter() - t0
    points = np.random.default_rng(1).uniform(10, map_px - 10, (100_000, 2))
    t0 = time.perf_counter()
    aggregate_spans(dense, shape_spans("circle", points, np.full(len(points), 4.0)), len(points), progress=False)
    circles_s = time.perf_counter() - t0
    assert np.isclose(squares.sum(), float(dense.sum().compute()), rtol=1e-4)
    return {
        "map": f"{n_genes} x {map_px} x {map_px} float32 ({dense.nbytes / 1e9:.2f} GB, zarr)",
        "read_once_s": round(read_once, 2),
        "squares": len(centres),
        "squares_s": round(squares_s, 2),
        "squares_vs_read": round(squares_s / read_once, 2),
        "circles": len(points),
        "circles_s": round(circles_s, 2),
        "circles_vs_read": round(circles_s / read_once, 2),
        "peak_rss_mb": round(_peak_mb()),
    }


def run_vs_spatialdata(map_px: int, n_genes: int, which: str) -> dict:
    """The same map and labels: pixnet's span sums against spatialdata.aggregate (image by labels)."""
    import dask.array as da
    import spatialdata
    from spatialdata.models import Image2DModel, Labels2DModel

    from pixnet.data.spans import shape_spans
    from pixnet.dense.aggregate import aggregate_spans

    rng = np.random.default_rng(0)
    values = rng.random((n_genes, map_px, map_px), dtype=np.float32)
    side = 16  # 16 µm bins at 1 µm/px: fewer labels than uint16's 65,535
    n = map_px // side
    rows, cols = np.arange(map_px)[:, None] // side, np.arange(map_px)[None, :] // side
    # spatialdata's zonal statistics expect background (0) pixels: the last column of bins is background
    labels = np.where(cols < n - 1, rows * (n - 1) + cols + 1, 0).astype(np.uint32)
    t0 = time.perf_counter()
    if which == "pixnet":
        yy, xx = np.mgrid[:n, : n - 1]
        centres = np.column_stack([xx.ravel() * side + side / 2, yy.ravel() * side + side / 2])
        dense = da.from_array(values, chunks=(n_genes, 512, 512))
        spans = shape_spans("square", centres, np.full(len(centres), side / 2))
        sums = aggregate_spans(dense, spans, len(centres), progress=False)
    else:
        sdata = spatialdata.SpatialData(
            images={"map": Image2DModel.parse(values, dims=("c", "y", "x"))},
            labels={"bins": Labels2DModel.parse(labels, dims=("y", "x"))},
        )
        result = spatialdata.aggregate(values_sdata=sdata, values="map", by_sdata=sdata, by="bins", agg_func="sum")
        table = result.tables["table"]
        order = np.argsort(table.obs["instance_id"].to_numpy())
        sums = np.asarray(table.X.todense() if hasattr(table.X, "todense") else table.X)[order]
    seconds = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / f"{which}.npy"
    np.save(out, sums)
    return {
        "which": which,
        "labels": n * (n - 1),
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(_peak_mb()),
        "sums": str(out),
    }


# ------------------------------------------------------------------------------------------------ driver
def _child(args: list[str]) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["a", "b", "c"])
    parser.add_argument("--sizes-um", type=float, nargs="+", default=[1000.0, 2000.0])
    parser.add_argument("--size-um", type=float, default=6500.0)
    parser.add_argument("--map-px", type=int, default=2048)
    parser.add_argument("--genes", type=int, default=50)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pixnet_scale_"))
    if args.part == "a":
        for size in args.sizes_um:
            folder = out / f"a_{size:g}"
            print(_child(["slide", str(size), "8", str(args.width), str(folder), "0"]))
            shutil.rmtree(folder, ignore_errors=True)
    elif args.part == "b":
        print(_child(["aggregate", str(args.map_px), str(args.genes), str(out)]))
        ours = _child(["versus", str(args.map_px), "16", "pixnet"])
        theirs = _child(["versus", str(args.map_px), "16", "spatialdata"])
        diff = np.abs(np.load(ours.pop("sums")) - np.load(theirs.pop("sums"))).max()
        print(
            {
                "pixnet": ours,
                "spatialdata.aggregate": theirs,
                "speedup": round(theirs["seconds"] / ours["seconds"], 1),
                "max_abs_diff": float(diff),
            }
        )
    else:
        print(_child(["slide", str(args.size_um), "2", str(args.width), str(out / "c"), "1"]))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "slide":
            result = run_slide(float(rest[0]), int(rest[1]), int(rest[2]), Path(rest[3]), rest[4] == "1")
        elif kind == "aggregate":
            result = run_aggregation(int(rest[0]), int(rest[1]), Path(rest[2]))
        else:
            result = run_vs_spatialdata(int(rest[0]), int(rest[1]), rest[2])
        print(json.dumps(result))
    else:
        main()
