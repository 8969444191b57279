"""Image2Gene: the alignment loss, kNN inference, the dense map, save/load, and training on the synthetic sample."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import read_visium_hd

import pixnet
from pixnet.datasets import synthetic_visium_hd
from pixnet.models import Image2Gene, Image2GeneConfig
from pixnet.nn import EncoderConfig
from pixnet.training.loss import expression_correlation, gene_moments, image2gene_loss

GENES = [f"G{i}" for i in range(6)]


def _model(**kwargs) -> Image2Gene:
    torch.manual_seed(0)
    config = Image2GeneConfig(
        genes=GENES,
        gene_selection={"method": "list", "params": {}},
        normalization=pixnet.pp.Normalization().to_dict(),
        microns_per_pixel=2.0,
        patch_size=32,
        encoder=EncoderConfig("resnet18").to_dict(),
        embedding_dim=16,
        **kwargs,
    )
    return Image2Gene.build(config)


def test_loss_is_zero_when_similarities_equal_the_expression_correlations():
    target = torch.rand(12, 30)
    # cosine similarity of the centred profiles is their Pearson correlation
    aligned = target - target.mean(dim=1, keepdim=True)
    np.testing.assert_allclose(expression_correlation(target).numpy(), np.corrcoef(target.numpy()), atol=1e-5)
    assert float(image2gene_loss(aligned, target)) < 1e-10
    assert float(image2gene_loss(3.0 * aligned, target)) < 1e-10  # only directions count
    # with the training genes' moments, profiles are standardised per gene before they are correlated
    moments = gene_moments(target.numpy())
    standardised = (target - moments[0]) / moments[1]
    assert float(image2gene_loss(standardised - standardised.mean(dim=1, keepdim=True), target, moments)) < 1e-10
    assert float(image2gene_loss(aligned, target, moments)) > 0.01


def test_loss_grows_with_the_mismatch():
    torch.manual_seed(0)
    target = torch.rand(16, 30)
    aligned = F.normalize(target - target.mean(dim=1, keepdim=True), dim=1)
    noise = F.normalize(torch.randn(16, 30), dim=1)
    losses = [
        float(image2gene_loss(F.normalize((1 - t) * aligned + t * noise, dim=1), target)) for t in (0, 0.3, 0.6, 1)
    ]
    assert losses == sorted(losses) and losses[0] < 1e-10 < losses[1]


def test_knn_with_k1_reproduces_a_training_spot_and_weights_neighbours():
    model = _model()
    embeddings = F.normalize(torch.randn(10, 16), dim=1)
    density = torch.rand(10, len(GENES))
    model.set_bank(embeddings, density)
    torch.testing.assert_close(model.knn(embeddings, k=1), density)
    uniform = model.knn(embeddings[:1], k=3, weighting="uniform")
    nearest = (embeddings[:1] @ embeddings.T).topk(3).indices[0]
    # averaged as targets (log1p) of a spot of the reference area (1 px here), then back to a density
    torch.testing.assert_close(uniform[0], density[nearest].log1p().mean(dim=0).expm1())
    weighted = model.knn(embeddings[:1], k=3, weighting="distance")  # the spot itself (distance 0) dominates
    assert torch.dist(weighted[0], density[0]) < torch.dist(uniform[0], density[0])
    with pytest.raises(ValueError, match="weighting"):
        model.knn(embeddings, weighting="gaussian")


def test_dense_map_tiles_agree_and_k1_single_spot_map_is_its_density():
    model = _model(map_stride=8)
    model.set_bank(F.normalize(torch.randn(20, 16), dim=1), torch.rand(20, len(GENES)))
    image = torch.randint(0, 256, (1, 3, 96, 112), dtype=torch.uint8)
    whole = model.predict_tiles(image, extent=(96, 112))
    tile = model.predict_tiles(image[..., 24:, 40:], offset=(24, 40), extent=(96, 112))
    assert whole.shape == (1, len(GENES), 96, 112)
    # a grid point's patch reaches past a tile's edge; away from the edges the tiles see the same patches
    torch.testing.assert_close(tile[..., 32:48, 32:48], whole[..., 56:72, 72:88], atol=1e-4, rtol=1e-4)
    model.set_bank(F.normalize(torch.randn(1, 16), dim=1), torch.full((1, len(GENES)), 0.25))
    torch.testing.assert_close(model.predict_tiles(image), torch.full_like(whole, 0.25))


def test_save_and_load_round_trip(tmp_path):
    model = _model()
    model.set_bank(F.normalize(torch.randn(5, 16), dim=1), torch.rand(5, len(GENES)))
    model.save(tmp_path / "i2g")
    loaded = pixnet.models.load_model(tmp_path / "i2g")
    assert isinstance(loaded, Image2Gene)
    assert json.loads(json.dumps(asdict(model.config))) == asdict(loaded.config)
    patches = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    positions = torch.rand(3, 2)
    torch.testing.assert_close(loaded.knn(loaded.embed(patches, positions)), model.knn(model.embed(patches, positions)))
    with pytest.raises(ValueError, match="load_model"):
        pixnet.models.PixNet.load(tmp_path / "i2g")
    with pytest.raises(ValueError, match="weighting"):
        _model(weighting="gaussian")


@pytest.fixture(scope="module")
def hd320(tmp_path_factory):
    folder = synthetic_visium_hd(tmp_path_factory.mktemp("i2g") / "hd", size_um=320, n_genes=16, seed=3, progress=False)
    return read_visium_hd(folder)


def test_training_beats_the_training_mean_on_held_out_bins(hd320):
    model = pixnet.tl.train(
        hd320,
        method="image2gene",
        shapes="bins_16um",
        preset="paper",
        encoder_weights="random",
        microns_per_pixel=2.0,
        patch_size=32,
        epochs=12,
        k=10,
        n_top_genes=16,
        validation="region",
        seed=0,
        progress=False,
    )
    assert isinstance(model, Image2Gene) and len(model.bank_density) == hd320.tables["square_016um"].n_obs
    assert model.config.reference_area_px == pytest.approx(64)  # 16 µm bins at 2 µm/px
    assert max(h["val_pcc"] for h in model.history[1:]) > model.history[0]["val_pcc"] + 0.1
    pixnet.tl.predict(hd320, shapes="bins_16um", model=model, key_added="i2g", tile_size=256, progress=False)
    assert hd320["i2g_map"].sizes["c"] == 16
    predicted = hd320["i2g_synthetic_square_016um"]
    measured = hd320.tables["square_016um"]
    x = predicted.obsm["spatial"][:, 0]
    held_out = x >= np.quantile(x, 0.8)  # the training's validation region
    train_mean = predicted[~held_out].copy()
    targets = pixnet.pp.normalize(measured[train_mean.obs_names], model.genes, model.normalization, area_um2=256.0)
    mean_table = predicted[held_out].copy()
    mean_table.X = np.tile(targets.mean(axis=0), (held_out.sum(), 1))
    i2g = pixnet.tl.evaluate(None, predicted[held_out].copy(), measured[predicted.obs_names[held_out]], key_added=None)
    mean = pixnet.tl.evaluate(None, mean_table, measured[predicted.obs_names[held_out]], key_added=None)
    assert i2g["mse"].iloc[0] < mean["mse"].iloc[0], (i2g, mean)
    assert i2g["pcc_m"].iloc[0] > 0.3, i2g
