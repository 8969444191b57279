import numpy as np
import pytest

import pixnet
from pixnet.data.patches import spot_patches
from pixnet.datasets import synthetic_spots

SETTINGS = {
    "encoder": "resnet18",
    "encoder_weights": "random",
    "microns_per_pixel": 2.0,
    "patch_size": 64,
    "n_top_genes": 10,
    "progress": False,
}


@pytest.fixture(scope="module")
def sections():
    train = synthetic_spots("visium", size_um=1000, n_genes=24, seed=0, sample_id="a")
    test = synthetic_spots("visium", size_um=1000, n_genes=24, seed=1, sample_id="b")
    return train, test


def test_spot_patches_are_centred_and_padded_white():
    image = np.zeros((10, 10, 3), np.uint8)
    image[4:6, 4:6] = 100
    patches = spot_patches(image, np.array([[5.0, 5.0], [0.0, 0.0]]), 4)
    assert (patches[0, 1:3, 1:3] == 100).all() and patches[0, 0, 0, 0] == 0
    assert (patches[1, :2, :2] == 255).all() and (patches[1, 2:, 2:] == 0).all()


def test_baselines_learn_and_share_units_with_evaluate(sections):
    train, test = sections
    summaries = {}
    for method in ("ridge", "knn", "mean", "depth"):
        baseline = pixnet.tl.train_baseline(train, method, **SETTINGS)
        pixnet.tl.predict_baseline(test, "b_spots", baseline, progress=False)
        table = test[f"{method}_b_spots"]
        assert table.var_names.tolist() == baseline.genes and "area_um2" in table.obs
        summaries[method] = pixnet.tl.evaluate(test, f"{method}_b_spots").loc["pooled"]
    # frozen random features still separate the synthetic tissue types
    assert summaries["ridge"]["pcc_m"] > 0.3 and summaries["knn"]["pcc_m"] > 0.3
    assert summaries["ridge"]["mse"] < summaries["mean"]["mse"]
    assert summaries["mean"]["n_constant"] == summaries["mean"]["n_genes"]  # a constant has no PCC
    # the depth baseline predicts one value per spot: every gene is that map with its own sign and scale
    assert summaries["depth"]["pc1_share"] == pytest.approx(1.0)
    assert summaries["ridge"]["pc1_share"] < 0.99
    assert summaries["ridge"]["partial_pcc_m"] > summaries["depth"]["partial_pcc_m"]
    with pytest.raises(ValueError, match="exist already"):
        pixnet.tl.predict_baseline(test, "b_spots", baseline, progress=False)


def test_baseline_shares_a_models_genes_units_and_resolution(sections):
    train, _ = sections
    model = pixnet.tl.train(train, decoder_width=8, epochs=1, validation=None, batch_size=4, **SETTINGS)
    baseline = pixnet.tl.train_baseline(train, "ridge", like=model, progress=False)
    assert baseline.genes == model.genes and baseline.normalization == model.normalization
    assert baseline.microns_per_pixel == model.microns_per_pixel and baseline.patch_size == model.config.patch_size
    assert baseline.encoder.name == model.config.encoder["name"]
    with pytest.raises(ValueError, match="Unknown baseline"):
        pixnet.tl.train_baseline(train, "lasso", **SETTINGS)


def test_a_foundation_model_encoder_gives_the_baselines_features(sections):
    train, test = sections
    settings = {**SETTINGS, "encoder": "hibou_b", "encoder_weights": "random"}  # ViT-B/14, 86 M parameters
    baseline = pixnet.tl.train_baseline(train, "ridge", **settings)
    assert baseline.encoder.name == "hibou_b" and baseline.encoder.mean == (0.7068, 0.5755, 0.722)
    pixnet.tl.predict_baseline(test, "b_spots", baseline, key_added="vit", progress=False)
    assert np.isfinite(np.asarray(test["vit_b_spots"].X)).all()
