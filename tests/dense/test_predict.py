import dask.array as da
import numpy as np
import pytest
import shapely
import spatialdata
from conftest import TINY_TRAINING
from spatialdata.transformations import get_transformation

import pixnet
from pixnet.data.spans import shape_spans
from pixnet.dense.aggregate import aggregate_spans


@pytest.fixture
def model(tiny_model):
    return tiny_model


def _brute(values: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    return np.stack([values[:, m].sum(axis=1) for m in masks])


def test_shapes_crossing_chunk_borders_are_counted_once():
    rng = np.random.default_rng(0)
    values = rng.random((3, 70, 90))
    image = da.from_array(values, chunks=(3, 16, 20))  # many borders
    centres = rng.uniform(0, 90, (40, 2)) * [1, 70 / 90]
    half = rng.uniform(1, 14, 40)
    yy, xx = np.mgrid[:70, :90] + 0.5
    for kind in ("square", "circle"):
        spans = shape_spans(kind, centres, half)
        got = aggregate_spans(image, spans, 40, progress=False)
        if kind == "square":
            masks = [
                (xx >= x - h) & (xx < x + h) & (yy >= y - h) & (yy < y + h)
                for (x, y), h in zip(centres, half, strict=True)
            ]
        else:
            masks = [(xx - x) ** 2 + (yy - y) ** 2 <= h**2 for (x, y), h in zip(centres, half, strict=True)]
        np.testing.assert_allclose(got, _brute(values, masks), rtol=1e-5, atol=1e-4)
    ones = da.ones((1, 70, 90), chunks=(1, 7, 9))
    spans = shape_spans("square", np.array([[45.0, 35.0]]), np.array([20.0]))
    assert aggregate_spans(ones, spans, 1, progress=False)[0, 0] == 40 * 40  # every pixel exactly once


def test_polygon_aggregation_equals_brute_force():
    rng = np.random.default_rng(1)
    values = rng.random((2, 60, 60))
    image = da.from_array(values, chunks=(1, 13, 17))
    polygons = [
        shapely.Polygon(rng.uniform(5, 55, (6, 2))).convex_hull,
        shapely.Point(30, 30).buffer(15).difference(shapely.Point(30, 30).buffer(6)),
        shapely.MultiPolygon([shapely.box(2, 2, 10, 9), shapely.box(40, 41, 58.5, 59)]),
    ]
    got = aggregate_spans(image, shape_spans("polygon", polygons=np.array(polygons, dtype=object)), 3, progress=False)
    yy, xx = np.mgrid[:60, :60] + 0.5
    masks = [shapely.contains_xy(p, xx, yy) for p in polygons]
    np.testing.assert_allclose(got, _brute(values, masks), rtol=1e-5, atol=1e-4)
    mean = aggregate_spans(
        image, shape_spans("polygon", polygons=np.array(polygons, dtype=object)), 3, agg="mean", progress=False
    )
    np.testing.assert_allclose(mean, _brute(values, masks) / np.array([m.sum() for m in masks])[:, None], rtol=1e-5)


def test_tiled_map_matches_untiled(model):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=12, seed=6)
    whole = pixnet.tl.predict(sdata, model=model, tile_size=512, halo=0, copy=True, progress=False)["pixnet_map"]
    tiled = pixnet.tl.predict(sdata, model=model, tile_size=64, halo=96, copy=True, progress=False)["pixnet_map"]
    assert whole.shape == tiled.shape == (len(model.genes), 300, 300)
    a, b = whole.values, tiled.values
    # convolutions see the same context given the halo; the kernelised attention is global, so allow a little
    assert np.abs(a - b).max() / np.abs(a).max() < 0.05
    assert np.abs(a - b).mean() / np.abs(a).mean() < 0.01


def test_copy_returns_a_spatialdata_of_the_new_elements_and_leaves_sdata_alone(model):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=12, seed=6)
    before = (set(sdata.images), set(sdata.tables))
    new = pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=model, copy=True, progress=False)
    assert isinstance(new, spatialdata.SpatialData) and (set(sdata.images), set(sdata.tables)) == before
    assert set(new.images) == {"pixnet_map"} and set(new.tables) == {"pixnet_synthetic_visium_spots"}
    assert set(new.shapes) == {"synthetic_visium_spots"}
    assert new["synthetic_visium_spots"] is sdata["synthetic_visium_spots"]  # shared, not copied
    sums = pixnet.tl.aggregate(new, "pixnet_map", "synthetic_visium_spots", copy=True, progress=False)
    assert set(sums.tables) == {"pixnet_map_sum_synthetic_visium_spots"} and not sums.images


def test_predict_adds_lazy_map_and_tables(hd_sdata, model):
    pixnet.tl.predict(hd_sdata, shapes=["bins_2um", "bins_8um"], model=model, tile_size=128, halo=32, progress=False)
    dense = hd_sdata.images["pixnet_map"]
    assert isinstance(dense.data, da.Array) and list(dense.coords["c"].values) == model.genes
    table = hd_sdata.tables["pixnet_synthetic_square_002um"]
    measured = hd_sdata.tables["square_002um"]
    assert list(table.obs_names[: measured.n_obs]) == list(measured.obs_names)
    assert list(table.var_names) == model.genes and table.obsm["spatial"].shape == (table.n_obs, 2)
    np.testing.assert_allclose(table.obsm["spatial"][: measured.n_obs], measured.obsm["spatial"], atol=1e-6)
    with pytest.raises(ValueError, match="exist already"):
        pixnet.tl.predict(hd_sdata, shapes="bins_2um", model=model, progress=False)
    with pytest.raises(ValueError, match=r"'pixnet_map' exists already, .* pixnet.tl.aggregate\(sdata, 'pixnet_map'"):
        pixnet.tl.predict(hd_sdata, shapes="bins_16um", model=model, progress=False)  # other tiles: another map
    # the same model and settings: the 16 µm bins are read out of the existing map, which stays as it was
    before = hd_sdata.images["pixnet_map"].data
    pixnet.tl.predict(hd_sdata, shapes="bins_16um", model=model, tile_size=128, halo=32, progress=False)
    assert hd_sdata.images["pixnet_map"].data is before
    pixnet.tl.predict(
        hd_sdata, shapes="bins_16um", model=model, tile_size=128, halo=32, progress=False, key_added="fresh"
    )
    np.testing.assert_allclose(
        hd_sdata.tables["pixnet_synthetic_square_016um"].X, hd_sdata.tables["fresh_synthetic_square_016um"].X
    )
    # the map sums are additive: 2 µm bins add up to their 8 µm bin
    pixnet.tl.aggregate(hd_sdata, "pixnet_map", ["bins_2um", "bins_8um"], progress=False)
    small, large = (
        hd_sdata.tables["pixnet_map_sum_synthetic_square_002um"],
        hd_sdata.tables["pixnet_map_sum_synthetic_square_008um"],
    )
    parent_of = {tuple(rc): i for i, rc in enumerate(large.obs[["array_row", "array_col"]].astype(int).to_numpy())}
    parent = np.array(
        [parent_of[tuple(rc)] for rc in small.obs[["array_row", "array_col"]].astype(int).to_numpy() // 4]
    )
    summed = np.zeros_like(large.X)
    np.add.at(summed, parent, small.X)
    np.testing.assert_allclose(summed, large.X, rtol=1e-4)
    # every table says what made it
    record, derived = table.uns["pixnet"], small.uns["pixnet"]
    assert record["kind"] == "predict" and record["params"]["tile_size"] == 128
    assert record["model_config"]["genes"] == model.genes and record["pixnet_version"] == pixnet.__version__
    assert derived["kind"] == "aggregate" and derived["params"] == {"image": "pixnet_map", "agg": "sum"}


def _affine(element, cs):
    return get_transformation(element, cs).to_affine_matrix(("x", "y"), ("x", "y"))


def test_map_lines_up_with_shapes_in_every_coordinate_system(hd_sdata, model):
    pixnet.tl.predict(hd_sdata, shapes="bins_16um", model=model, tile_size=128, halo=32, progress=False)
    dense = hd_sdata.images["pixnet_map"]
    shapes = hd_sdata.shapes["synthetic_square_016um"]
    centre = np.asarray(shapes.geometry.iloc[0].centroid.coords[0])  # full-resolution pixels
    expected = centre * 0.2738242950835738 / model.microns_per_pixel  # in map pixels
    systems = get_transformation(hd_sdata.images["synthetic_full_image"], get_all=True)
    assert set(get_transformation(dense, get_all=True)) == set(systems)
    for cs in systems:
        in_cs = _affine(shapes, cs) @ np.r_[centre, 1]
        in_map = np.linalg.solve(_affine(dense, cs), in_cs)[:2]
        np.testing.assert_allclose(in_map, expected, atol=1e-6, err_msg=cs)


def test_predict_without_measured_table_and_without_model(model):
    sdata = pixnet.datasets.synthetic_spots("st", size_um=800, n_genes=12, seed=2)
    uns_spatial = sdata["synthetic_st_table"].uns["spatial"]
    del sdata.tables["synthetic_st_table"]
    with pytest.raises(ValueError, match="No model given"):
        pixnet.tl.predict(sdata, shapes="synthetic_st_spots")
    pixnet.tl.predict(
        sdata,
        shapes="synthetic_st_spots",
        model=model,
        progress=False,
        resolve_kwargs={"microns_per_pixel": uns_spatial["synthetic_st"]["scalefactors"]["microns_per_pixel"]},
    )
    table = sdata.tables["pixnet_synthetic_st_spots"]
    assert table.n_obs == len(sdata.shapes["synthetic_st_spots"]) and np.isfinite(table.X).all()


def test_predict_defaults_to_the_model_trained_on_the_object():
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=500, n_genes=12, seed=7)
    trained = pixnet.tl.train(sdata, epochs=1, **TINY_TRAINING)
    pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", progress=False)
    assert list(sdata.tables["pixnet_synthetic_visium_spots"].var_names) == trained.genes


def test_distributed_equals_local(model):
    distributed = pytest.importorskip("distributed")
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=12, seed=8)
    local = pixnet.tl.predict(
        sdata, shapes="synthetic_visium_spots", model=model, tile_size=128, halo=32, copy=True, progress=False
    )
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster),
    ):
        remote = pixnet.tl.predict(
            sdata, shapes="synthetic_visium_spots", model=model, tile_size=128, halo=32, copy=True, progress=False
        )
        remote_map = remote["pixnet_map"].data[:, :64, :64].compute()
    name = "pixnet_synthetic_visium_spots"
    np.testing.assert_allclose(remote.tables[name].X, local.tables[name].X, rtol=1e-5)
    np.testing.assert_allclose(remote_map, local["pixnet_map"].data[:, :64, :64].compute(), rtol=1e-5)


def test_writes_into_the_store_and_failures_leave_it_intact(model, tmp_path, monkeypatch):
    import spatialdata

    import pixnet.dense.lazy_map

    spatialdata_store = tmp_path / "sample.zarr"
    pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=12, seed=9).write(spatialdata_store)
    sdata = spatialdata.read_zarr(spatialdata_store)
    kwargs = {"model": model, "tile_size": 64, "halo": 32, "progress": False, "write": True}
    pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", **kwargs)
    name = "pixnet_synthetic_visium_spots"
    reread = spatialdata.read_zarr(spatialdata_store)
    assert isinstance(reread.images["pixnet_map"].data, da.Array)  # still lazy after reading back
    before_map = reread.images["pixnet_map"].values
    before_table = np.asarray(reread.tables[name].X)
    np.testing.assert_allclose(np.asarray(sdata.tables[name].X), before_table)
    with pytest.raises(ValueError, match="exist"):
        pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", **kwargs)
    pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", key_added="again", **kwargs)
    sdata.shapes["spots_again"] = sdata.shapes["synthetic_visium_spots"]
    sdata.write_element("spots_again")
    monkeypatch.setattr(pixnet.dense.lazy_map, "_predict_block", None)  # the written map is read, not recomputed
    pixnet.tl.predict(sdata, shapes="spots_again", **kwargs)
    np.testing.assert_allclose(
        np.asarray(spatialdata.read_zarr(spatialdata_store)["pixnet_spots_again"].X), before_table
    )
    monkeypatch.undo()

    calls = {"n": 0}
    original = pixnet.dense.lazy_map._predict_block

    def failing(*args, **kw):
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("disk full")
        return original(*args, **kw)

    monkeypatch.setattr(pixnet.dense.lazy_map, "_predict_block", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", overwrite=True, **kwargs)
    after = spatialdata.read_zarr(spatialdata_store)
    np.testing.assert_array_equal(after.images["pixnet_map"].values, before_map)
    np.testing.assert_array_equal(np.asarray(after.tables[name].X), before_table)
    leftovers = [
        p.name for kind in ("images", "tables") for p in (spatialdata_store / kind).iterdir() if "tmp" in p.name
    ]
    assert leftovers == []


def test_large_tables_stream_to_disk(model, tmp_path):
    import spatialdata

    store = tmp_path / "sample.zarr"
    pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=12, seed=9).write(store)
    in_memory = pixnet.tl.predict(
        spatialdata.read_zarr(store),
        shapes="synthetic_visium_spots",
        model=model,
        tile_size=64,
        halo=32,
        progress=False,
        copy=True,
    ).tables["pixnet_synthetic_visium_spots"]
    sdata = spatialdata.read_zarr(store)
    pixnet.tl.predict(
        sdata,
        shapes="synthetic_visium_spots",
        model=model,
        tile_size=64,
        halo=32,
        progress=False,
        write=True,
        table_memory_limit=0,
    )
    table = sdata.tables["pixnet_synthetic_visium_spots"]
    assert isinstance(table.X, da.Array)  # backed by the store, not held in memory
    np.testing.assert_allclose(table.X.compute(), in_memory.X, rtol=1e-5)
