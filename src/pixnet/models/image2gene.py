"""The trained Image2Gene model: spot embeddings, the training spots' expression, kNN inference, save and load."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..nn.image2gene import Image2GeneNetwork
from ..training.image2gene import fit_image2gene
from ..utils.model_files import WEIGHTS, load_tensors, tensor_shapes
from .base import TrainedModel
from .params import Image2GeneParams

logger = logging.getLogger(__name__)

__all__ = ["WEIGHTINGS", "Image2Gene", "Image2GeneConfig"]

WEIGHTINGS = ("uniform", "distance")
_BANK = "bank.safetensors"


@dataclass
class Image2GeneConfig:
    """Everything needed to rebuild an Image2Gene model and interpret its outputs.

    Attributes
    ----------
    genes, gene_selection, normalization, microns_per_pixel, encoder, reliability
        As for :class:`~pixnet.models.PixNetConfig`.
    patch_size
        Side, in working pixels, of the patch centred on each spot that the encoder sees.
    embedding_dim
        Length of the embedding.
    coordinates
        Whether the embedding includes the learnable embedding of the spot's position in its image.
    k
        Neighbours of the kNN inference.
    weighting
        ``"uniform"`` (the neighbours' mean) or ``"distance"`` (weights ``1 / (1 - cosine similarity)``).
    map_stride
        Spacing, in working pixels, of the embedding grid of the dense map (bilinear in between).
    reference_area_px
        The training spots' median area: neighbours are averaged as targets of a shape of this area (e.g. the
        log of normalised counts, as the method averages spots), then turned back into a density.

    Examples
    --------
    >>> import pixnet
    >>> config = pixnet.models.Image2GeneConfig(
    ...     genes=["SYN000", "SYN001"],
    ...     gene_selection={"method": "list", "params": {}},
    ...     normalization=pixnet.pp.Normalization("total_log").to_dict(),
    ...     microns_per_pixel=1.0,
    ...     patch_size=64,
    ...     encoder=pixnet.nn.EncoderConfig("resnet18").to_dict(),
    ... )
    >>> pixnet.models.Image2Gene.build(config).config.k
    25

    """

    genes: list[str]
    gene_selection: dict
    normalization: dict
    microns_per_pixel: float
    patch_size: int
    encoder: dict
    embedding_dim: int = 128
    coordinates: bool = True
    k: int = 25
    weighting: str = "distance"
    map_stride: int = 16
    reference_area_px: float = 1.0
    method: str = "image2gene"
    training: dict = field(default_factory=dict)
    reliability: dict = field(default_factory=dict)


class Image2Gene(TrainedModel):
    """An Image2Gene model (Fu, Quan & Bai, IEEE JBHI 2026).

    An encoder and a learnable embedding of spot positions map each spot's patch to a unit vector, trained so
    that cosine similarity between spots matches the Pearson correlation of their expression profiles. A
    spot is predicted from its ``k`` nearest training spots in that space. The model keeps the training
    spots' embeddings and expression (as a density per working pixel, so that shapes of any size can be read
    out), and its dense map is the kNN density of a grid of patches every :attr:`Image2GeneConfig.map_stride`
    pixels, interpolated bilinearly: :func:`pixnet.tl.predict` reads it out for any shapes, as for PixNet.

    Create one with ``pixnet.tl.train(..., method="image2gene")`` or :meth:`load`.

    Examples
    --------
    >>> import pixnet
    >>> sdata = pixnet.datasets.synthetic_spots("visium", size_um=600)
    >>> model = pixnet.tl.train(sdata, method="image2gene", epochs=1, n_top_genes=8, progress=False)
    >>> path = model.save("i2g_model")
    >>> model = pixnet.models.load_model(path)
    >>> pixnet.tl.predict(sdata, shapes="synthetic_visium_spots", model=model, key_added="i2g", progress=False)
    >>> sdata["i2g_synthetic_visium_spots"].shape[1]
    8

    """

    method = "image2gene"
    params_class = Image2GeneParams
    config_class = Image2GeneConfig
    plan_defaults: ClassVar[dict] = {"batch_size": 64}  # spots: the loss compares every pair of a batch
    extra_files = (_BANK,)
    fit = staticmethod(fit_image2gene)

    def __init__(self, network: Image2GeneNetwork, config: Image2GeneConfig, history: list[dict] | None = None):
        self.network = network
        self.config = config
        self.history = list(history or [])
        self.bank_embeddings = torch.zeros(0, config.embedding_dim)
        self.bank_density = torch.zeros(0, len(config.genes))

    @classmethod
    def build(cls, config: Image2GeneConfig, encoder_weights: str | None = None) -> Image2Gene:
        """A new model for ``config``; the encoder is randomly initialised unless ``encoder_weights`` is given."""
        if config.weighting not in WEIGHTINGS:
            raise ValueError(f"Unknown kNN weighting {config.weighting!r}; choose one of {WEIGHTINGS}.")
        encoder, encoder_config = cls._create_encoder(config, encoder_weights)
        network = Image2GeneNetwork(encoder, encoder_config, config.embedding_dim, coordinates=config.coordinates)
        return cls(network, config)

    @classmethod
    def _config(cls, params: Image2GeneParams, shared: dict) -> Image2GeneConfig:
        return Image2GeneConfig(
            **shared,
            embedding_dim=params.embedding_dim,
            coordinates=params.coordinates,
            k=params.k,
            weighting=params.weighting,
            map_stride=params.map_stride or max(params.patch_size // 4, 1),
        )

    def __repr__(self) -> str:
        enc = self.config.encoder
        return (
            f"Image2Gene({len(self.genes)} genes, {self.microns_per_pixel:g} µm/px, encoder {enc['name']} "
            f"({enc['weights']}), k={self.config.k} ({self.config.weighting}), {len(self.bank_density)} training "
            f"spots, {self.epochs_trained} epochs trained)"
        )

    @property
    def map_detail_um(self) -> float:
        """The map interpolates embeddings of a grid of patches every ``map_stride`` pixels."""
        return self.microns_per_pixel * self.config.map_stride

    # ------------------------------------------------------------------------------------------ inference
    def set_bank(self, embeddings: torch.Tensor, density: torch.Tensor, reference_area_px: float | None = None):
        """Set the training spots the kNN inference draws on.

        Their embeddings, expression per working pixel and median area (see :class:`Image2GeneConfig`).
        """
        if len(embeddings) != len(density) or len(embeddings) == 0:
            raise ValueError(f"Needs as many embeddings as densities, and some: got {len(embeddings)}, {len(density)}.")
        self.bank_embeddings = embeddings.float().cpu()
        self.bank_density = density.float().cpu()
        if reference_area_px is not None:
            self.config.reference_area_px = float(reference_area_px)

    @torch.no_grad()
    def embed(self, patches: torch.Tensor, positions: torch.Tensor | None = None, batch_size: int = 256):
        """``(n, 3, P, P)`` patches (uint8 or float in [0, 1]) and ``(n, 2)`` positions in [0, 1] -> embeddings."""
        self.network.eval()
        device = self.device
        out = []
        for i in range(0, len(patches), batch_size):
            x = patches[i : i + batch_size].to(device)
            x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
            xy = None if positions is None else positions[i : i + batch_size].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out.append(self.network(x, xy).float())
        return torch.cat(out) if out else torch.zeros(0, self.config.embedding_dim, device=device)

    def knn(self, embeddings: torch.Tensor, k: int | None = None, weighting: str | None = None) -> torch.Tensor:
        """Expression density (per working pixel) of each embedding, from its ``k`` nearest training spots.

        The neighbours are averaged in the model's target units (see ``reference_area_px``).
        """
        k = min(k or self.config.k, len(self.bank_embeddings))
        weighting = weighting or self.config.weighting
        if k < 1:
            raise ValueError("The model holds no training spots (set_bank was never called).")
        if weighting not in WEIGHTINGS:
            raise ValueError(f"Unknown kNN weighting {weighting!r}; choose one of {WEIGHTINGS}.")
        bank = self.bank_embeddings.to(embeddings.device)
        similarity, index = (embeddings.float() @ bank.T).topk(k, dim=1)
        if weighting == "uniform":
            weights = torch.full_like(similarity, 1.0 / k)
        else:
            weights = 1.0 / (1.0 - similarity).clamp_min(1e-6)
            weights = weights / weights.sum(dim=1, keepdim=True)
        area, normalization = self.config.reference_area_px, self.normalization
        targets = normalization.transform(self.bank_density.to(embeddings.device)[index] * area)
        return normalization.inverse_transform(torch.einsum("nk,nkg->ng", weights, targets)) / area

    @torch.no_grad()
    def predict_tiles(
        self,
        images: torch.Tensor | np.ndarray,
        offset: tuple[int, int] = (0, 0),
        extent: tuple[float, float] | None = None,
    ) -> torch.Tensor:
        """Dense maps of RGB tiles: kNN density on a grid of patch centres, interpolated bilinearly.

        Grid points lie every ``map_stride`` pixels of the whole map (not of the tile), so tiles agree.

        Parameters
        ----------
        images
            ``(B, 3, H, W)`` uint8, or float in [0, 1], at :attr:`microns_per_pixel`.
        offset
            ``(y, x)`` of the tiles' first pixel in the whole map.
        extent
            ``(height, width)`` of the whole map, for the positions the coordinate embedding sees (default: the
            tile's).

        Returns
        -------
        ``(B, n_genes, H, W)`` float32 density on the model's device.

        """
        x = torch.as_tensor(images)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        stride, patch = self.config.map_stride, self.config.patch_size
        height, width = x.shape[-2:]
        extent = extent or (height, width)
        # grid points g * stride + stride / 2 (map pixels), one beyond the tile on each side for the interpolation
        g = [
            torch.arange(o // stride - 1, -(-(o + n) // stride) + 1)
            for o, n in zip(offset, (height, width), strict=True)
        ]
        first = [int(gi[0]) * stride + (stride - patch) // 2 - o for gi, o in zip(g, offset, strict=True)]
        pad = [max(-first[0], 0), max(-first[1], 0)]
        need = [first[i] + pad[i] + (len(g[i]) - 1) * stride + patch for i in range(2)]
        padded = F.pad(
            x, (pad[1], max(need[1] - width - pad[1], 0), pad[0], max(need[0] - height - pad[0], 0)), value=1.0
        )
        centres = torch.stack(torch.meshgrid(g[1] * stride + stride / 2, g[0] * stride + stride / 2, indexing="xy"), -1)
        positions = (centres.reshape(-1, 2) / torch.tensor([extent[1], extent[0]])).float()
        maps = []
        for tile in padded:
            windows = (
                tile[:, first[0] + pad[0] :, first[1] + pad[1] :].unfold(1, patch, stride).unfold(2, patch, stride)
            )
            windows = windows[:, : len(g[0]), : len(g[1])].permute(1, 2, 0, 3, 4)  # a view: copied in row chunks
            rows = max(1, 256 // len(g[1]))
            embeddings = torch.cat(
                [
                    self.embed(
                        windows[r : r + rows].reshape(-1, 3, patch, patch),
                        positions[r * len(g[1]) : (r + rows) * len(g[1])] if self.config.coordinates else None,
                    )
                    for r in range(0, len(g[0]), rows)
                ]
            )
            grid = self.knn(embeddings).T.reshape(1, -1, len(g[0]), len(g[1]))
            dense = F.interpolate(grid, scale_factor=stride, mode="bilinear", align_corners=False)[0]
            y0, x0 = (o - int(gi[0]) * stride for o, gi in zip(offset, g, strict=True))
            maps.append(dense[:, y0 : y0 + height, x0 : x0 + width])
        return torch.stack(maps)

    # ------------------------------------------------------------------------------------------ persistence
    def _tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        """The network and the training spots (``bank.safetensors``: embeddings and densities)."""
        return {
            WEIGHTS: self.network.state_dict(),
            _BANK: {"embeddings": self.bank_embeddings, "density": self.bank_density},
        }

    @classmethod
    def _check_files(cls, config: Image2GeneConfig, path: Path) -> None:
        shapes = tensor_shapes(path / _BANK)
        n_spots = shapes.get("embeddings", (0,))[0]
        wanted = {"embeddings": (n_spots, config.embedding_dim), "density": (n_spots, len(config.genes))}
        if shapes != wanted or n_spots == 0:
            raise ValueError(
                f"{path / _BANK}: tensors {shapes} do not match the config (expected {wanted} for some number of "
                "training spots > 0)."
            )

    def _read_files(self, path: Path) -> None:
        bank = load_tensors(path / _BANK)
        self.set_bank(bank["embeddings"], bank["density"])  # the reference area is in the config
