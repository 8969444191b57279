"""Model folders are untrusted input, and saving one never leaves neither the old nor the new model."""

import itertools
import json
import os
import subprocess
import sys
import threading

import pytest
import torch
from conftest import killed_at_rename, tiny_pixnet
from safetensors.torch import load_file, save_file

from pixnet.models import PixNet, load_model
from pixnet.utils.atomic import folder_lock, replace_folder, staging_folder


@pytest.fixture
def saved(tmp_path):
    return tiny_pixnet().save(tmp_path / "model")


def _edit_config(path, **fields):
    record = json.loads((path / "config.json").read_text())
    record["config"].update(fields)
    (path / "config.json").write_text(json.dumps(record))


def _same_weights(a: PixNet, b: PixNet) -> bool:
    sa, sb = a.network.state_dict(), b.network.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_records_hashes_and_load_refuses_a_modified_weights_file(saved):
    record = json.loads((saved / "config.json").read_text())
    assert set(record["files"]) == {"model.safetensors"} and len(record["files"]["model.safetensors"]) == 64
    assert _same_weights(PixNet.load(saved), tiny_pixnet())
    state = load_file(saved / "model.safetensors")
    state["head.bias"] = state["head.bias"] + 1
    save_file(state, saved / "model.safetensors")
    with pytest.raises(ValueError, match="does not match the hash"):
        PixNet.load(saved)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"decoder_width": 1_000_000}, "'decoder_width' must be an integer between 1 and 8192"),
        ({"decoder_width": 64}, "has shape .* describes"),  # plausible, but not the weights' network
        ({"microns_per_pixel": 1e-4}, "'microns_per_pixel' must be a pixel size"),
        ({"microns_per_pixel": 0}, "'microns_per_pixel' must be a pixel size"),
        ({"patch_size": "64"}, "'patch_size' must be an integer"),
        ({"genes": "ABCDEFGH"}, "'genes' must be a non-empty list of unique gene names"),
        ({"genes": ["G0", "G0", "G1"]}, "'genes' must be a non-empty list of unique gene names"),
        ({"genes": ["G0", "G1", "G2", "G3"]}, "has shape"),  # one gene more than the head has
        ({"output_stride": 3}, "'output_stride' must be 1, 2 or 4"),
        ({"unknown_field": 1}, "is not a PixNet config"),
        # values that would load and then compute NaN or infinity
        ({"encoder": {"name": "resnet18", "mean": [0.5] * 3, "std": [0.0, 0.5, 0.5]}}, "'encoder' must be"),
        ({"encoder": {"name": "resnet18", "mean": [float("nan")] * 3, "std": [0.5] * 3}}, "'encoder' must be"),
        ({"encoder": {"name": "resnet18", "mean": [0.5], "std": [0.5] * 3}}, "three finite 'mean' values"),
        ({"normalization": {"method": "total_log", "params": {"target_sum": -1}}}, "'normalization' must be"),
        ({"normalization": {"method": "total_log", "params": {"reference_area_um2": 0}}}, "'target_sum' and"),
        ({"normalization": {"method": "zscore"}}, "'method' one of"),
    ],
)
def test_a_config_that_does_not_describe_the_weights_is_refused_before_building(saved, fields, message):
    _edit_config(saved, **fields)
    with pytest.raises(ValueError, match=message) as error:
        PixNet.load(saved)
    assert str(saved) in str(error.value)


def test_damaged_files_name_the_file(saved):
    (saved / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match=r"config.json is not valid JSON"):
        load_model(saved)
    other = tiny_pixnet().save(saved.with_name("other"))
    record = json.loads((other / "config.json").read_text())
    del record["files"]  # as models saved before hashes were recorded
    (other / "config.json").write_text(json.dumps(record))
    (other / "model.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match=r"model.safetensors is not a readable safetensors file"):
        PixNet.load(other)


def test_nan_weights_are_refused(tmp_path):
    model = tiny_pixnet()
    with torch.no_grad():
        model.network.head.bias[0] = float("nan")
    path = model.save(tmp_path / "nan")
    with pytest.raises(ValueError, match=r"'head\.bias' holds NaN"):
        PixNet.load(path)


def _stage(path, model):
    """What save does up to the swap: the new folder complete beside the target."""
    staged = staging_folder(path)
    tmp = model.save(path.with_name("scratch"))
    for f in tmp.iterdir():
        f.rename(staged / f.name)
    tmp.rmdir()
    return staged


def test_a_save_killed_between_the_renames_is_completed_by_the_next_reader(saved):
    new = tiny_pixnet()
    with torch.no_grad():
        new.network.head.bias.fill_(0.5)
    staged = _stage(saved, new)
    (saved.with_name(".model.swap")).write_text(staged.name)  # the journal, then the first rename: then killed
    saved.rename(saved.with_name(".model.old"))
    assert not saved.exists()
    loaded = load_model(saved)
    assert torch.equal(loaded.network.head.bias, new.network.head.bias)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_a_save_killed_at_every_rename_leaves_the_old_model_or_the_new_one(saved, monkeypatch):
    models = [tiny_pixnet(), tiny_pixnet()]
    with torch.no_grad():
        models[1].network.head.bias.fill_(0.5)
    current = 0
    for kill_at in itertools.count(1):
        finished = killed_at_rename(monkeypatch, kill_at, lambda: models[1 - current].save(saved, overwrite=True))  # noqa: B023
        loaded = load_model(saved)  # the next reader completes what the kill left
        same = [_same_weights(loaded, m) for m in models]
        assert any(same), f"killed at rename {kill_at}: neither model"
        current = same.index(True)
        assert sorted(p.name for p in saved.parent.iterdir()) == ["model"], kill_at
        if finished:
            break
    assert kill_at >= 3  # the journal, the old folder aside, the new one in


def test_a_save_killed_before_the_swap_leaves_the_old_model_and_the_next_save_cleans_up(saved):
    staged = staging_folder(saved)
    (staged / "model.safetensors").write_bytes(b"partial")  # killed while writing: no journal yet
    assert _same_weights(PixNet.load(saved), tiny_pixnet())
    tiny_pixnet().save(saved, overwrite=True)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_a_live_writer_holds_the_lock_and_a_dead_one_does_not(tmp_path):
    path = tmp_path / "model"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".model.lock").write_text(str(sleeper.pid))
        with pytest.raises(BlockingIOError, match=f"being written by process {sleeper.pid}"):
            tiny_pixnet().save(path)
    finally:
        sleeper.kill()
        sleeper.wait()
    tiny_pixnet().save(path)  # the lock's owner is gone: taken over
    assert PixNet.load(path).genes == ["G0", "G1", "G2"] and not (tmp_path / ".model.lock").exists()


def test_two_writers_of_one_path_cannot_both_succeed(tmp_path):
    path, model, results = tmp_path / "model", tiny_pixnet(), []
    barrier = threading.Barrier(4)

    def write():
        barrier.wait()
        try:
            model.save(path)
            results.append("saved")
        except (FileExistsError, BlockingIOError) as error:
            results.append(type(error).__name__)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("saved") == 1, results
    assert _same_weights(PixNet.load(path), model)


def test_saving_over_a_symlink_replaces_its_target(tmp_path):
    real = tiny_pixnet().save(tmp_path / "elsewhere" / "model")
    link = tmp_path / "link"
    link.symlink_to(real)
    new = tiny_pixnet()
    with torch.no_grad():
        new.network.head.bias.fill_(2.0)
    assert new.save(link, overwrite=True) == real
    assert link.is_symlink() and torch.equal(PixNet.load(link).network.head.bias, new.network.head.bias)


def test_an_unwritable_folder_is_refused_before_writing(tmp_path, monkeypatch):
    # root may write into read-only folders, so ask the check what a user without write access would get
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(PermissionError, match="is not writable"):
        tiny_pixnet().save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_replace_folder_needs_no_existing_target(tmp_path):
    path = tmp_path / "fresh"
    staged = staging_folder(path)
    (staged / "x").write_text("1")
    with folder_lock(path):
        replace_folder(staged, path)
    assert (path / "x").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_a_history_that_is_not_a_list_of_records_is_refused(saved):
    record = json.loads((saved / "config.json").read_text())
    record["history"] = "trained"
    (saved / "config.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match="field 'history' must be a list of per-epoch records"):
        load_model(saved)


def test_overwrite_replaces_a_model_folder_but_never_a_users_folder(saved, tmp_path):
    tiny_pixnet().save(saved, overwrite=True)  # a model folder: replaced
    users = tmp_path / "my_results"
    users.mkdir()
    (users / "figure.png").write_bytes(b"not a model")
    with pytest.raises(FileExistsError, match="is not a pixnet model folder"):
        tiny_pixnet().save(users, overwrite=True)
    assert [p.name for p in users.iterdir()] == ["figure.png"]  # untouched
    empty = tmp_path / "empty"
    empty.mkdir()
    assert load_model(tiny_pixnet().save(empty, overwrite=True)).genes == tiny_pixnet().genes
