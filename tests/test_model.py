import argparse
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import pixnet
from pixnet.data.spans import shape_spans, span_sums
from pixnet.models import PixNet
from pixnet.nn import PixNetNetwork, create_encoder
from pixnet.nn.decoder import LinearAttention
from pixnet.nn.resnet import ResNet18Pyramid
from pixnet.nn.weights import load_checkpoint_file
from pixnet.utils.downloads import download


def _sums(density, spans, n):
    zeros = torch.zeros(len(spans), dtype=torch.long)
    return span_sums(density, zeros, *(torch.from_numpy(a) for a in (spans.row, spans.x0, spans.x1, spans.shape)), n)


@pytest.mark.parametrize("size", [(64, 64), (100, 77), (33, 45), (160, 96)])
def test_dense_map_has_input_size_and_is_non_negative(size):
    torch.manual_seed(0)
    network = PixNetNetwork(*create_encoder("resnet18"), n_genes=5, decoder_width=32)
    out = network(torch.rand(2, 3, *size))
    assert out.shape == (2, 5, *size)
    assert (out >= 0).all()


def test_sliding_attention_is_global_attention_over_the_window_around_each_pixel():
    torch.manual_seed(0)
    attention = LinearAttention(8)
    x = torch.rand(1, 8, 20, 24)
    sliding = attention(x, window=8)  # each pixel sees the 9 x 9 square centred on it
    for y, x0 in [(10, 12), (4, 4), (0, 23)]:
        rows, cols = slice(max(y - 4, 0), y + 5), slice(max(x0 - 4, 0), x0 + 5)
        local = attention(x[..., rows, cols])
        torch.testing.assert_close(sliding[..., y, x0], local[..., y - rows.start, x0 - cols.start])
    torch.testing.assert_close(attention(x, window=24), attention(x))  # no larger than the window: global


def test_overlapping_tiles_agree_away_from_their_borders():
    torch.manual_seed(0)
    network = PixNetNetwork(*create_encoder("resnet18"), n_genes=3, decoder_width=32, attention_window=64).eval()
    image = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        whole = network(image)
        tile = network(image[..., 32:, 32:])
    # away from the tile's border, where zero padding differs, pixels see the same window wherever the tile starts
    torch.testing.assert_close(tile[..., 96:160, 96:160], whole[..., 128:192, 128:192], atol=1e-3, rtol=0)


def test_eq9_sums_are_additive_over_nested_squares():
    density = torch.rand(1, 3, 40, 40)
    um = 0.5  # µm per pixel: a 2 µm bin is 4 px, a 4 µm bin 8 px
    small_centres = np.array([[10.0 + dx, 12.0 + dy] for dy in (-2, 2) for dx in (-2, 2)])
    small = _sums(density, shape_spans("square", small_centres, np.full(4, 1.0 / um)), 4)
    large = _sums(density, shape_spans("square", np.array([[10.0, 12.0]]), np.array([2.0 / um])), 1)
    torch.testing.assert_close(small.sum(0, keepdim=True), large)
    brute = density[0, :, 12 - 4 : 12 + 4, 10 - 4 : 10 + 4].sum(dim=(1, 2))
    torch.testing.assert_close(large[0], brute)


def test_circle_and_polygon_sums_equal_pixel_masks():
    import shapely

    density = torch.rand(1, 2, 50, 50)
    yy, xx = np.mgrid[:50, :50] + 0.5
    centres, radius = np.array([[20.3, 25.1], [30.0, 30.0]]), np.array([7.2, 4.0])
    got = _sums(density, shape_spans("circle", centres, radius), 2)
    for i, ((x, y), r) in enumerate(zip(centres, radius, strict=True)):
        mask = torch.from_numpy((xx - x) ** 2 + (yy - y) ** 2 <= r**2)
        torch.testing.assert_close(got[i], density[0][:, mask].sum(-1))
    ring = shapely.Point(25, 25).buffer(12).difference(shapely.Point(25, 25).buffer(5))
    got = _sums(density, shape_spans("polygon", polygons=np.array([ring])), 1)
    mask = torch.from_numpy(shapely.contains_xy(ring, xx, yy))
    torch.testing.assert_close(got[0], density[0][:, mask].sum(-1))


# ------------------------------------------------------------------------------------------------ weights
def _fake_lightning_checkpoint(path, state):
    """A checkpoint shaped like Ciga et al.'s Lightning file, hyper-parameters included."""
    names = ["pytorch_lightning", "pytorch_lightning.utilities", "pytorch_lightning.utilities.parsing"]
    modules = {name: types.ModuleType(name) for name in names}

    class AttributeDict(dict):
        pass

    AttributeDict.__module__ = "pytorch_lightning.utilities.parsing"
    AttributeDict.__qualname__ = "AttributeDict"
    modules[names[-1]].AttributeDict = AttributeDict
    sys.modules.update(modules)
    try:
        ckpt = {
            "epoch": 99,
            "state_dict": {f"model.resnet.{k}": v for k, v in state.items()}
            | {"model.resnet.fc.1.weight": torch.rand(4, 512), "model.resnet.fc.3.weight": torch.rand(2, 4)},
            "hyper_parameters": AttributeDict(lr=0.1, args=argparse.Namespace(batch=32)),
        }
        torch.save(ckpt, path)
    finally:
        for name in names:
            del sys.modules[name]


def test_ciga_checkpoint_loads_into_the_backbone(tmp_path):
    torch.manual_seed(1)
    reference = ResNet18Pyramid()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    path = tmp_path / "tenpercent_resnet18.ckpt"
    _fake_lightning_checkpoint(path, state)
    with pytest.raises(pickle.UnpicklingError):  # needs more than weights_only
        torch.load(path, weights_only=True)
    encoder, config = create_encoder("resnet18", path)
    for key, value in encoder.state_dict().items():
        torch.testing.assert_close(value, state[key])
    assert config.mean == (0.5, 0.5, 0.5) and config.std == (0.5, 0.5, 0.5)


def test_torchvision_state_dict_loads_with_imagenet_normalisation(tmp_path):
    state = ResNet18Pyramid().state_dict() | {"fc.weight": torch.zeros(1000, 512), "fc.bias": torch.zeros(1000)}
    torch.save(state, tmp_path / "resnet18.pth")
    _, config = create_encoder("resnet18", tmp_path / "resnet18.pth")
    assert config.mean == (0.485, 0.456, 0.406)


def test_wrong_weight_files_fail_clearly(tmp_path):
    torch.save({"conv.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="did not load the backbone"):
        create_encoder("resnet18", tmp_path / "other.pth")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"not a torch checkpoint|will not unpickle"):
        create_encoder("resnet18", tmp_path / "text.ckpt")
    with pytest.raises(FileNotFoundError):
        create_encoder("resnet18", tmp_path / "missing.ckpt")


class _Exploit:
    def __reduce__(self):
        return (open, (str(_Exploit.target), "w"))


def test_loading_never_executes_code(tmp_path):
    _Exploit.target = tmp_path / "pwned"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Exploit()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="will not unpickle"):
        load_checkpoint_file(tmp_path / "evil.ckpt")
    assert not _Exploit.target.exists()


def test_download_is_cached_and_checksummed(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        download(source.as_uri(), tmp_path / "cache" / "w.bin", sha256="0" * 64)
    first = download(source.as_uri(), tmp_path / "cache" / "w.bin")
    source.unlink()  # the cache answers from now on
    assert download(source.as_uri(), tmp_path / "cache" / "w.bin") == first
    first.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its checksum"):
        download(source.as_uri(), tmp_path / "cache" / "w.bin")


def test_efficientnet_lite0_pyramid_loads_imagenet_weights():
    encoder, config = create_encoder("efficientnet_lite0", "imagenet")
    features = encoder(torch.rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in features] == list(encoder.channels)
    assert config.weights == "imagenet"
    network = PixNetNetwork(encoder, config, n_genes=3, decoder_width=32)
    assert network(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)


# ------------------------------------------------------------------------------------------------ training
TRAIN = {
    "preset": "paper",
    "encoder_weights": "random",
    "decoder_width": 16,
    "patch_size": 96,
    "n_top_genes": 6,
    "batch_size": 4,
    "progress": False,
}


@pytest.fixture(scope="module")
def small_spots():
    return pixnet.datasets.synthetic_spots("visium", size_um=700, n_genes=12, seed=1)


@pytest.mark.parametrize("method", ["pixnet", "image2gene"])
def test_same_seed_same_model(small_spots, method):
    a = pixnet.tl.train(small_spots, epochs=1, seed=7, method=method, **TRAIN)
    b = pixnet.tl.train(small_spots, epochs=1, seed=7, method=method, **TRAIN)
    c = pixnet.tl.train(small_spots, epochs=1, seed=8, method=method, **TRAIN)
    for (k, va), vb in zip(a.network.state_dict().items(), b.network.state_dict().values(), strict=True):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    last = list(a.network.state_dict())[-1]
    assert not torch.equal(a.network.state_dict()[last], c.network.state_dict()[last])


def test_save_load_round_trip(small_spots, tmp_path):
    model = pixnet.tl.train(small_spots, epochs=1, **TRAIN)
    model.save(tmp_path / "model")
    with pytest.raises(FileExistsError):
        model.save(tmp_path / "model")
    loaded = PixNet.load(tmp_path / "model")
    images = torch.randint(0, 255, (2, 3, 64, 80), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict_tiles(images), model.predict_tiles(images))
    assert loaded.genes == model.genes and loaded.history == model.history
    assert loaded.normalization == model.normalization and loaded.microns_per_pixel == 1.0
    record = (tmp_path / "model" / "config.json").read_text()
    (tmp_path / "model" / "config.json").write_text(record.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="model format 99"):
        PixNet.load(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="not a saved pixnet model"):
        PixNet.load(tmp_path)


def test_frozen_encoder_trains_decoder_only(small_spots):
    model = pixnet.tl.train(small_spots, epochs=1, freeze_encoder=True, **TRAIN)
    fresh = pixnet.tl.train(small_spots, epochs=0, **TRAIN)  # same seed: the same initial weights, untrained
    for key, value in model.network.encoder.state_dict().items():
        torch.testing.assert_close(value, fresh.network.encoder.state_dict()[key], msg=key)  # BN statistics too
    assert not torch.equal(model.network.head.weight, fresh.network.head.weight)


@pytest.mark.parametrize("method", ["pixnet", "image2gene"])
def test_checkpoints_and_resume_continue_the_same_run(small_spots, tmp_path, method):
    straight = tmp_path / "straight"
    pixnet.tl.train(small_spots, epochs=3, checkpoint_dir=straight, method=method, **TRAIN)
    split = tmp_path / "split"
    pixnet.tl.train(small_spots, epochs=2, checkpoint_dir=split, method=method, **TRAIN)
    resumed = pixnet.tl.train(small_spots, epochs=3, checkpoint_dir=split, resume=split, method=method, **TRAIN)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2, 3]
    a, b = load_file(straight / "last" / "model.safetensors"), load_file(split / "last" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert type(pixnet.models.load_model(split / "last")) is type(resumed)
    with pytest.raises(FileNotFoundError, match="No training checkpoint"):
        pixnet.tl.train(small_spots, epochs=1, resume=tmp_path / "nothing", **TRAIN)


def test_auxiliary_image2gene_loss_trains_a_shape_embedding(small_spots, tmp_path):
    model = pixnet.tl.train(small_spots, epochs=2, image2gene_weight=1.0, embedding_dim=8, **TRAIN)
    assert model.network.embedding.out_features == 8 and model.config.embedding_dim == 8
    assert all(h["train_image2gene"] > 0 for h in model.history[1:])
    assert all(h["train_loss"] > h["train_mse"] + 0.5 * (1 - h["train_pcc"]) for h in model.history[1:])
    model.save(tmp_path / "aux")
    loaded = PixNet.load(tmp_path / "aux")
    torch.testing.assert_close(loaded.network.embedding.weight, model.network.embedding.weight)
    with pytest.raises(ValueError, match="method='pixnet'"):
        pixnet.tl.train(small_spots, method="image2gene", image2gene_weight=1.0, **TRAIN)


def test_bad_training_arguments_fail_before_work(small_spots):
    with pytest.raises(ValueError, match="Unknown method"):
        pixnet.tl.train(small_spots, method="bleep", **TRAIN)
    with pytest.raises(ValueError, match="validation must be"):
        pixnet.tl.train(small_spots, validation="random", **TRAIN)
    with pytest.raises(ValueError, match="Unknown encoder"):
        pixnet.tl.train(small_spots, encoder="vgg", **TRAIN)
    with pytest.raises(ValueError, match="validation_sections"):
        pixnet.tl.train(small_spots, validation="section", **TRAIN)


def test_several_sections_and_polygon_shapes_train_together(small_spots):
    import geopandas as gpd
    from spatialdata.models import ShapesModel, TableModel
    from spatialdata.transformations import get_transformation

    # a second section whose spots are given as polygons (as a cell segmentation would be)
    other = pixnet.datasets.synthetic_spots("st", size_um=900, n_genes=12, seed=2, sample_id="st")
    circles = other.shapes["st_spots"]
    polygons = gpd.GeoDataFrame(geometry=circles.geometry.buffer(circles["radius"]), index=circles.index)
    other.shapes["st_cells"] = ShapesModel.parse(polygons, transformations=get_transformation(circles, get_all=True))
    table = other.tables["st_table"].copy()
    table.obs["region"] = "st_cells"
    del table.uns["spatialdata_attrs"]
    del other.tables["st_table"]
    other.tables["st_table"] = TableModel.parse(table, region="st_cells", region_key="region", instance_key="spot_id")
    del other.shapes["st_spots"]
    model = pixnet.tl.train(
        [small_spots, other],
        epochs=1,
        validation="section",
        validation_sections=["st_image"],
        **(TRAIN | {"patch_size": 128}),
    )
    first = model.history[-1]
    assert first["train_shapes"] == small_spots["synthetic_visium_table"].n_obs  # the held-out section is not trained
    assert np.isfinite(first["val_loss"])
    with pytest.raises(ValueError, match="not among"):
        pixnet.tl.train(
            [small_spots, other], validation="section", validation_sections=["nope"], **(TRAIN | {"patch_size": 128})
        )
    with pytest.raises(ValueError, match="more than patch_size=96"):
        pixnet.tl.train(other, **TRAIN)  # 100 µm spots do not fit 96 px patches at 1 µm/px
