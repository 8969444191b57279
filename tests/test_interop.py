"""Predictions are ordinary SpatialData elements: scanpy, squidpy, spatialdata-plot and zarr take them as they are."""

import sys

import dask.array as da
import matplotlib
import numpy as np
import pytest
import scanpy as sc
import spatialdata
import spatialdata_plot  # noqa: F401
import squidpy as sq

import pixnet

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TABLE = "pixnet_synthetic_square_002um"
# spatialdata-plot draws more than 10,000 shapes with datashader, which fails in 0.4.0 (the newest release for
# Python 3.11: "no coordinate system named 'global'"); matplotlib draws them there (docs: Tutorials)
SHAPES_METHOD = {"method": "matplotlib"} if sys.version_info < (3, 12) else {}


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    # 13,056 2 µm bins under the tissue: scanpy builds the kNN graph with pynndescent above 8,192 rows, and
    # spatialdata-plot draws more than 10,000 shapes with datashader
    folder = tmp_path_factory.mktemp("interop") / "hd"
    sdata = pixnet.io.read(pixnet.datasets.synthetic_visium_hd(folder, size_um=240, n_genes=24, seed=3, progress=False))
    pixnet.tl.train(
        sdata,
        shapes="bins_16um",
        preset="paper",
        encoder_weights="random",
        n_top_genes=8,
        decoder_width=16,
        patch_size=64,
        epochs=1,
        progress=False,
    )
    pixnet.tl.predict(sdata, shapes="bins_2um", progress=False)
    return sdata


def test_predicted_table_goes_through_scanpy_and_squidpy(predicted):
    adata = predicted[TABLE].copy()
    assert adata.n_obs > 8192  # scanpy's neighbors then use pynndescent (where scanpy 1.12 met pynndescent 0.7)
    sc.pp.pca(adata, n_comps=5)
    sc.pp.neighbors(adata, n_neighbors=10)
    sc.tl.leiden(adata, flavor="igraph", n_iterations=2, resolution=0.5, random_state=0)
    assert adata.obs["leiden"].nunique() > 1
    sq.gr.spatial_neighbors_grid(adata, n_neighs=4)
    degree = np.asarray(adata.obsp["spatial_connectivities"].sum(axis=1)).ravel()
    assert np.median(degree) == 4  # 2 µm bins on a grid: four neighbours inside the tissue


def test_spatialdata_plot_renders_the_map_and_a_predicted_table(predicted, tmp_path):
    gene = predicted[TABLE].var_names[0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4))
    predicted.pl.render_images("pixnet_map", channel=gene).pl.show(coordinate_systems="synthetic", ax=axes[0])
    (
        predicted.pl.render_shapes("synthetic_square_002um", color=gene, table_name=TABLE, **SHAPES_METHOD).pl.show(
            coordinate_systems="synthetic", ax=axes[1]
        )
    )
    fig.savefig(tmp_path / "plot.png")
    plt.close(fig)
    assert (tmp_path / "plot.png").stat().st_size > 10_000
    # the map panel shows the map: its image has more than one colour
    assert len(axes[0].get_images()) == 1 and np.ptp(axes[0].get_images()[0].get_array()) > 0


def test_written_store_reopens_with_a_lazy_map(predicted, tmp_path):
    predicted.write(tmp_path / "out.zarr")
    reopened = spatialdata.read_zarr(tmp_path / "out.zarr")
    assert isinstance(reopened["pixnet_map"].data, da.Array)
    np.testing.assert_allclose(reopened[TABLE].X, predicted[TABLE].X)
    window = reopened["pixnet_map"][:, :32, :32].values
    np.testing.assert_allclose(window, predicted["pixnet_map"][:, :32, :32].values, rtol=1e-6)
