"""Foundation-model vision transformers: timm key names, Hugging Face DINOv2 renaming, pyramids, cache lookup."""

import pytest
import torch
from safetensors.torch import save_file

from pixnet.nn import ENCODERS, EncoderConfig, PixNetNetwork, encoders
from pixnet.nn.encoders import cached_weights, load_vit_weights
from pixnet.nn.vit import VIT_CONFIGS, ViTConfig, ViTPyramid

# UNI2-h / H-optimus-0 in miniature: patch 14, SwiGLU, registers, no class position, layer scale
TINY = ViTConfig(
    embed_dim=32,
    depth=4,
    num_heads=2,
    patch_size=14,
    mlp_ratio=2.66667 * 2,
    swiglu=True,
    reg_tokens=4,
    class_pos_embed=False,
)


def _random_checkpoint(config: ViTConfig, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    return {k: torch.randn_like(v) for k, v in ViTPyramid(config).state_dict().items()}


def test_a_timm_format_checkpoint_loads_by_its_key_names_and_gives_the_pyramid(tmp_path):
    state = _random_checkpoint(TINY)
    # timm's names for UNI2-h / H-optimus-0 (a classifier head, unused, may be in the file)
    for key in (
        "reg_token",
        "pos_embed",
        "patch_embed.proj.weight",
        "blocks.3.attn.qkv.weight",
        "blocks.0.ls2.gamma",
        "blocks.1.mlp.fc1.weight",
        "norm.bias",
    ):
        assert key in state
    assert state["blocks.0.mlp.fc1.weight"].shape == (170, 32) and state["blocks.0.mlp.fc2.weight"].shape == (32, 85)
    save_file({**state, "head.weight": torch.zeros(2, 32)}, tmp_path / "model.safetensors")
    module = ViTPyramid(TINY)
    load_vit_weights(module, tmp_path / "model.safetensors")
    torch.testing.assert_close(module.state_dict()["blocks.2.attn.qkv.weight"], state["blocks.2.attn.qkv.weight"])
    features = module(torch.rand(2, 3, 96, 64))
    assert [tuple(f.shape) for f in features] == [
        (2, 32, 48, 32),
        (2, 32, 24, 16),
        (2, 32, 12, 8),
        (2, 32, 6, 4),
        (2, 32, 3, 2),
    ]
    assert all(torch.isfinite(f).all() for f in features)


def test_a_hugging_face_dinov2_checkpoint_is_renamed_to_the_same_network(tmp_path):
    config = ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=14, reg_tokens=4)  # Hibou-B in miniature
    state = _random_checkpoint(config, seed=1)
    hf = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.register_tokens": state["reg_token"],
        "embeddings.mask_token": torch.zeros(1, 32),
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    for i in range(4):
        layer, block = f"encoder.layer.{i}.", f"blocks.{i}."
        for kind in ("weight", "bias"):
            q, k, v = state[f"{block}attn.qkv.{kind}"].chunk(3)
            hf |= {
                f"{layer}attention.attention.{n}.{kind}": t
                for n, t in zip(("query", "key", "value"), (q, k, v), strict=True)
            }
            hf[f"{layer}attention.output.dense.{kind}"] = state[f"{block}attn.proj.{kind}"]
            for norm in ("norm1", "norm2"):
                hf[f"{layer}{norm}.{kind}"] = state[f"{block}{norm}.{kind}"]
            for fc in ("fc1", "fc2"):
                hf[f"{layer}mlp.{fc}.{kind}"] = state[f"{block}mlp.{fc}.{kind}"]
        hf[f"{layer}layer_scale1.lambda1"] = state[f"{block}ls1.gamma"]
        hf[f"{layer}layer_scale2.lambda1"] = state[f"{block}ls2.gamma"]
    torch.save(hf, tmp_path / "pytorch_model.bin")
    renamed, reference = ViTPyramid(config), ViTPyramid(config)
    load_vit_weights(renamed, tmp_path / "pytorch_model.bin")
    reference.load_state_dict(state)
    x = torch.rand(1, 3, 64, 64)
    for a, b in zip(renamed(x), reference(x), strict=True):
        torch.testing.assert_close(a, b)


def test_a_checkpoint_of_another_network_fails_clearly(tmp_path):
    save_file(
        _random_checkpoint(ViTConfig(embed_dim=64, depth=4, num_heads=2, patch_size=14)), tmp_path / "b.safetensors"
    )
    with pytest.raises(ValueError, match=r"missing 1 tensors \(e\.g\. \['reg_token'\]\); shapes differ \(cls_token"):
        load_vit_weights(ViTPyramid(TINY), tmp_path / "b.safetensors")
    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "resnet.safetensors")
    with pytest.raises(ValueError, match=r"missing \d+ tensors \(e\.g\. \['blocks\.0\."):
        load_vit_weights(ViTPyramid(TINY), tmp_path / "resnet.safetensors")


def test_weights_are_found_in_the_hugging_face_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="huggingface-cli download MahmoodLab/UNI2-h"):
        cached_weights("MahmoodLab/UNI2-h")
    repo = tmp_path / "models--MahmoodLab--UNI2-h"
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123" / "pytorch_model.bin").write_bytes(b"")
    assert cached_weights("MahmoodLab/UNI2-h") == repo / "snapshots" / "abc123" / "pytorch_model.bin"


def test_missing_weights_are_found_missing_before_the_network_is_built(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    built = []
    monkeypatch.setattr(encoders, "ViTPyramid", lambda *args: built.append(args))
    with pytest.raises(FileNotFoundError, match=r"--encoder-weights on the command line"):
        encoders.create_encoder("h_optimus_0", "hf")
    with pytest.raises(FileNotFoundError, match="No weights file"):
        encoders.create_encoder("h_optimus_0", tmp_path / "missing.safetensors")
    assert built == []  # a ViT-g is never allocated only to be thrown away


@pytest.mark.parametrize(
    ("name", "millions"), [("uni", 303.4), ("uni2_h", 681.4), ("h_optimus_0", 1134.8), ("hibou_b", 85.7)]
)
def test_registered_foundation_models_have_their_published_sizes(name, millions):
    assert name in ENCODERS
    with torch.device("meta"):  # no memory: the shapes only
        module = ViTPyramid(VIT_CONFIGS[name])
        features = module(torch.empty(1, 3, 224, 224))
    assert sum(p.numel() for p in module.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)
    assert [f.shape[-1] for f in features] == [112, 56, 28, 14, 7] and features[0].shape[1] == module.channels[0]


def test_pixnet_decodes_a_vit_pyramid():
    encoder = ViTPyramid(TINY)
    network = PixNetNetwork(encoder, EncoderConfig("uni2_h"), n_genes=3, decoder_width=16, output_stride=4).eval()
    with torch.no_grad():
        density = network(torch.rand(1, 3, 64, 64))
    assert density.shape == (1, 3, 64, 64) and (density >= 0).all()


def test_a_frozen_vit_trains_pixnet_without_caching_whole_section_pyramids(monkeypatch):
    import pixnet
    import pixnet.nn.vit
    import pixnet.training.loop

    monkeypatch.setitem(pixnet.nn.vit.VIT_CONFIGS, "hibou_b", TINY)  # the registered name, built small

    def whole_section_pyramids(*args, **kwargs):
        raise AssertionError("a ViT's pyramid of a whole section is not its patches' pyramids")

    monkeypatch.setattr(pixnet.training.loop, "PyramidCache", whole_section_pyramids)
    sdata = pixnet.datasets.synthetic_spots("visium", size_um=400, n_genes=6, seed=2)
    model = pixnet.tl.train(
        sdata,
        preset="cpu",
        encoder="hibou_b",
        encoder_weights="random",
        decoder_width=8,
        epochs=1,
        n_top_genes=4,
        progress=False,
    )
    assert model.config.encoder["name"] == "hibou_b" and model.config.n_models == 2 and model.epochs_trained == 2
    assert tuple(model.config.encoder["mean"]) == (0.7068, 0.5755, 0.722)  # the weights' normalisation
