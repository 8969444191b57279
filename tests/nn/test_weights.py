"""Encoder weights: the histology and ImageNet checkpoints load, wrong files fail clearly, nothing executes."""

import argparse
import pickle
import sys
import types

import pytest
import torch

from pixnet.nn import PixNetNetwork, create_encoder
from pixnet.nn.resnet import ResNet18Pyramid
from pixnet.nn.weights import load_checkpoint_file
from pixnet.utils.downloads import download


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


def test_damaged_weight_files_are_refused_when_loaded(tmp_path):
    from safetensors.torch import save_file

    state = ResNet18Pyramid().state_dict()
    state["conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": state}, tmp_path / "nan.pth")
    with pytest.raises(ValueError, match=r"NaN or infinite weights in 1 tensors \(e.g. \['state_dict.conv1.weight'\]"):
        create_encoder("resnet18", tmp_path / "nan.pth")
    save_file({"w": torch.ones(64, 64)}, tmp_path / "whole.safetensors")
    data = (tmp_path / "whole.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors is not a readable safetensors file"):
        load_checkpoint_file(tmp_path / "cut.safetensors")


class _Exploit:
    def __reduce__(self):
        return (open, (str(_Exploit.target), "w"))


def test_loading_never_executes_code(tmp_path):
    _Exploit.target = tmp_path / "pwned"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": _Exploit()}, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="will not unpickle"):
        load_checkpoint_file(tmp_path / "evil.ckpt")
    assert not _Exploit.target.exists()


def test_download_is_cached_and_checksummed(served, tmp_path):
    folder, url, _ = served
    (folder / "weights.bin").write_bytes(b"weights")
    cached = tmp_path / "cache" / "w.bin"
    with pytest.raises(ValueError, match="Checksum mismatch"):
        download(f"{url}/weights.bin", cached, sha256="0" * 64, progress=False)
    assert not cached.exists()  # a download with the wrong hash is not kept
    first = download(f"{url}/weights.bin", cached, progress=False)
    assert first.read_bytes() == b"weights" and first.with_name("w.bin.sha256").exists()
    (folder / "weights.bin").unlink()  # the cache answers from now on
    assert download(f"{url}/weights.bin", cached, progress=False) == first
    first.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="does not match its checksum"):
        download(f"{url}/weights.bin", cached, progress=False)


def test_a_failing_server_is_retried_then_reported(served, tmp_path, monkeypatch):
    import pixnet.utils.downloads

    monkeypatch.setattr(pixnet.utils.downloads, "RETRIES", 1)
    _, url, requests = served
    with pytest.raises(Exception, match="404"):
        download(f"{url}/missing.bin", tmp_path / "cache" / "missing.bin", progress=False)
    assert requests == ["/missing.bin", "/missing.bin"]  # the first try and one retry
    assert not (tmp_path / "cache" / "missing.bin").exists()


def test_efficientnet_lite0_pyramid_loads_imagenet_weights():
    encoder, config = create_encoder("efficientnet_lite0", "imagenet")
    features = encoder(torch.rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in features] == list(encoder.channels)
    assert config.weights == "imagenet"
    network = PixNetNetwork(encoder, config, n_genes=3, decoder_width=32)
    assert network(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
