"""The PixNet network: encoder pyramid -> decoder -> non-negative dense map with one channel per gene."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .decoder import PixNetDecoder
from .encoders import EncoderConfig

__all__ = ["MemberNetwork", "PixNetNetwork"]


class PixNetNetwork(nn.Module):
    """Map an RGB image to a dense, non-negative expression map of the same height and width.

    Parameters
    ----------
    encoder
        A pyramid encoder (five feature maps at strides 2..32) with a ``channels`` attribute.
    encoder_config
        Its :class:`~pixnet.nn.EncoderConfig` (the input normalisation is taken from it).
    n_genes
        Output channels.
    decoder_width
        Channels of the deepest decoder stage; each shallower stage halves it.
    decoder_norm
        ``"channel"`` (per-pixel layer norm) or ``"batch"`` (models saved before pixnet 0.2).
    attention_window
        Side, in input pixels, of the window the decoder's attention sees around each pixel (rounded up to the
        stride): the training patch size, so that tiles larger than a patch see the context a patch saw. ``None``:
        the whole input.
    embedding_dim
        With ``> 0``, a linear projection of decoder features to an embedding of this length (for the auxiliary
        Image2Gene loss; see :meth:`forward`).
    output_stride
        1 (the paper): the decoder runs to the input resolution. 2 or 4: it stops at that stride and the
        density is upsampled bilinearly to the input pixels (much cheaper; a spot still sums its own pixels).
    pixel_skip
        With ``output_stride`` 1: channels of the full-resolution skip feature computed from the input pixels
        (see :class:`~pixnet.nn.decoder.PixelStem`); 0: none (the paper).
    n_members
        Decoders (each with its head) sharing the encoder: a deep ensemble whose maps are averaged. Member 0 is
        ``decoder`` / ``head`` (the layout of single models); the others are in ``ensemble``.

    Examples
    --------
    >>> import torch
    >>> from pixnet.nn import PixNetNetwork, create_encoder
    >>> encoder, config = create_encoder("resnet18")
    >>> network = PixNetNetwork(encoder, config, n_genes=10, decoder_width=64, output_stride=4).eval()
    >>> network(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 10, 64, 64])

    """

    stride = 32

    def __init__(
        self,
        encoder: nn.Module,
        encoder_config: EncoderConfig,
        n_genes: int,
        decoder_width: int = 512,
        decoder_norm: str = "channel",
        attention_window: int | None = None,
        embedding_dim: int = 0,
        output_stride: int = 1,
        n_members: int = 1,
        pixel_skip: int = 0,
    ):
        super().__init__()
        self.attention_window = -(-attention_window // self.stride) * self.stride if attention_window else None
        self.encoder = encoder
        decoder = functools.partial(
            PixNetDecoder,
            tuple(encoder.channels),
            decoder_width,
            norm=decoder_norm,
            output_stride=output_stride,
            pixel_skip=pixel_skip,
        )
        self.decoder = decoder()
        self.head = nn.Conv2d(self.decoder.out_channels, n_genes, 1)
        self.ensemble = nn.ModuleList(EnsembleMember(decoder(), n_genes) for _ in range(n_members - 1))
        self.embedding = nn.Linear(self.decoder.out_channels, embedding_dim) if embedding_dim else None
        self.register_buffer("mean", torch.tensor(encoder_config.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(encoder_config.std).view(1, 3, 1, 1), persistent=False)

    @property
    def n_members(self) -> int:
        """Decoders of the ensemble (1: a single model)."""
        return 1 + len(self.ensemble)

    def member_modules(self, member: int) -> tuple[nn.Module, nn.Conv2d]:
        """Decoder and head of ensemble member ``member``."""
        if member == 0:
            return self.decoder, self.head
        return self.ensemble[member - 1].decoder, self.ensemble[member - 1].head

    def member(self, member: int) -> MemberNetwork:
        """The network as ensemble member ``member`` alone (sharing this network's modules), for training it."""
        if not 0 <= member < self.n_members:
            raise IndexError(f"member {member} of an ensemble of {self.n_members}")
        return MemberNetwork(self, member)

    def set_initial_density(self, density: torch.Tensor) -> None:
        """Start every member's map at a per-gene density (values per pixel) by setting its head's bias."""
        density = density.clamp_min(1e-6).to(self.head.bias)
        with torch.no_grad():
            for member in range(self.n_members):
                head = self.member_modules(member)[1]
                head.bias.copy_(density + torch.log(-torch.expm1(-density)))  # inverse softplus
                head.weight.mul_(0.1)

    def forward(
        self,
        images: torch.Tensor,
        at: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        with_embedding: bool = False,
        sum_by: tuple[torch.Tensor, int] | None = None,
        member: int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, n_genes, H, W)`` density.

        With ``at = (image, row, column)`` index tensors, only the density at those pixels, ``(N, n_genes)``:
        training supervises only the pixels inside spots, often a small part of a patch, and the head is the
        most expensive layer. ``with_embedding`` also returns those pixels' projected decoder features
        ``(N, embedding_dim)`` (linear, so their mean over a shape is the projection of its mean features).
        ``sum_by = (shape, n_shapes)``, the shape of each pixel of ``at``: the sums over each shape's pixels
        instead, ``(n_shapes, n_genes)`` (with ``output_stride`` > 1, from the coarse map directly).
        ``member``: that ensemble member's density alone; ``None``: the mean of all members' densities.
        """
        height, width = images.shape[-2:]
        pad_h, pad_w = -height % self.stride, -width % self.stride
        x = self.normalise(images)
        if pad_h or pad_w:
            x = F.pad(
                x, (0, pad_w, 0, pad_h), mode="reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
            )
        return self.decode(self.encoder(x), (height, width), at, with_embedding, sum_by, member, x)

    @property
    def uses_pixels(self) -> bool:
        """Whether decoding needs the input image beside its encoder pyramid (``pixel_skip``)."""
        return self.decoder.stem is not None

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the encoder's input (its mean and std)."""
        return (images - self.mean) / self.std

    def decode(
        self,
        features: list[torch.Tensor],
        size: tuple[int, int],
        at: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        with_embedding: bool = False,
        sum_by: tuple[torch.Tensor, int] | None = None,
        member: int | None = None,
        image: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The density from the encoder pyramid of an input of ``size`` (before its padding); see :meth:`forward`.

        Separate from the encoder so that training with a frozen encoder can reuse cached pyramids. ``image``:
        the normalised, padded input (:meth:`normalise`), which a decoder with ``pixel_skip`` needs.
        """
        if with_embedding and (member or self.n_members > 1):
            raise ValueError("The auxiliary embedding belongs to single models (n_members=1).")
        if member is not None or self.n_members == 1:
            return self._decode_member(member or 0, features, size, at, with_embedding, sum_by, image)
        total = None
        for m in range(self.n_members):  # densities and their sums are linear in the members' maps
            density = self._decode_member(m, features, size, at, False, sum_by, image)
            total = density if total is None else total + density
        return total / self.n_members

    def _decode_member(self, member, features, size, at, with_embedding, sum_by, image=None):
        decoder, head = self.member_modules(member)
        stride = decoder.output_stride
        padded = tuple(level * 32 for level in features[-1].shape[-2:])
        decoded = decoder(features, padded, self.attention_window, image)
        if with_embedding and (stride != 1 or sum_by is not None):
            raise ValueError("The auxiliary embedding needs output_stride=1 and per-pixel output.")
        if stride == 1:
            if at is not None:
                pixels = decoded[at[0], :, at[1], at[2]]
                density = F.softplus(F.linear(pixels, head.weight.flatten(1), head.bias))
                if sum_by is not None:
                    sums = torch.zeros(sum_by[1], density.shape[1], device=density.device, dtype=torch.float32)
                    return sums.index_add_(0, sum_by[0], density.float())
                return (density, self.embedding(pixels)) if with_embedding else density
            return F.softplus(head(decoded))[..., : size[0], : size[1]]
        coarse = F.softplus(head(decoded))
        if at is not None:
            if sum_by is not None:
                return bilinear_sums(coarse, stride, *at, *sum_by)
            return bilinear_at(coarse, stride, *at)
        full = F.interpolate(coarse, scale_factor=stride, mode="bilinear", align_corners=False)
        return full[..., : size[0], : size[1]]


class EnsembleMember(nn.Module):
    """A further decoder and head of an ensemble (see ``n_members`` of :class:`PixNetNetwork`)."""

    def __init__(self, decoder: PixNetDecoder, n_genes: int):
        super().__init__()
        self.decoder = decoder
        self.head = nn.Conv2d(decoder.out_channels, n_genes, 1)


class MemberNetwork(nn.Module):
    """One ensemble member of a :class:`PixNetNetwork` as a network of its own (the modules are shared)."""

    def __init__(self, network: PixNetNetwork, member: int):
        super().__init__()
        self.network, self.index = network, member

    @property
    def encoder(self) -> nn.Module:
        """The shared encoder."""
        return self.network.encoder

    @property
    def uses_pixels(self) -> bool:
        """See :attr:`PixNetNetwork.uses_pixels`."""
        return self.network.uses_pixels

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """See :meth:`PixNetNetwork.normalise`."""
        return self.network.normalise(images)

    def forward(self, images, at=None, with_embedding=False, sum_by=None):
        """:meth:`PixNetNetwork.forward` of this member."""
        return self.network(images, at, with_embedding, sum_by, member=self.index)

    def decode(self, features, size, at=None, with_embedding=False, sum_by=None, image=None):
        """:meth:`PixNetNetwork.decode` of this member."""
        return self.network.decode(features, size, at, with_embedding, sum_by, member=self.index, image=image)

    def train_only_this(self) -> list[nn.Parameter]:
        """Stop the other members' gradients; the parameters that train with this member (a frozen encoder's not)."""
        for m in range(self.network.n_members):
            for module in self.network.member_modules(m):
                module.requires_grad_(m == self.index)
        return [p for p in self.network.parameters() if p.requires_grad]


def _source_index(position: torch.Tensor, stride: int, length: int) -> tuple[torch.Tensor, ...]:
    """Neighbours and weight along one axis, as ``F.interpolate(bilinear, align_corners=False)`` takes them."""
    source = ((position.float() + 0.5) / stride - 0.5).clamp_min(0)
    low = source.floor().long().clamp_max(length - 1)
    return low, (low + 1).clamp_max(length - 1), (source - low).clamp(0, 1)


def bilinear_sums(
    coarse: torch.Tensor,
    stride: int,
    image: torch.Tensor,
    row: torch.Tensor,
    col: torch.Tensor,
    shape: torch.Tensor,
    n_shapes: int,
) -> torch.Tensor:
    """Per-shape sums of :func:`bilinear_at` over the shapes' pixels, ``(n_shapes, C)``, as one sparse product.

    Each shape's sum is a weighted sum of the coarse cells its pixels interpolate from; gathering every pixel's
    four neighbours instead makes a backward pass that scatters millions of values on a CPU.
    """
    b, c, h, w = coarse.shape
    y0, y1, wy = _source_index(row, stride, h)
    x0, x1, wx = _source_index(col, stride, w)
    cells = torch.cat([(image * h + y) * w + x for y in (y0, y1) for x in (x0, x1)])
    weights = torch.cat([a * bx for a in (1 - wy, wy) for bx in (1 - wx, wx)])
    index = torch.stack([shape.repeat(4), cells])
    matrix = torch.sparse_coo_tensor(index, weights.float(), (n_shapes, b * h * w), check_invariants=False)
    matrix = matrix.coalesce()
    return torch.sparse.mm(matrix, coarse.float().permute(0, 2, 3, 1).reshape(b * h * w, c))


def bilinear_at(
    coarse: torch.Tensor, stride: int, image: torch.Tensor, row: torch.Tensor, col: torch.Tensor
) -> torch.Tensor:
    """``coarse`` ``(B, C, h, w)`` upsampled bilinearly by ``stride``, at the given pixels only -> ``(N, C)``."""
    y0, y1, wy = _source_index(row, stride, coarse.shape[-2])
    x0, x1, wx = _source_index(col, stride, coarse.shape[-1])
    wy, wx = wy[:, None].to(coarse.dtype), wx[:, None].to(coarse.dtype)
    top = coarse[image, :, y0, x0] * (1 - wx) + coarse[image, :, y0, x1] * wx
    bottom = coarse[image, :, y1, x0] * (1 - wx) + coarse[image, :, y1, x1] * wx
    return top * (1 - wy) + bottom * wy
