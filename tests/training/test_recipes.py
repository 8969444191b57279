"""The CPU recipe: presets, the decoder's output stride, and cached encoder pyramids."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_ENSEMBLE, TINY_TRAINING

import pixnet
from pixnet.nn import EncoderConfig, PixNetNetwork, create_encoder
from pixnet.nn.pixnet import bilinear_at, bilinear_sums
from pixnet.training.presets import PRESETS, TrainingPreset, resolve_preset
from pixnet.training.pyramids import ALIGN, dihedral_variants, pad_image, variant_box


def test_bilinear_at_the_pixels_equals_upsampling_the_whole_map():
    coarse = torch.rand(2, 5, 4, 6)
    for stride in (2, 4):
        full = F.interpolate(coarse, scale_factor=stride, mode="bilinear", align_corners=False)
        image = torch.randint(0, 2, (300,))
        row, col = torch.randint(0, 4 * stride, (300,)), torch.randint(0, 6 * stride, (300,))
        assert torch.allclose(bilinear_at(coarse, stride, image, row, col), full[image, :, row, col], atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_output_stride_keeps_the_input_size_and_the_pixel_path(stride):
    torch.manual_seed(0)
    encoder, config = create_encoder("resnet18")
    network = PixNetNetwork(encoder, config, n_genes=3, decoder_width=32, output_stride=stride).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        maps = network(images)
        image, row, col = torch.tensor([0, 1, 1]), torch.tensor([0, 17, 63]), torch.tensor([5, 40, 63])
        at = network(images, at=(image, row, col))
    assert maps.shape == (2, 3, 64, 64) and (maps >= 0).all()
    assert torch.allclose(at, maps[image, :, row, col], atol=1e-6)
    stages = len(network.decoder.stages)
    assert stages == {1: 5, 2: 4, 4: 3}[stride]


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_variant_box_finds_the_rotated_patch(k, flip):
    image = torch.arange(96 * 160).view(96, 160)  # every pixel its own value
    moved = torch.rot90(image, k, dims=(0, 1))
    moved = moved.flip(-1) if flip else moved
    y0, x0, size = 32, 64, 32
    patch = torch.rot90(image[y0 : y0 + size, x0 : x0 + size], k, dims=(0, 1))
    patch = patch.flip(-1) if flip else patch
    vy, vx = variant_box(y0, x0, size, (96, 160), k, flip)
    assert vy % ALIGN == 0 and vx % ALIGN == 0
    assert torch.equal(moved[vy : vy + size, vx : vx + size], patch)


def test_pad_image_and_variants():
    padded = pad_image(np.zeros((40, 70, 3), np.uint8), patch_size=128)
    assert padded.shape == (128, 128, 3) and (padded[40:] == 255).all()
    assert pad_image(np.zeros((40, 200, 3), np.uint8), 32).shape == (64, 224, 3)
    variants = dihedral_variants(np.random.default_rng(0))
    assert sorted((v[0], v[1]) for v in variants) == [(k, f) for k in range(4) for f in (False, True)]


def test_presets_are_chosen_by_device_and_overridden_by_arguments():
    assert resolve_preset("auto", "cpu").name == "cpu"
    assert resolve_preset("auto", "cpu", finest_shape_um=2.0).name == "cpu_fine"
    assert resolve_preset("auto", "cpu", finest_shape_um=55.0).name == "cpu"
    assert resolve_preset("auto", "cuda", finest_shape_um=8.0).name == "paper"
    assert resolve_preset("auto", "cuda").name == "paper"
    assert resolve_preset("paper").encoder_weights == "ciga"
    assert PRESETS["cpu"].updated(epochs=3, patch_size=None).epochs == 3
    custom = TrainingPreset(**{**PRESETS["cpu"].to_dict(), "name": "mine", "epochs": 1})
    assert resolve_preset(custom) is custom
    with pytest.raises(ValueError, match="Unknown preset"):
        resolve_preset("gpu")


@pytest.fixture(scope="module")
def spots():
    return pixnet.datasets.synthetic_spots("visium", size_um=1600, n_genes=8, seed=2)


SMALL = {**TINY_ENSEMBLE, "decoder_width": 32}


def test_frozen_encoder_runs_once_per_section_and_variant(spots):
    calls = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: calls.append(1) if type(module).__name__.endswith("Pyramid") else None
    )
    try:
        model = pixnet.tl.train(spots, epochs=3, validation=None, **SMALL)
    finally:
        hook.remove()
    training = model.config.training
    assert training["preset"] == "cpu" and training["freeze_encoder"] and model.config.output_stride == 4
    assert model.microns_per_pixel == 4.0 and model.config.n_models == 2 and len(model.history) == 2 * 3
    assert len(calls) == 8  # one section, eight rotations / flips, whatever the number of epochs and members
    unfrozen = pixnet.tl.train(spots, epochs=0, validation=None, **{**SMALL, "freeze_encoder": False})
    assert unfrozen.config.n_models == 1  # the preset's ensemble needs its frozen encoder


def test_cpu_recipe_fits_the_training_spots(spots):
    # the preset as it is (frozen ImageNet EfficientNet-Lite0), only shorter, read out through the dense map, in
    # one of the units its "auto" chooses from (the choice: tests/models/test_map_units.py); held-out sections are
    # the benchmark's job (benchmarks/real_sections.py)
    settings = {"batch_size": 4, "n_top_genes": 8, "validation": None, "map_units": "normalized", "progress": False}
    scores = {}
    for epochs in (0, 10):
        model = pixnet.tl.train(spots, epochs=epochs, **settings)
        pixnet.tl.predict(spots, "synthetic_visium_spots", model, key_added=f"e{epochs}", tile_size=256, progress=False)
        scores[epochs] = pixnet.tl.evaluate(spots, f"e{epochs}_synthetic_visium_spots").loc["pooled", "pcc_m"]
    assert model.config.encoder["weights"] == "imagenet" and model.config.output_stride == 4
    assert scores[10] > scores[0] + 0.1, scores


def test_same_seed_same_cached_model(spots):
    a, b = (pixnet.tl.train(spots, seed=3, epochs=1, validation=None, **SMALL) for _ in range(2))
    for (name, x), y in zip(a.network.state_dict().items(), b.network.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert EncoderConfig.from_dict(a.config.encoder).weights == "random"


def test_dihedral_average_is_equivariant_to_rotations_and_flips():
    config = pixnet.models.PixNetConfig(
        genes=["a", "b"],
        gene_selection={"method": "list", "params": {}},
        normalization=pixnet.pp.Normalization("total_log").to_dict(),
        microns_per_pixel=4.0,
        patch_size=64,
        encoder=EncoderConfig("resnet18").to_dict(),
        decoder_width=16,
        output_stride=4,
    )
    torch.manual_seed(0)
    model = pixnet.models.PixNet.build(config)
    tile = torch.rand(1, 3, 64, 64)
    plain = model.predict_tiles(tile)
    assert not torch.allclose(torch.rot90(plain, 1, dims=(-2, -1)), model.predict_tiles(torch.rot90(tile, 1, (-2, -1))))
    model.config.dihedral_average = True
    averaged = model.predict_tiles(tile)
    for turned, expected in (
        (torch.rot90(tile, 1, (-2, -1)), torch.rot90(averaged, 1, (-2, -1))),
        (tile.flip(-1), averaged.flip(-1)),
    ):
        assert torch.allclose(model.predict_tiles(turned), expected, atol=1e-5)


def test_bilinear_sums_equal_summing_the_upsampled_map():
    coarse = torch.rand(2, 3, 4, 5, requires_grad=True)
    image, row, col = torch.randint(0, 2, (500,)), torch.randint(0, 16, (500,)), torch.randint(0, 20, (500,))
    shape = torch.randint(0, 7, (500,))
    full = F.interpolate(coarse, scale_factor=4, mode="bilinear", align_corners=False)
    expected = torch.zeros(7, 3).index_add_(0, shape, full[image, :, row, col])
    got = bilinear_sums(coarse, 4, image, row, col, shape, 7)
    assert torch.allclose(got, expected, atol=1e-5)
    (grad,) = torch.autograd.grad(got.sum(), coarse)
    (expected_grad,) = torch.autograd.grad(expected.sum(), coarse)
    assert torch.allclose(grad, expected_grad, atol=1e-5)


def test_auxiliary_loss_needs_the_full_resolution_decoder(spots):
    with pytest.raises(ValueError, match="needs output_stride=1"):
        pixnet.tl.train(spots, preset="cpu", image2gene_weight=0.5, progress=False)


def test_poisson_loss_trains_and_is_recorded(spots):
    preset = PRESETS["cpu"].updated(
        loss="poisson", encoder="resnet18", encoder_weights="random", decoder_width=32, n_models=1
    )
    model = pixnet.tl.train(spots, preset=preset, epochs=3, n_top_genes=4, validation=None, progress=False)
    assert model.config.training["loss"] == "poisson"
    losses = [h["train_loss"] for h in model.history]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="loss must be one of"):
        pixnet.tl.train(spots, preset=PRESETS["cpu"].updated(loss="nb"), epochs=0, progress=False)


def test_pixel_skip_decodes_cached_pyramids_as_the_whole_network_does():
    torch.manual_seed(0)
    encoder, config = create_encoder("resnet18")
    network = PixNetNetwork(encoder, config, n_genes=3, decoder_width=32, output_stride=1, pixel_skip=8).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        whole = network(images)
        x = network.normalise(images)
        cached = network.decode(network.encoder(x), (64, 64), image=x)
        changed = network(images * torch.tensor([1.0, 0.5, 1.0]).view(1, 3, 1, 1))
    assert network.uses_pixels and torch.allclose(whole, cached, atol=1e-6)
    assert not torch.allclose(whole, changed)
    with pytest.raises(ValueError, match="pass image="):
        network.decode(network.encoder(x), (64, 64))
    with pytest.raises(ValueError, match="pixel_skip feeds the full-resolution stage; it needs output_stride=1"):
        PixNetNetwork(encoder, config, n_genes=3, decoder_width=32, output_stride=4, pixel_skip=8)


def test_auto_preset_trains_visium_hd_bins_at_a_map_that_resolves_2um(hd_sdata, tmp_path):
    model = pixnet.tl.train(
        hd_sdata,
        shapes=["bins_8um", "bins_16um"],
        epochs=2,
        steps_per_epoch=3,
        n_top_genes=4,
        device="cpu",
        progress=False,
    )
    training = model.config.training
    assert training["preset"] == "cpu_fine" and model.microns_per_pixel == 1.0 and model.map_detail_um == 1.0
    assert model.config.pixel_skip == 16 and training["freeze_encoder"]
    assert [h["train_steps"] for h in model.history] == [3, 3]  # steps per epoch, whatever the section's size
    loaded = pixnet.models.PixNet.load(model.save(tmp_path / "fine"))
    assert loaded.config.pixel_skip == 16
    tile = torch.rand(1, 3, 64, 64)
    assert torch.equal(loaded.predict_tiles(tile), model.predict_tiles(tile))


def test_epoch_order_passes_over_small_sections_and_samples_large_ones():
    from pixnet.training.loop import TrainingConfig, epoch_order

    rng = np.random.default_rng(0)
    small = epoch_order(5, TrainingConfig(batch_size=2, steps_per_epoch=6), rng)
    assert len(small) == 12 and np.bincount(small).min() >= 2 and np.bincount(small).max() <= 3
    large = epoch_order(100, TrainingConfig(batch_size=2, steps_per_epoch=6), rng)
    assert len(large) == 12 and len(set(large)) == 12
    assert sorted(epoch_order(7, TrainingConfig(), rng)) == list(range(7))


def test_a_presets_epochs_on_a_small_section_still_make_the_minimum_of_steps():
    from pixnet.training.loop import MIN_STEPS, TrainingConfig, epoch_order

    rng = np.random.default_rng(0)
    floor = TrainingConfig(batch_size=4, epochs=5, min_steps=MIN_STEPS)
    assert len(epoch_order(6, floor, rng, n_members=2)) == 4 * 10  # 10 steps x 5 epochs x 2 members = 100
    assert sorted(epoch_order(400, floor, rng, n_members=2)) == list(range(400))  # long enough: one pass


def test_training_with_the_presets_epochs_meets_the_floor_but_chosen_epochs_are_kept(tiny_spots, monkeypatch):
    import pixnet.models.base

    monkeypatch.setattr(pixnet.models.base, "MIN_STEPS", 30)  # 100 in earnest: fewer, to be quick
    options = {k: v for k, v in TINY_TRAINING.items() if k != "preset"}
    preset = pixnet.tl.PRESETS["paper"].updated(epochs=2)
    floored = pixnet.tl.train(tiny_spots, preset=preset, **options)
    assert [h["train_steps"] for h in floored.history if "train_steps" in h] == [15, 15]
    chosen = pixnet.tl.train(tiny_spots, preset=preset, epochs=2, **options)
    assert sum(h["train_steps"] for h in chosen.history if "train_steps" in h) == 12  # 6 a pass
