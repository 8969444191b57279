"""The opt-in cache of computed map chunks: every later read of a map (plots, aggregation) runs the model once."""

import numpy as np
import pytest
import torch
from conftest import tiny_pixnet

import pixnet
from pixnet.tl import MapCache


@pytest.fixture
def sdata():
    return pixnet.datasets.synthetic_spots("visium", size_um=256, n_genes=3, seed=4)


@pytest.fixture
def counted(monkeypatch):
    """A tiny model whose tile predictions are counted."""
    model = tiny_pixnet(genes=("SYN000", "SYN001", "SYN002"))
    calls = []
    predict_tiles = type(model).predict_tiles

    def counting(self, images, *args, **kwargs):
        calls.append(images.shape)
        return predict_tiles(self, images, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict_tiles", counting)
    return model, calls


def _predict(sdata, model, cache, key="pixnet"):
    kwargs = {"model": model, "tile_size": 128, "halo": 32, "progress": False, "overwrite": True, "key_added": key}
    pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", cache=cache, **kwargs)


def test_without_a_cache_every_read_runs_the_model(sdata, counted):
    model, calls = counted
    _predict(sdata, model, cache=False)
    after_predict = len(calls)
    dense = sdata.images["pixnet_map"].data
    dense.compute()
    dense.compute()
    assert after_predict > 0 and len(calls) == after_predict + 2 * dense.npartitions


def test_a_memory_cache_computes_each_chunk_once(sdata, counted):
    model, calls = counted
    cache = MapCache()
    _predict(sdata, model, cache)
    first = sdata.images["pixnet_map"].data.compute()
    pixnet.tl.aggregate(sdata, "pixnet_map", "synthetic_visium_spots", progress=False)
    again = sdata.images["pixnet_map"].data.compute()
    n = sdata.images["pixnet_map"].data.npartitions
    assert n > 1 and len(calls) == cache.misses == n
    np.testing.assert_array_equal(first, again)
    assert cache.hits >= n + 1 and f"{n} misses" in repr(cache)


def test_the_memory_bound_drops_the_oldest_chunks(sdata, counted):
    model, calls = counted
    one_chunk = 3 * 128 * 128 * 4
    cache = MapCache(max_bytes=2 * one_chunk)
    _predict(sdata, model, cache)
    dense = sdata.images["pixnet_map"].data
    assert dense.npartitions > 2
    before = len(calls)
    dense.compute()
    assert 0 < len(calls) - before < dense.npartitions + 1 and cache._bytes <= 2 * one_chunk
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        MapCache(max_bytes=0)


def test_a_folder_cache_is_shared_across_cache_objects_and_keyed_by_the_weights(sdata, counted, tmp_path):
    model, calls = counted
    _predict(sdata, model, MapCache(tmp_path / "chunks"))
    first = sdata.images["pixnet_map"].data.compute()
    n = sdata.images["pixnet_map"].data.npartitions
    assert len(calls) == n
    _predict(sdata, model, MapCache(tmp_path / "chunks"), key="again")  # e.g. a new session
    np.testing.assert_array_equal(sdata.images["again_map"].data.compute(), first)
    assert len(calls) == n
    assert len(list((tmp_path / "chunks").rglob("*.npy"))) == n and not list((tmp_path / "chunks").rglob("*.part"))
    with torch.no_grad():
        model.network.head.bias.add_(1.0)  # another model: its own chunks
    _predict(sdata, model, MapCache(tmp_path / "chunks"), key="changed")
    assert len(calls) > n
    assert len([p for p in (tmp_path / "chunks").iterdir() if p.is_dir()]) == 2
