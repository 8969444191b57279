"""``pixnet.settings``: package-wide defaults that per-call arguments override."""

import pytest
import torch

import pixnet
from pixnet.utils.device import resolve_device
from pixnet.utils.downloads import cache_dir


@pytest.fixture(autouse=True)
def _restore_settings():
    yield
    pixnet.settings.reset()


def test_progress_default_and_per_call_override(capsys, tmp_path):
    pixnet.settings.progress = False
    pixnet.datasets.synthetic_visium_hd(tmp_path / "quiet", size_um=128, n_genes=4, seed=0)  # progress=None
    assert "synthetic Visium HD" not in capsys.readouterr().err
    pixnet.datasets.synthetic_visium_hd(tmp_path / "loud", size_um=128, n_genes=4, seed=0, progress=True)
    assert "synthetic Visium HD" in capsys.readouterr().err


def test_device_and_cache_dir(tmp_path, monkeypatch):
    pixnet.settings.device = "cpu"
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("meta") == torch.device("meta")  # an explicit device wins
    monkeypatch.setenv("PIXNET_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    pixnet.settings.cache_dir = tmp_path / "mine"
    assert cache_dir() == tmp_path / "mine"


def test_bad_settings_are_refused():
    with pytest.raises(TypeError, match="progress must be True or False"):
        pixnet.settings.progress = "no"
    with pytest.raises(ValueError, match="is not a torch device"):
        pixnet.settings.device = "gpu0"
    with pytest.raises(AttributeError, match="has no setting 'verbosity'"):
        pixnet.settings.verbosity = 2
    assert pixnet.settings.progress is True and pixnet.settings.device == "auto"
