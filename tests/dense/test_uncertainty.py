"""Uncertainty from an ensemble: a map of the members' spread and each shape's spread over the members."""

import dataclasses

import matplotlib
import numpy as np
import pytest
import spatialdata
from conftest import tiny_pixnet

import pixnet
from pixnet.models import PixNet

matplotlib.use("Agg")
GENES = ("SYN000", "SYN001", "SYN002")
SPOTS, TABLE = "synthetic_visium_spots", "pixnet_synthetic_visium_spots"
KW = {"tile_size": 128, "halo": 32, "progress": False}


@pytest.fixture(scope="module")
def ensemble():
    return tiny_pixnet(genes=GENES, n_models=3)


@pytest.fixture
def sdata():
    return pixnet.datasets.synthetic_spots("visium", size_um=256, n_genes=3, seed=4)


def _member(model: PixNet, member: int) -> PixNet:
    """Member ``member`` of ``model`` as a model of its own."""
    single = PixNet.build(dataclasses.replace(model.config, n_models=1))
    decoder, head = model.network.member_modules(member)
    single.network.encoder.load_state_dict(model.network.encoder.state_dict())
    single.network.decoder.load_state_dict(decoder.state_dict())
    single.network.head.load_state_dict(head.state_dict())
    return single


def test_the_spread_is_the_members_spread_in_the_map_and_in_each_shape(sdata, ensemble):
    pixnet.tl.predict(sdata, SPOTS, ensemble, uncertainty=True, cache=True, **KW)
    members = [pixnet.tl.predict(sdata, SPOTS, _member(ensemble, m), copy=True, **KW) for m in range(3)]
    maps = np.stack([m["pixnet_map"].values for m in members])
    np.testing.assert_allclose(sdata.images["pixnet_map"].values, maps.mean(axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sdata.images["pixnet_std"].values, maps.std(axis=0), rtol=1e-4, atol=1e-7)
    table = sdata.tables[TABLE]
    predictions = np.stack([np.asarray(m.tables[TABLE].X) for m in members])
    np.testing.assert_allclose(table.layers["std"], predictions.std(axis=0), rtol=1e-4, atol=1e-6)
    assert (table.layers["std"] > 0).mean() > 0.9  # untrained members disagree nearly everywhere
    plain = pixnet.tl.predict(sdata, SPOTS, ensemble, copy=True, **KW).tables[TABLE]
    np.testing.assert_allclose(table.X, plain.X, rtol=1e-5)  # the same prediction as without uncertainty
    summary = pixnet.tl.evaluate(sdata, TABLE)
    assert {"coverage_50", "coverage_90", "error_std_spearman"} <= set(summary.columns)
    assert 0 <= summary.loc["pooled", "coverage_50"] <= summary.loc["pooled", "coverage_90"] <= 1
    fig = pixnet.pl.uncertainty(sdata, GENES[0])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["SYN000: prediction", "SYN000: ensemble std"]


def test_uncertainty_is_written_into_the_store_like_the_map(sdata, ensemble, tmp_path):
    expected = pixnet.tl.predict(sdata, SPOTS, ensemble, uncertainty=True, copy=True, **KW)
    sdata.write(tmp_path / "sample.zarr")
    backed = spatialdata.read_zarr(tmp_path / "sample.zarr")
    pixnet.tl.predict(backed, SPOTS, ensemble, uncertainty=True, write=True, **KW)
    reread = spatialdata.read_zarr(tmp_path / "sample.zarr")
    np.testing.assert_allclose(reread.images["pixnet_std"].values, expected["pixnet_std"].values, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(reread.tables[TABLE].layers["std"]), expected.tables[TABLE].layers["std"], rtol=1e-5
    )


def test_uncertainty_needs_an_ensemble(sdata):
    with pytest.raises(ValueError, match="needs an ensemble: train with n_models=2"):
        pixnet.tl.predict(sdata, SPOTS, tiny_pixnet(genes=GENES), uncertainty=True, **KW)
    with pytest.raises(KeyError, match="uncertainty=True"):
        pixnet.pl.uncertainty(sdata, GENES[0])
