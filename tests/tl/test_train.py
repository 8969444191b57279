"""``pixnet.tl.train``: seeds, save/load, frozen encoders, resume, the auxiliary loss, bad arguments, sections."""

import logging

import numpy as np
import pytest
import torch
from conftest import TINY_TRAINING
from safetensors.torch import load_file

import pixnet
from pixnet.models import PixNet

TRAIN = {**TINY_TRAINING, "validation": "region"}


def settings_for(method: str) -> dict:
    """``TRAIN`` without the options the method does not have."""
    return {"method": method, **{k: v for k, v in TRAIN.items() if method == "pixnet" or k != "decoder_width"}}


@pytest.fixture(scope="module")
def small_spots():
    return pixnet.datasets.synthetic_spots("visium", size_um=700, n_genes=12, seed=1)


@pytest.mark.parametrize("method", ["pixnet", "image2gene"])
def test_same_seed_same_model(small_spots, method):
    a = pixnet.tl.train(small_spots, epochs=1, seed=7, **settings_for(method))
    b = pixnet.tl.train(small_spots, epochs=1, seed=7, **settings_for(method))
    c = pixnet.tl.train(small_spots, epochs=1, seed=8, **settings_for(method))
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
    pixnet.tl.train(small_spots, epochs=3, checkpoint_dir=straight, **settings_for(method))
    split = tmp_path / "split"
    pixnet.tl.train(small_spots, epochs=2, checkpoint_dir=split, **settings_for(method))
    resumed = pixnet.tl.train(small_spots, epochs=3, checkpoint_dir=split, resume=split, **settings_for(method))
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
    with pytest.raises(TypeError, match="option of method 'pixnet' only"):
        pixnet.tl.train(small_spots, method="image2gene", image2gene_weight=1.0, **TRAIN)


def test_bad_training_arguments_fail_before_work(small_spots):
    with pytest.raises(ValueError, match="Unknown method"):
        pixnet.tl.train(small_spots, method="bleep", **TRAIN)
    with pytest.raises(ValueError, match="validation must be"):
        pixnet.tl.train(small_spots, **(TRAIN | {"validation": "random"}))
    with pytest.raises(ValueError, match="Unknown encoder"):
        pixnet.tl.train(small_spots, encoder="vgg", **TRAIN)
    with pytest.raises(ValueError, match="validation_sections"):
        pixnet.tl.train(small_spots, **(TRAIN | {"validation": "section"}))


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
        validation_sections=["st_image"],
        **(TRAIN | {"patch_size": 128, "validation": "section"}),
    )
    first = model.history[-1]
    assert first["train_shapes"] == small_spots["synthetic_visium_table"].n_obs  # the held-out section is not trained
    assert np.isfinite(first["val_loss"])
    with pytest.raises(ValueError, match="not among"):
        pixnet.tl.train(
            [small_spots, other], validation_sections=["nope"], **(TRAIN | {"patch_size": 128, "validation": "section"})
        )
    with pytest.raises(ValueError, match="more than patch_size=96"):
        pixnet.tl.train(other, **TRAIN)  # 100 µm spots do not fit 96 px patches at 1 µm/px


def test_a_preset_finer_than_the_image_works_at_the_images_resolution(caplog):
    coarse = pixnet.datasets.synthetic_spots("visium", size_um=600, n_genes=8, seed=2, microns_per_pixel=4.0)
    with caplog.at_level("WARNING", logger="pixnet"):
        model = pixnet.tl.train(coarse, epochs=0, **TINY_TRAINING)  # the "paper" preset: 1 µm/px
    assert model.microns_per_pixel == pytest.approx(4.0) and "instead of upsampling" in caplog.text
    with pytest.warns(UserWarning, match="4.0x finer than the image"):
        forced = pixnet.tl.train(coarse, epochs=0, microns_per_pixel=1.0, **TINY_TRAINING)
    assert forced.microns_per_pixel == 1.0


def test_options_by_name_and_in_mappings_are_checked_together_and_once(small_spots):
    from pixnet.tl._train import method_options

    _, params, plan = method_options(
        "pixnet", {"decoder_width": 8}, {"validation": "section"}, {"validation_sections": ["a"], "epochs": 2}
    )
    assert params.decoder_width == 8 and plan.validation_sections == ("a",) and plan.epochs == 2
    with pytest.raises(TypeError, match=r"given both as keywords and in method_params= / plan="):
        pixnet.tl.train(small_spots, plan={"epochs": 1}, epochs=2, progress=False)
    with pytest.raises(TypeError, match="its options are"):
        pixnet.tl.train(small_spots, decoder_widht=8, progress=False)


def test_a_checkpoint_dir_that_is_a_file_is_refused_before_training(tmp_path):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    (tmp_path / "checkpoints").write_text("a file")
    with pytest.raises(ValueError, match=r"checkpoint_dir=.* is a file; checkpoints need a folder"):
        pixnet.tl.train(sdata, checkpoint_dir=tmp_path / "checkpoints", progress=False)


def test_training_too_short_to_learn_says_so():
    from pixnet.training.loop import warn_if_undertrained

    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    with pytest.warns(UserWarning, match=r"only 2 optimiser steps in all \(2 epochs, ensemble members included\)"):
        pixnet.tl.train(sdata, epochs=1, progress=False)
    losses = ((1, 1.0), (1, 0.5), (2, 1.0), (2, 1.2))
    history = [{"member": m, "train_loss": loss, "train_steps": 60} for m, loss in losses]
    with pytest.warns(UserWarning, match=r"did not fall \(1 in the first epoch, 1.2 in the last, ensemble member 2\)"):
        warn_if_undertrained(history)


def test_training_shows_one_progress_bar_and_logs_epochs_at_info(capsys, caplog):
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=300, n_genes=6)
    with caplog.at_level(logging.INFO, logger="pixnet"):
        pixnet.tl.train(sdata, epochs=2, n_models=2, n_top_genes=4, map_units="normalized", progress=True)
    bars = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if "training" in line]
    assert bars and all("/4 [" in line for line in bars)  # one bar over 2 members x 2 epochs
    assert "loss=" in bars[-1] and "pcc=" in bars[-1]
    assert sum("epoch " in r.getMessage() for r in caplog.records) == 4
