"""A Visium HD capture area end to end on a laptop: write, read, train the defaults, predict 2 µm bins, write.

Usage: python benchmarks/capture_area.py [--sizes-um 500 2000 6500] [--out DIR]

For each side length, in a fresh process (so that each peak is its own): a synthetic Visium HD area is written in
the Space Ranger layout (streamed), read with ``spatialdata_io.visium_hd`` (bins as circles, which pixnet treats
as the square bins they are) and written to a zarr store; ``pixnet.tl.train`` with the library's defaults learns
from its 8 and 16 µm bins; ``pixnet.tl.predict(..., write=True)`` writes the dense map and the 2 µm table into
the store. Prints seconds and peak resident memory per step, and seconds per mm². Prints, does not assert.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _memory import PeakRSS

STEPS = ("write_sample", "read", "train", "predict_write")


def one_area(size_um: float, out: Path) -> dict:
    import spatialdata
    import spatialdata_io

    import pixnet

    out.mkdir(parents=True, exist_ok=True)
    seconds, peaks = {}, {}

    def step(name, function):
        with PeakRSS() as memory:
            started = time.perf_counter()
            value = function()
            seconds[name] = time.perf_counter() - started
        peaks[name] = memory.peak / 1e6
        return value

    folder = step(
        "write_sample",
        lambda: pixnet.datasets.synthetic_visium_hd(
            out / "hd", size_um=size_um, seed=5, overwrite=True, progress=False
        ),
    )

    def read():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sdata = spatialdata_io.visium_hd(folder, dataset_id="synthetic", bins_as_squares=False)
            sdata.write(out / "sample.zarr", overwrite=True)
        return spatialdata.read_zarr(out / "sample.zarr")

    sdata = step("read", read)
    model = step("train", lambda: pixnet.tl.train(sdata, shapes=["bins_8um", "bins_16um"], progress=False))
    step("predict_write", lambda: pixnet.tl.predict(sdata, shapes="bins_2um", model=model, write=True, progress=False))
    table = next(t for name, t in sdata.tables.items() if name.startswith("pixnet_") and name.endswith("002um"))
    area_mm2 = (size_um / 1000) ** 2
    result = {"size_um": size_um, "area_mm2": round(area_mm2, 2), "bins_2um": table.n_obs, "model": repr(model)}
    for name in STEPS:
        result[f"{name}_s"] = round(seconds[name], 1)
        result[f"{name}_peak_mb"] = round(peaks[name])
    result["train_s_per_mm2"] = round(seconds["train"] / area_mm2, 1)
    result["predict_write_s_per_mm2"] = round(seconds["predict_write"] / area_mm2, 1)
    result["store_mb"] = round(sum(f.stat().st_size for f in (out / "sample.zarr").rglob("*") if f.is_file()) / 1e6)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-um", type=float, nargs="+", default=[500.0, 2000.0, 6500.0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="pixnet_capture_area_"))
    for size in args.sizes_um:
        folder = out / f"area_{size:g}"
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(size), str(folder)], capture_output=True, text=True
        )
        if child.returncode:
            raise RuntimeError(child.stderr[-3000:])
        print(child.stdout.strip().splitlines()[-1], flush=True)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(one_area(float(sys.argv[2]), Path(sys.argv[3]))))
    else:
        main()
