"""Reading one dense map several times, with and without ``pixnet.tl.MapCache``, on a real HER2ST section.

Usage:
    python benchmarks/map_cache.py                 # train on C3-C5 (cpu preset, 4 epochs), predict C2
    python benchmarks/map_cache.py --epochs 12

What a user does after predicting: plot three genes of the map (``pl.expression`` with ``map_name``), aggregate
the map into the spots again (``tl.aggregate``), plot one gene as an overlay (``pl.dense_map``). Each step's wall
time is printed for a map without a cache (every read runs the model), with the default in-memory cache (2 GB,
least recently used chunks dropped) and with a cache in a scratch folder (chunks computed by ``predict`` are read
back). Does not assert.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import pixnet
from pixnet.datasets import her2st

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "her2st"


def _timed(label: str, step, rows: list) -> None:
    started = time.perf_counter()
    step()
    rows.append((label, time.perf_counter() - started))
    plt.close("all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the HER2ST sections")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    train = [her2st(name, args.data) for name in ("C3", "C4", "C5")]
    model = pixnet.tl.train(train, preset="cpu", epochs=args.epochs, validation=None, progress=False)
    genes = model.genes[:3]
    print(f"{model!r}; plotting {genes}")
    scratch = tempfile.mkdtemp(prefix="pixnet-map-cache-")
    for cache in (None, pixnet.tl.MapCache(), pixnet.tl.MapCache(path=scratch)):
        test = her2st("C2", args.data)
        rows: list = []
        kwargs = {"model": model, "progress": False, "cache": cache or False}
        _timed("predict (map + spots)", lambda: pixnet.tl.predict(test, shapes="C2_spots", **kwargs), rows)  # noqa: B023
        dense = test.images["pixnet_map"]
        chunks = dense.data.npartitions
        _timed(
            "pl.expression, 3 genes",
            lambda: pixnet.pl.expression(test, genes, "pixnet_C2_spots", map_name="pixnet_map"),  # noqa: B023
            rows,
        )
        _timed(
            "tl.aggregate into the spots",
            lambda: pixnet.tl.aggregate(test, "pixnet_map", "C2_spots", progress=False),  # noqa: B023
            rows,
        )
        _timed("pl.dense_map, 1 gene", lambda: pixnet.pl.dense_map(test, genes[0]), rows)  # noqa: B023
        name = "no cache" if cache is None else "MapCache(), in memory" if cache.path is None else "MapCache(path=...)"
        print(f"\n{name}: map {tuple(dense.shape)} in {chunks} chunks")
        for label, seconds in rows:
            print(f"  {label:<30} {seconds:7.2f} s")
        if cache is not None:
            print(f"  {cache!r}")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
