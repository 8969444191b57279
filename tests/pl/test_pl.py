import copy
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

import pixnet
from pixnet.datasets import synthetic_spots


@pytest.fixture(scope="module")
def predicted():
    train = synthetic_spots("visium", size_um=700, n_genes=16, seed=0, sample_id="a")
    test = synthetic_spots("visium", size_um=700, n_genes=16, seed=1, sample_id="b")
    model = pixnet.tl.train(
        train,
        preset="paper",
        encoder_weights="random",
        microns_per_pixel=2.0,
        patch_size=64,
        decoder_width=8,
        epochs=2,
        n_top_genes=4,
        progress=False,
    )
    pixnet.tl.predict(test, "b_spots", model, progress=False)
    baseline = pixnet.tl.train_baseline(train, "ridge", like=model, progress=False)
    pixnet.tl.predict_baseline(test, "b_spots", baseline, progress=False)
    for name in ("pixnet_b_spots", "ridge_b_spots"):
        pixnet.tl.evaluate(test, name)
    return test, model


def _rendered(path):
    assert path.is_file() and path.stat().st_size > 5000
    plt.close("all")


def test_expression_side_by_side_with_dense_map(predicted, tmp_path):
    sdata, model = predicted
    fig = pixnet.pl.expression(sdata, model.genes[:2], "pixnet_b_spots", map_name="pixnet_map", save=tmp_path / "e.png")
    titles = [ax.get_title() for ax in fig.axes]
    assert f"{model.genes[0]}: measured" in titles and any("PCC" in t for t in titles)
    _rendered(tmp_path / "e.png")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bars and all(not ax.yaxis.get_major_formatter().get_useOffset() for ax in bars)  # plain tick labels
    pixnet.pl.expression(sdata, model.genes[0], "ridge_b_spots", shared_scale=True, save=tmp_path / "r.png")
    _rendered(tmp_path / "r.png")


def test_dense_map_whole_and_zoomed(predicted, tmp_path):
    sdata, model = predicted
    ax = pixnet.pl.dense_map(sdata, model.genes[0], save=tmp_path / "m.png")
    assert model.genes[0] in ax.get_title()
    _rendered(tmp_path / "m.png")
    pixnet.pl.dense_map(sdata, model.genes[1], region=(100, 100, 400, 300), save=tmp_path / "z.png")
    _rendered(tmp_path / "z.png")
    with pytest.raises(ValueError, match="not channels of"):
        pixnet.pl.dense_map(sdata, "NOT_A_GENE")
    assert pixnet.pl.dense_map(sdata).get_title() == f"{model.genes[0]}: dense map"  # no gene: the first
    # each map fills its colour scale, so the colour bar says how much it varies relative to its mean
    label = ax.figure.axes[-1].get_ylabel()
    assert re.search(r"density per map pixel\nrange [\d.e+-]+ = [\d.e+-]+ % of the mean", label), label
    with pytest.raises(ValueError, match=f"did you mean '{model.genes[0]}'"):
        pixnet.pl.dense_map(sdata, model.genes[0].lower())
    with pytest.raises(KeyError, match=r"run pixnet\.tl\.predict first"):
        pixnet.pl.dense_map(sdata, map_name="other_map")


def test_pcc_distribution_scatter_and_training_curves(predicted, tmp_path):
    sdata, model = predicted
    ax = pixnet.pl.pcc_distribution(
        {"pixnet": sdata["pixnet_b_spots"], "ridge": sdata["ridge_b_spots"]}, save=tmp_path / "p.png"
    )
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["pixnet", "ridge"]
    _rendered(tmp_path / "p.png")
    ax = pixnet.pl.scatter(sdata, model.genes[0], "pixnet_b_spots", save=tmp_path / "s.png")
    assert ax.get_title().startswith(f"{model.genes[0]}: PCC")
    _rendered(tmp_path / "s.png")
    fig = pixnet.pl.training_curves(model, save=tmp_path / "c.png")
    assert "2 epochs" in fig.get_suptitle()
    _rendered(tmp_path / "c.png")
    ensemble = copy.copy(model)  # two decoders trained one after another: one line each, not one joined line
    ensemble.history = [
        {"member": m, "epoch": e, "train_loss": 1.0 / e, "train_pcc": 0.1 * e} for m in (1, 2) for e in (1, 2)
    ]
    fig = pixnet.pl.training_curves(ensemble)
    assert "2 ensemble members x 2 epochs" in fig.get_suptitle()
    assert [line.get_label() for line in fig.axes[0].lines] == ["train, member 1", "train, member 2"]


def test_a_figure_of_several_genes_runs_the_model_once_per_tile(predicted, monkeypatch):
    sdata, model = predicted
    calls = []
    original = type(model).predict_tiles

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "predict_tiles", counted)
    pixnet.tl.predict(sdata, "b_spots", model, key_added="lazy", progress=False)  # a lazy map, not written
    calls.clear()
    pixnet.pl.expression(sdata, model.genes[:1], "pixnet_b_spots", map_name="lazy_map")
    one = len(calls)
    calls.clear()
    pixnet.pl.expression(sdata, model.genes[:3], "pixnet_b_spots", map_name="lazy_map")
    assert one > 0 and len(calls) == one
    plt.close("all")


def test_the_background_is_at_most_a_screen_whatever_the_levels(predicted):
    sdata, model = predicted
    image = next(iter(sdata.images[name] for name in sdata.images if not name.endswith("_map")))
    assert image.sizes["x"] > 200  # one resolution level
    ax = pixnet.pl.dense_map(sdata, model.genes[0], max_size=100)
    assert max(max(im.get_array().shape[:2]) for im in ax.get_images()) <= 100
    plt.close("all")
