"""Deep ensembles of PixNet decoders on one frozen encoder (``n_models``)."""

import pytest
import torch
from conftest import TINY_ENSEMBLE
from safetensors.torch import load_file

import pixnet
from pixnet.models import PixNet
from pixnet.nn import PixNetNetwork, create_encoder
from pixnet.training.loop import EpochTracker

SMALL = TINY_ENSEMBLE


@pytest.fixture(scope="module")
def spots():
    return pixnet.datasets.synthetic_spots("visium", size_um=700, n_genes=6, seed=3)


def test_the_ensemble_map_is_the_mean_of_its_members_maps():
    torch.manual_seed(0)
    encoder, config = create_encoder("resnet18")
    network = PixNetNetwork(encoder, config, n_genes=3, decoder_width=16, output_stride=4, n_members=3).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        members = [network.member(m)(images) for m in range(3)]
        image, row, col = torch.tensor([0, 1]), torch.tensor([3, 60]), torch.tensor([9, 33])
        sums = network(images, at=(image, row, col), sum_by=(torch.tensor([0, 0]), 1))
    torch.testing.assert_close(network(images), sum(members) / 3)
    torch.testing.assert_close(sums[0], sum(m[image, :, row, col].sum(0) for m in members) / 3)
    assert not torch.allclose(members[0], members[1])  # each member has its own initialisation
    with pytest.raises(IndexError):
        network.member(3)


def test_ensemble_trains_every_member_and_round_trips(spots, tmp_path):
    model = pixnet.tl.train(spots, epochs=1, n_models=2, validation="region", **SMALL)  # epoch 0 recorded
    assert model.config.n_models == 2 and "x 2 models" in repr(model)
    assert [(h["member"], h["epoch"]) for h in model.history] == [(1, 0), (1, 1), (2, 0), (2, 1)]
    untrained = pixnet.tl.train(spots, epochs=0, n_models=2, **SMALL)  # same seed, same start
    for member in range(2):
        trained, start = model.network.member_modules(member)[1], untrained.network.member_modules(member)[1]
        assert not torch.equal(trained.weight, start.weight), member
    model.save(tmp_path / "ensemble")
    loaded = PixNet.load(tmp_path / "ensemble")
    tiles = torch.randint(0, 255, (1, 3, 96, 96), dtype=torch.uint8)
    torch.testing.assert_close(loaded.predict_tiles(tiles), model.predict_tiles(tiles))
    pixnet.tl.predict(spots, "synthetic_visium_spots", model, key_added="ens", tile_size=256, progress=False)
    table = spots.tables["ens_synthetic_visium_spots"]
    assert list(table.var_names) == model.genes and torch.isfinite(torch.as_tensor(table.X)).all()


def test_ensembles_need_a_frozen_encoder_and_pixnet(spots):
    with pytest.raises(ValueError, match="needs freeze_encoder=True"):
        pixnet.tl.train(spots, epochs=1, n_models=2, freeze_encoder=False, **SMALL)
    with pytest.raises(TypeError, match="option of method 'pixnet' only"):
        pixnet.tl.train(spots, epochs=1, n_models=2, method="image2gene", **SMALL)
    with pytest.raises(ValueError, match="n_models must be a finite number > 0"):
        pixnet.tl.train(spots, epochs=1, n_models=0, **SMALL)


def test_a_run_killed_in_the_second_member_resumes_to_the_same_ensemble(spots, tmp_path, monkeypatch):
    settings = {"epochs": 2, "n_models": 2, "validation": None, **SMALL}
    straight = pixnet.tl.train(spots, checkpoint_dir=tmp_path / "straight", **settings)
    end_epoch = EpochTracker.end_epoch

    def killed_after_the_second_members_first_epoch(self, record, *args, **kwargs):
        stop = end_epoch(self, record, *args, **kwargs)
        if self.member == 1 and record["epoch"] == 1:
            raise KeyboardInterrupt
        return stop

    monkeypatch.setattr(EpochTracker, "end_epoch", killed_after_the_second_members_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        pixnet.tl.train(spots, checkpoint_dir=tmp_path / "split", **settings)
    monkeypatch.setattr(EpochTracker, "end_epoch", end_epoch)
    resumed = pixnet.tl.train(spots, checkpoint_dir=tmp_path / "split", resume=tmp_path / "split", **settings)
    assert [(h["member"], h["epoch"]) for h in resumed.history] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    for key, value in straight.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[key], value, msg=key)
    saved = load_file(tmp_path / "split" / "last" / "model.safetensors")
    assert any(key.startswith("ensemble.0.") for key in saved)
