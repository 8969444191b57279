"""The PixNet decoder (Eqs. 3-8 of Zhang, Yang & Pan).

Depth-to-space and bilinear upsampling stages fuse refined skip features through residual linear-attention
blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NORMS", "OUTPUT_STRIDES", "PixNetDecoder"]

NORMS = ("channel", "batch")
OUTPUT_STRIDES = (1, 2, 4)


class ChannelNorm(nn.Module):
    """Layer norm over the channels of each pixel: the same in training and in tiled prediction.

    Batch norm normalises with statistics of the training batch but with running averages at prediction,
    and group norm with statistics of the whole patch or tile; both make a pixel's output depend on what else
    is being processed, which a dense map read out tile by tile must not.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"channel"`` (:class:`ChannelNorm`) or ``"batch"`` (models saved before pixnet 0.2)."""
    if kind == "channel":
        return ChannelNorm(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"Unknown decoder norm {kind!r}; choose one of {NORMS}.")


class CompositeConvBlock(nn.Sequential):
    """CB: (Conv3x3 -> norm -> ReLU) twice."""

    def __init__(self, in_channels: int, channels: int, norm: str = "channel") -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
        )


class SmallInputConv2d(nn.Conv2d):
    """A 3x3 convolution computed as one matrix product (im2col) on inputs of a few pixels.

    The deepest stage sees 2 x 2 pixels of a 64-pixel training patch; there the library convolution's weight
    gradient is 4x slower than the product, and this layer has most of the decoder's parameters. Larger inputs
    (tiles in prediction) take the library path; both compute the same convolution.
    """

    max_pixels = 16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        if (
            h * w > self.max_pixels
            or self.padding_mode != "zeros"
            or self.groups != 1
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
        ):
            return super().forward(x)
        columns = F.unfold(x, self.kernel_size, padding=self.padding)  # (b, in * 9, h * w)
        y = self.weight.flatten(1) @ columns
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.view(b, self.out_channels, h, w)


class DepthToSpaceUp(nn.Module):
    """Eq. 3: Conv3x3 (K = C * 2^d filters, d = 2) -> ReLU -> depth-to-space x2 -> Conv3x3 -> ReLU -> CB."""

    def __init__(self, in_channels: int, channels: int, norm: str = "channel") -> None:
        super().__init__()
        self.expand = SmallInputConv2d(in_channels, in_channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.block = CompositeConvBlock(channels, channels, norm)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.shuffle(F.relu(self.expand(x)))
        del size  # the network pads inputs to a multiple of 32, so x2 lands exactly on the skip level
        return self.block(F.relu(self.conv(x)))


class BilinearUp(nn.Module):
    """Eq. 4: CB -> bilinear x2 -> CB."""

    def __init__(self, in_channels: int, channels: int, norm: str = "channel") -> None:
        super().__init__()
        self.before = CompositeConvBlock(in_channels, channels, norm)
        self.after = CompositeConvBlock(channels, channels, norm)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.interpolate(self.before(x), size=size, mode="bilinear", align_corners=False)
        return self.after(x)


class PixelStem(nn.Sequential):
    """The input's own pixels as the skip feature of the full-resolution stage: (Conv3x3 -> ReLU) twice.

    The encoder's finest level has stride 2, so without it the last stage only upsamples features of 2 x 2
    pixels; a shape of a few pixels (a 2 µm bin at 1 µm/px) then gets a value blended from its neighbours'.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(
            nn.Conv2d(3, channels, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(inplace=True),
        )


class SkipRefine(nn.Module):
    """Eq. 5: Norm(LeakyReLU(F + Conv1x1(DWConv3x3(F))))."""

    def __init__(self, channels: int, norm: str = "channel") -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.pointwise = nn.Conv2d(channels, channels, 1)
        self.norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(F.leaky_relu(x + self.pointwise(self.depthwise(x)), 0.01))


class LinearAttention(nn.Module):
    """Kernelised self-attention (phi = elu + 1): memory linear in the number of pixels.

    An input no larger than ``window`` pixels (a training patch) is one attention window. On a larger input
    each pixel attends over the ``window``-sized square centred on it, so a model trained on patches predicts
    every pixel of a tile with the context of a patch around that pixel, whatever the tile size and without
    seams between windows. ``window=None``: the whole input is one window.
    """

    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.heads = heads if channels % heads == 0 else 1
        self.qkv = nn.Conv2d(channels, channels * 3, 1, bias=False)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        d = c // self.heads
        q, k, v = (t.reshape(b, self.heads, d, h, w) for t in self.qkv(x).chunk(3, dim=1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        if window is None or max(h, w) <= window:
            q, k, v = (t.flatten(3) for t in (q, k, v))
            context = torch.einsum("bhdn,bhen->bhde", k, v)  # (d x d) per head, independent of h * w
            normaliser = torch.einsum("bhdn,bhd->bhn", q, k.sum(dim=-1)).clamp_min(1e-6)
            attended = torch.einsum("bhdn,bhde->bhen", q, context) / normaliser.unsqueeze(2)
        else:
            radius = window // 2
            context = _box_sum(k.unsqueeze(3) * v.unsqueeze(2), radius)  # (d x d) per head and pixel
            normaliser = (q * _box_sum(k, radius)).sum(dim=2).clamp_min(1e-6)
            attended = torch.einsum("bhdyx,bhdeyx->bheyx", q.float(), context) / normaliser.unsqueeze(2)
        return self.out(attended.reshape(b, c, h, w).to(x.dtype))


def _box_sum(t: torch.Tensor, radius: int) -> torch.Tensor:
    """Sum over the ``2 radius + 1`` square centred on each pixel (cut at the border), from an integral image."""
    size = 2 * radius + 1
    # float32: cumulative sums in bfloat16 (cuda autocast) would lose the small differences they hold
    s = F.pad(t.float(), (radius + 1, radius, radius + 1, radius)).cumsum(-1).cumsum(-2)
    return s[..., size:, size:] - s[..., :-size, size:] - s[..., size:, :-size] + s[..., :-size, :-size]


class DecoderStage(nn.Module):
    """Upsample, fuse the refined skip feature, then D = F_u + Attention(CB(F_u)) (Eq. 8)."""

    def __init__(self, in_channels: int, skip_channels: int, channels: int, deep: bool, norm: str = "channel") -> None:
        super().__init__()
        self.up = (DepthToSpaceUp if deep else BilinearUp)(in_channels, channels, norm)
        self.refine = SkipRefine(skip_channels, norm) if skip_channels else None
        self.fuse = nn.Conv2d(channels + skip_channels, channels, 1)
        self.block = CompositeConvBlock(channels, channels, norm)
        self.attention = LinearAttention(channels)

    def forward(
        self, x: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int], window: int | None = None
    ) -> torch.Tensor:
        x = self.up(x, size)
        if skip is not None:
            x = torch.cat([x, self.refine(skip)], dim=1)
        fused = self.fuse(x)
        return fused + self.attention(self.block(fused), window)


class PixNetDecoder(nn.Module):
    """Decoder stages from stride 32 down to ``output_stride``.

    With 1, L - 1 = 4 stages to stride 2, then one bilinear stage to the input resolution (the paper); with 4,
    the three stages to stride 4. Widths halve from ``width`` at stride 16 (deep stages at strides 16 and 8 use
    depth-to-space). ``norm`` is the normalisation layer (see :func:`make_norm`). ``pixel_skip`` > 0 (with
    ``output_stride`` 1) gives the full-resolution stage a skip feature of that many channels computed from the
    input image itself (:class:`PixelStem`); 0: no skip there (the paper).
    """

    def __init__(
        self,
        encoder_channels: tuple[int, ...],
        width: int = 512,
        n_deep: int = 2,
        norm: str = "channel",
        output_stride: int = 1,
        pixel_skip: int = 0,
    ) -> None:
        super().__init__()
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}.")
        if pixel_skip and output_stride != 1:
            raise ValueError(
                f"pixel_skip feeds the full-resolution stage; it needs output_stride=1, got {output_stride}."
            )
        n_stages = len(encoder_channels) - OUTPUT_STRIDES.index(output_stride)
        widths = [max(width // 2**i, 16) for i in range(n_stages)]
        stages = []
        in_channels = encoder_channels[-1]
        skips = [*encoder_channels[-2::-1], pixel_skip][:n_stages]  # stride 16, 8, 4, 2, then the input
        for i, (skip, channels) in enumerate(zip(skips, widths, strict=True)):
            stages.append(DecoderStage(in_channels, skip, channels, deep=i < n_deep, norm=norm))
            in_channels = channels
        self.stages = nn.ModuleList(stages)
        self.out_channels = widths[-1]
        self.output_stride = output_stride
        self.stem = PixelStem(pixel_skip) if pixel_skip else None

    def forward(
        self,
        features: list[torch.Tensor],
        size: tuple[int, int],
        window: int | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decode the pyramid of an input of ``size`` to ``size / output_stride``.

        ``window`` is the attention window in input pixels (see :class:`LinearAttention`); ``image`` the
        normalised input of ``size`` (needed with ``pixel_skip``).
        """
        x = features[-1]
        if self.stem is not None and image is None:
            raise ValueError("This decoder takes the input image as a skip feature (pixel_skip); pass image=.")
        pixels = self.stem(image) if self.stem is not None else None
        skips = [*features[-2::-1], pixels][: len(self.stages)]
        for stage, skip in zip(self.stages, skips, strict=True):
            target = tuple(skip.shape[-2:] if skip is not None else size)
            stride = size[0] // target[0]
            x = stage(x, skip, target, max(window // stride, 1) if window else None)
        return x
