"""Vision transformers of pathology foundation models, in plain torch, as five-level feature pyramids.

The modules carry timm's parameter names (``patch_embed.proj``, ``blocks.{i}.attn.qkv``, ``blocks.{i}.ls1.gamma``,
``reg_token``...), so that timm-format checkpoints load as they are; Hugging Face DINOv2 checkpoints (Hibou) are
renamed to them (:func:`timm_names`). timm itself is not needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VIT_CONFIGS", "ViTConfig", "ViTPyramid", "timm_names"]


@dataclass(frozen=True)
class ViTConfig:
    """The architecture of one vision transformer, as its checkpoint was trained.

    Attributes
    ----------
    embed_dim, depth, num_heads
        Token width, number of blocks, attention heads.
    patch_size
        Side of the image patch each token sees (14 or 16); inputs are padded to a multiple of it.
    img_size
        The training input side: the position embedding holds ``(img_size / patch_size)²`` patch positions and is
        interpolated (bicubic) to other grids.
    mlp_ratio
        Hidden width of each block's MLP relative to ``embed_dim`` (for SwiGLU, of its packed first layer).
    swiglu
        The MLP is SwiGLU (timm's ``SwiGLUPacked``: ``fc1`` gives gate and value, ``silu(gate) * value``).
    reg_tokens
        Register tokens after the class token (DINOv2 with registers).
    class_pos_embed
        The position embedding has an entry for the class token (timm's default and DINOv2's); ``False`` for
        timm's ``no_embed_class`` (only patch tokens have positions). Registers never have one.
    layer_scale
        Blocks scale their two branches by learned ``ls1.gamma`` / ``ls2.gamma`` (``init_values`` in timm).
    taps
        The blocks (0-based) whose outputs feed the pyramid: strides 2 and 4 from the first, 8, 16 and 32 from the
        others (default: after each quarter of the depth).

    """

    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    img_size: int = 224
    mlp_ratio: float = 4.0
    swiglu: bool = False
    reg_tokens: int = 0
    class_pos_embed: bool = True
    layer_scale: bool = True
    taps: tuple[int, ...] | None = None

    @property
    def tap_blocks(self) -> tuple[int, int, int, int]:
        """The four blocks the pyramid reads."""
        if self.taps is not None:
            return tuple(self.taps)
        return tuple(round(self.depth * q / 4) - 1 for q in (1, 2, 3, 4))

    @property
    def mlp_hidden(self) -> int:
        """Output width of each MLP's first layer (timm: ``int(embed_dim * mlp_ratio)``)."""
        return int(self.embed_dim * self.mlp_ratio)


# Published configurations (timm model cards and hub configs); every one keeps timm's parameter names.
VIT_CONFIGS = {
    # UNI (Chen et al. 2024, MahmoodLab/UNI): timm vit_large_patch16_224, init_values 1e-5
    "uni": ViTConfig(embed_dim=1024, depth=24, num_heads=16, patch_size=16),
    # UNI2-h (MahmoodLab/UNI2-h): ViT-H/14, SwiGLU, 8 registers, no class position
    "uni2_h": ViTConfig(
        embed_dim=1536,
        depth=24,
        num_heads=24,
        patch_size=14,
        mlp_ratio=2.66667 * 2,
        swiglu=True,
        reg_tokens=8,
        class_pos_embed=False,
    ),
    # H-optimus-0 (bioptimus/H-optimus-0): timm vit_giant_patch14_reg4_dinov2
    "h_optimus_0": ViTConfig(
        embed_dim=1536,
        depth=40,
        num_heads=24,
        patch_size=14,
        mlp_ratio=2.66667 * 2,
        swiglu=True,
        reg_tokens=4,
        class_pos_embed=False,
    ),
    # Hibou-B (histai/hibou-B): Hugging Face DINOv2 ViT-B/14 with 4 registers (renamed by timm_names)
    "hibou_b": ViTConfig(embed_dim=768, depth=12, num_heads=12, patch_size=14, reg_tokens=4),
}


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, swiglu: bool) -> None:
        super().__init__()
        self.swiglu = swiglu
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden // 2 if swiglu else hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if self.swiglu:
            gate, value = x.chunk(2, dim=-1)
            return self.fc2(F.silu(gate) * value)
        return self.fc2(F.gelu(x))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), 1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, config.num_heads)
        self.ls1 = LayerScale(dim) if config.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, config.mlp_hidden, config.swiglu)
        self.ls2 = LayerScale(dim) if config.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class ViTPyramid(nn.Module):
    """A vision transformer whose intermediate blocks give five feature levels at strides 2, 4, 8, 16 and 32.

    The patch tokens of four blocks (``config.tap_blocks``) are reshaped to their grid (stride ``patch_size``) and
    resampled bilinearly to each level's size, as the CVPR version of PixNet reads UNI2-h. Inputs of any size are
    padded to a multiple of the patch size; the position embedding is interpolated to the token grid.

    Examples
    --------
    >>> import torch
    >>> from pixnet.nn.vit import ViTConfig, ViTPyramid
    >>> tiny = ViTPyramid(ViTConfig(embed_dim=32, depth=4, num_heads=2, patch_size=14, swiglu=True, reg_tokens=4))
    >>> [tuple(f.shape[-2:]) for f in tiny(torch.rand(1, 3, 64, 64))]
    [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]

    """

    reductions = (2, 4, 8, 16, 32)
    local = False  # every token attends to the whole input: a patch's features are not a slice of its section's

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        dim, grid = config.embed_dim, config.img_size // config.patch_size
        self.channels = (dim,) * 5
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, config.reg_tokens, dim)) if config.reg_tokens else None
        self.pos_embed = nn.Parameter(torch.randn(1, grid * grid + int(config.class_pos_embed), dim) * 0.02)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # the checkpoints' final norm (kept so they load whole)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def _positions(self, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The patch tokens' position embedding on a ``rows x cols`` grid, and the class token's (if any)."""
        pos = self.pos_embed
        cls_pos = pos[:, :1] if self.config.class_pos_embed else None
        patches = pos[:, 1:] if self.config.class_pos_embed else pos
        side = math.isqrt(patches.shape[1])
        if (rows, cols) != (side, side):
            grid = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
            patches = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
        return patches, cls_pos

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Five ``(B, embed_dim, H / s, W / s)`` maps, ``s`` = 2, 4, 8, 16, 32, of normalised RGB ``(B, 3, H, W)``."""
        height, width = x.shape[-2:]
        p = self.config.patch_size
        x = F.pad(x, (0, -width % p, 0, -height % p))
        tokens = self.patch_embed.proj(x)
        rows, cols = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        patch_pos, cls_pos = self._positions(rows, cols)
        cls = self.cls_token.expand(len(x), -1, -1)
        prefix = [cls if cls_pos is None else cls + cls_pos]
        if self.reg_token is not None:
            prefix.append(self.reg_token.expand(len(x), -1, -1))
        x = torch.cat([*prefix, tokens + patch_pos], dim=1)
        n_prefix = 1 + self.config.reg_tokens
        taps, grids = self.config.tap_blocks, []
        for i, block in enumerate(self.blocks[: max(taps) + 1]):
            x = block(x)
            if i in taps:
                grids.append(x[:, n_prefix:].transpose(1, 2).reshape(len(x), -1, rows, cols))
        sources = [grids[0], grids[0], grids[1], grids[2], grids[3]]
        return [
            F.interpolate(g, size=(max(height // s, 1), max(width // s, 1)), mode="bilinear", align_corners=False)
            for g, s in zip(sources, self.reductions, strict=True)
        ]


def timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under timm's names.

    timm-format checkpoints (UNI, UNI2-h, H-optimus-0) pass through, less ``head.*`` and common prefixes
    (``module.``, ``model.``); Hugging Face DINOv2 ones (Hibou: ``embeddings.*``, ``encoder.layer.{i}.*``) are
    renamed, their separate query / key / value layers joined into ``qkv``.
    """
    for prefix in ("module.", "model.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if not any(k.startswith("embeddings.") for k in state):
        return state
    renamed, qkv = {}, {}
    fixed = {
        "embeddings.cls_token": "cls_token",
        "embeddings.register_tokens": "reg_token",
        "embeddings.position_embeddings": "pos_embed",
        "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
        "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
        "layernorm.weight": "norm.weight",
        "layernorm.bias": "norm.bias",
    }
    inner = {
        "norm1": "norm1",
        "norm2": "norm2",
        "attention.output.dense": "attn.proj",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "mlp.weights_in": "mlp.fc1",
        "mlp.weights_out": "mlp.fc2",
    }
    for key, value in state.items():
        if key in fixed:
            renamed[fixed[key]] = value
            continue
        if not key.startswith("encoder.layer."):
            continue  # e.g. embeddings.mask_token, unused at inference
        index, rest = key[len("encoder.layer.") :].split(".", 1)
        if rest.startswith("attention.attention."):
            part, kind = rest[len("attention.attention.") :].split(".")
            qkv.setdefault((index, kind), {})[part] = value
        elif rest.startswith("layer_scale"):
            renamed[f"blocks.{index}.ls{rest[len('layer_scale')]}.gamma"] = value
        else:
            module, kind = rest.rsplit(".", 1)
            if module in inner:
                renamed[f"blocks.{index}.{inner[module]}.{kind}"] = value
    for (index, kind), parts in qkv.items():
        renamed[f"blocks.{index}.attn.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return renamed
