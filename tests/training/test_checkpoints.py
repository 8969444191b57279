"""Training schedules, weight averaging, and resuming a run from its checkpoint."""

import logging
import math

import pytest
import torch
from conftest import tiny_pixnet

import pixnet
from pixnet.training.loop import EpochTracker, TrainingConfig, learning_rate_schedule


def _tracker(model, config, checkpoint_dir=None, resume=None):
    optimizer = torch.optim.Adam(model.network.parameters(), lr=config.learning_rate)
    return EpochTracker(model, optimizer, config, checkpoint_dir, resume, progress=False, device="cpu")


def _set_bias(model, value):
    with torch.no_grad():
        model.network.head.bias.fill_(value)


def _epoch(tracker, epoch, loss):
    return tracker.end_epoch({"epoch": epoch, "train_loss": loss})


def test_cosine_schedule_decays_from_the_learning_rate_to_zero():
    constant = learning_rate_schedule(TrainingConfig(epochs=4, learning_rate=1e-3))
    cosine = learning_rate_schedule(TrainingConfig(epochs=4, learning_rate=1e-3, lr_schedule="cosine"))
    assert constant(0) == constant(3.9) == 1e-3
    assert cosine(0) == pytest.approx(1e-3) and cosine(2) == pytest.approx(5e-4) and cosine(4) == pytest.approx(0)
    assert cosine(1) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 4)))
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainingConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="average_epochs must be in"):
        TrainingConfig(epochs=3, average_epochs=4)


def test_averaging_keeps_the_mean_of_the_last_epochs_weights():
    model = tiny_pixnet()
    tracker = _tracker(model, TrainingConfig(epochs=3, average_epochs=2))
    for epoch, (bias, loss) in enumerate([(1.0, 0.1), (2.0, 0.5), (4.0, 0.9)], start=1):
        _set_bias(model, bias)
        _epoch(tracker, epoch, loss)
    tracker.finish()
    torch.testing.assert_close(model.network.head.bias, torch.full((3,), 3.0))  # not epoch 1's best loss
    assert model.history[-1]["averaged_epochs"] == 2


def test_resume_returns_the_best_epoch_and_the_average_of_an_uninterrupted_run(tmp_path):
    config = TrainingConfig(epochs=3)
    model = tiny_pixnet()
    tracker = _tracker(model, config, checkpoint_dir=tmp_path)
    _set_bias(model, 1.0)
    _epoch(tracker, 1, 0.1)  # the best epoch
    _set_bias(model, 2.0)
    _epoch(tracker, 2, 0.5)  # then killed
    resumed = tiny_pixnet()
    tracker = _tracker(resumed, config, resume=tmp_path)
    assert tracker.start_epoch == 2
    tracker.finish()
    torch.testing.assert_close(resumed.network.head.bias, torch.full((3,), 1.0))

    averaged = TrainingConfig(epochs=3, average_epochs=3)
    tracker = _tracker(model := tiny_pixnet(), averaged, checkpoint_dir=tmp_path / "avg")
    for epoch, bias in [(1, 1.0), (2, 2.0)]:
        _set_bias(model, bias)
        _epoch(tracker, epoch, 1.0)
    resumed = tiny_pixnet()
    tracker = _tracker(resumed, averaged, resume=tmp_path / "avg")
    _set_bias(resumed, 6.0)
    _epoch(tracker, 3, 1.0)
    tracker.finish()
    torch.testing.assert_close(resumed.network.head.bias, torch.full((3,), 3.0))


def test_checkpoint_is_one_folder(tmp_path):
    model = tiny_pixnet()
    tracker = _tracker(model, TrainingConfig(epochs=2), checkpoint_dir=tmp_path)
    _epoch(tracker, 1, 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == [
        "config.json",
        "model.safetensors",
        "trainer_state.pt",
    ]
    assert pixnet.models.load_model(tmp_path / "last").genes == model.genes


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"genes": ("G0", "G1", "G9")}, r"genes: \['G0', 'G1', 'G2'\] in the checkpoint, \['G0', 'G1', 'G9'\] now"),
        ({"microns_per_pixel": 2.0}, "microns_per_pixel: 1.0 in the checkpoint, 2.0 now"),
    ],
)
def test_resume_refuses_a_run_that_differs_from_the_checkpoint(tmp_path, changed, message):
    tracker = _tracker(tiny_pixnet(), TrainingConfig(epochs=2), checkpoint_dir=tmp_path)
    _epoch(tracker, 1, 1.0)
    with pytest.raises(ValueError, match=message):
        _tracker(tiny_pixnet(**changed), TrainingConfig(epochs=2), resume=tmp_path)


def test_resume_uses_the_new_learning_rate_and_says_so(tmp_path, caplog):
    tracker = _tracker(tiny_pixnet(), TrainingConfig(epochs=2, learning_rate=1e-3), checkpoint_dir=tmp_path)
    _epoch(tracker, 1, 1.0)
    with caplog.at_level(logging.WARNING):
        resumed = _tracker(tiny_pixnet(), TrainingConfig(epochs=2, learning_rate=1e-4), resume=tmp_path)
    assert [g["lr"] for g in resumed.optimizer.param_groups] == [1e-4]
    assert "learning_rate=0.0001 (the checkpoint's run had 0.001)" in caplog.text
