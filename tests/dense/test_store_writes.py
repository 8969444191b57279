"""Writing a map and its tables into a store is one transaction: all old or all new, whatever is killed when."""

import itertools
import threading
from pathlib import Path

import numpy as np
import pytest
import spatialdata
from conftest import TINY_TRAINING, killed_at_rename

import pixnet
import pixnet.dense.store

SPOTS, TABLE = "synthetic_visium_spots", "pixnet_synthetic_visium_spots"
KW = {"tile_size": 64, "halo": 32, "progress": False, "write": True}


@pytest.fixture(scope="module")
def models():
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=8, seed=5)
    return [pixnet.tl.train(sdata, epochs=1, seed=s, **TINY_TRAINING) for s in (0, 1)]


@pytest.fixture
def store(tmp_path, models):
    path = tmp_path / "sample.zarr"
    pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=8, seed=9).write(path)
    pixnet.tl.predict(spatialdata.read_zarr(path), shapes=SPOTS, model=models[0], **KW)
    return path


def _state(path):
    sdata = spatialdata.read_zarr(path)
    return sdata.images["pixnet_map"].values, np.asarray(sdata.tables[TABLE].X)


def _siblings(path: Path):
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name)


def test_a_kill_during_the_swap_is_rolled_forward_by_the_next_open(store, models, monkeypatch):
    old_map, old_table = _state(store)
    original, calls = Path.rename, []

    def killed(self, target):
        calls.append(self)
        if len(calls) == 2:  # the map is in place, the table not yet
            raise KeyboardInterrupt
        return original(self, target)

    monkeypatch.setattr(Path, "rename", killed)
    with pytest.raises(KeyboardInterrupt):
        pixnet.tl.predict(spatialdata.read_zarr(store), shapes=SPOTS, model=models[1], overwrite=True, **KW)
    monkeypatch.setattr(Path, "rename", original)
    recovered = pixnet.io.read(store)  # the next open completes the write
    new_map, new_table = recovered.images["pixnet_map"].values, np.asarray(recovered.tables[TABLE].X)
    assert not np.allclose(new_map, old_map) and not np.allclose(new_table, old_table)
    reference = pixnet.tl.predict(
        recovered, shapes=SPOTS, model=models[1], copy=True, tile_size=64, halo=32, progress=False, overwrite=True
    )
    np.testing.assert_allclose(new_table, reference.tables[TABLE].X, rtol=1e-5)
    assert _siblings(store) == []


def test_a_kill_at_every_rename_leaves_all_old_or_all_new(store, models, monkeypatch):
    def table_of(model):
        copy = pixnet.tl.predict(
            spatialdata.read_zarr(store), shapes=SPOTS, model=model, copy=True, tile_size=64, halo=32, progress=False
        )
        return np.asarray(copy.tables[TABLE].X)

    expected = [table_of(m) for m in models]
    writing = 0
    for kill_at in itertools.count(1):
        writing = 1 - writing  # alternate the models, so that old and new always differ
        backed = spatialdata.read_zarr(store)
        finished = killed_at_rename(
            monkeypatch,
            kill_at,
            lambda: pixnet.tl.predict(backed, shapes=SPOTS, model=models[writing], overwrite=True, **KW),  # noqa: B023
        )
        table = np.asarray(pixnet.io.read(store).tables[TABLE].X)  # the next open repairs what the kill left
        matches = [np.allclose(table, e, rtol=1e-5) for e in expected]
        assert any(matches), f"killed at rename {kill_at}: the table is neither model's"
        if not matches[writing]:
            writing = 1 - writing  # the old elements stayed: the next write has the other model again
        assert _siblings(store) == [], kill_at
        if finished:
            break
    assert kill_at > 3  # the write has several renames, and each was a kill point


def test_a_failure_before_the_swap_leaves_the_store_as_it_was(store, models, monkeypatch):
    before = _state(store)

    def failing(*args, **kwargs):
        raise RuntimeError("aggregation failed")

    monkeypatch.setattr(pixnet.dense.predict, "aggregate_spans", failing)
    with pytest.raises(RuntimeError, match="aggregation failed"):
        pixnet.tl.predict(spatialdata.read_zarr(store), shapes=SPOTS, model=models[1], overwrite=True, **KW)
    after = _state(store)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert _siblings(store) == []


def test_two_writers_of_one_key_cannot_both_win(store, models):
    results = []
    barrier = threading.Barrier(2)

    def write(model):
        sdata = spatialdata.read_zarr(store)
        barrier.wait()
        try:
            pixnet.tl.predict(sdata, shapes=SPOTS, model=model, key_added="race", **KW)
            results.append("written")
        except (ValueError, BlockingIOError) as error:
            results.append(type(error).__name__)

    threads = [threading.Thread(target=write, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("written") == 1, results
    assert "race_map" in spatialdata.read_zarr(store).images


def test_a_store_reached_through_a_symlink_is_written_in_place(store, models, tmp_path):
    link = tmp_path / "link.zarr"
    link.symlink_to(store)
    pixnet.tl.predict(spatialdata.read_zarr(link), shapes=SPOTS, model=models[1], key_added="linked", **KW)
    assert link.is_symlink() and "linked_map" in spatialdata.read_zarr(store).images
    assert _siblings(store) == ["link.zarr"]
