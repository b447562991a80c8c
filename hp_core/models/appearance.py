"""Appearance extractor: DINOv2 ViT-L/14 with registers and ID-aware multi-scale adapters (IMAdapters),
then the 261 -> 64 token projector.

Key names follow the official ``dino.pth`` / ``image_proj.pth``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_LN_EPS = 1e-6


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, h*w, C), row-major patches


class _SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class _ConvBN(nn.Module):
    """Conv (with bias) + BatchNorm(eps 1e-3) + ReLU, one branch step of the adapter."""

    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _IdentityCrossAttention(nn.Module):
    """Patch maps attend to the ArcFace identity token."""

    def __init__(self, map_dim: int, id_dim: int, dim: int, heads: int):
        super().__init__()
        self.image_proj = nn.Linear(map_dim, dim)
        self.id_proj = nn.Linear(id_dim, dim)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.back_proj = nn.Linear(dim, map_dim)

    def forward(self, maps: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        # maps: (B, P, map_dim); identity: (B, T, id_dim) (T = 1 identity token)
        q = self.image_proj(maps)
        kv = self.id_proj(identity)
        return self.back_proj(self.multihead_attn(q, kv, kv, need_weights=False)[0])


class IMAdapter(nn.Module):
    """ID-aware multi-scale adapter on the (normed) tokens of one ViT block.

    tokens -> Linear+ReLU (x0); patch tokens as a map through 1x1 / 1x1-3x3 / 1x1-5x5 branches,
    concatenated, cross-attending the identity; the cls/register tokens of x0 are put back in front,
    x0 is added (so those tokens become 2*x0), and a Linear maps back to the ViT width.
    """

    def __init__(self, width: int = 1024, dim: int = 384, id_dim: int = 512, attn_dim: int = 256,
                 attn_heads: int = 8):
        super().__init__()
        b1, red, b23 = dim // 2, dim // 16, dim // 4
        self.D_fc1 = nn.Linear(width, dim)
        self.branch1 = _ConvBN(dim, b1, 1)
        self.branch2 = nn.Sequential(_ConvBN(dim, red, 1), _ConvBN(red, b23, 3))
        self.branch3 = nn.Sequential(_ConvBN(dim, red, 1), _ConvBN(red, b23, 5))
        self.cross_attn = _IdentityCrossAttention(dim, id_dim, attn_dim, attn_heads)
        self.D_fc2 = nn.Linear(dim, width)

    def forward(self, tokens: torch.Tensor, identity: torch.Tensor, prefix: int, grid: tuple[int, int]):
        # tokens: (B, prefix + gh*gw, width); identity: (B, 1, id_dim)
        x0 = F.relu(self.D_fc1(tokens))
        b, _, d = x0.shape
        maps = x0[:, prefix:].transpose(1, 2).reshape(b, d, *grid)
        maps = torch.cat([self.branch1(maps), self.branch2(maps), self.branch3(maps)], dim=1)
        maps = self.cross_attn(maps.flatten(2).transpose(1, 2), identity)
        out = torch.cat([x0[:, :prefix], maps], dim=1) + x0
        return self.D_fc2(out)


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, adapter: IMAdapter | None, adapter_scale: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=_LN_EPS)
        self.attn = _SelfAttention(width, heads)
        self.ls1 = _LayerScale(width)
        self.norm2 = nn.LayerNorm(width, eps=_LN_EPS)
        self.mlp = _Mlp(width, 4 * width)
        self.ls2 = _LayerScale(width)
        if adapter is not None:
            self.adapter = adapter
        self.adapter_scale = adapter_scale

    def forward(self, x, identity, prefix, grid):
        x = x + self.ls1(self.attn(self.norm1(x)))
        h = self.norm2(x)
        ff = self.mlp(h)
        if hasattr(self, "adapter"):
            ff = ff + self.adapter_scale * self.adapter(h, identity, prefix, grid)
        return x + self.ls2(ff)


def interpolate_pos_table(table: torch.Tensor, grid: tuple[int, int], offset: float = 0.1) -> torch.Tensor:
    """(M*M, C) square position table -> (gh*gw, C), bicubic, DINOv2's scale-factor form with an offset.

    The scale factor (g + offset) / M (not an output size) sets the sampling positions, as DINOv2 does;
    the released weights were trained with this exact resampling.
    """
    n, c = table.shape
    m = int(math.isqrt(n))
    if m * m != n:
        raise ValueError("position table is not square")
    if (m, m) == tuple(grid):
        return table
    scale = ((grid[0] + offset) / m, (grid[1] + offset) / m)
    src = table.float().reshape(1, m, m, c).permute(0, 3, 1, 2)
    out = F.interpolate(src, scale_factor=scale, mode="bicubic", align_corners=False)
    if tuple(out.shape[-2:]) != tuple(grid):
        raise ValueError(f"position interpolation gave {tuple(out.shape[-2:])}, expected {grid}")
    return out.permute(0, 2, 3, 1).reshape(-1, c).to(table.dtype)


class DinoWithIMAdapters(nn.Module):
    """Appearance image (B,3,S,S), ImageNet-normalised, + identity (B,id_dim) -> tokens (B, 1+R+P, width)."""

    def __init__(self, width: int = 1024, depth: int = 24, heads: int = 16, patch: int = 14,
                 pos_grid: int = 37, registers: int = 4, adapter_blocks: Sequence[int] = (3, 7, 11, 15, 19, 23),
                 adapter_dim: int = 384, adapter_attn_dim: int = 256, adapter_heads: int = 8,
                 id_dim: int = 512, adapter_scale: float = 0.2):
        super().__init__()
        self.patch = patch
        self.patch_embed = _PatchEmbed(patch, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, width))
        self.register_tokens = nn.Parameter(torch.zeros(1, registers, width))
        self.mask_token = nn.Parameter(torch.zeros(1, width))  # unused at inference; kept for strict loading
        self.blocks = nn.ModuleList(
            _Block(width, heads,
                   IMAdapter(width, adapter_dim, id_dim, adapter_attn_dim, adapter_heads)
                   if i in set(adapter_blocks) else None, adapter_scale)
            for i in range(depth))
        self.norm = nn.LayerNorm(width, eps=_LN_EPS)
        self.id_dim = id_dim

    def forward(self, image: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        b = image.shape[0]
        grid = (image.shape[-2] // self.patch, image.shape[-1] // self.patch)
        patches = self.patch_embed(image)
        pos = self.pos_embed[0]
        patches = patches + interpolate_pos_table(pos[1:], grid).to(patches.dtype)
        cls = (self.cls_token + pos[:1]).expand(b, -1, -1)
        x = torch.cat([cls, self.register_tokens.expand(b, -1, -1), patches], dim=1)
        identity = identity.to(x.dtype).reshape(b, 1, self.id_dim)
        prefix = 1 + self.register_tokens.shape[1]
        for block in self.blocks:
            x = block(x, identity, prefix, grid)
        return self.norm(x)


class TokenProjector(nn.Linear):
    """Linear over the token axis: (B, 261, C) -> (B, 64, C). Keys ``weight``/``bias`` as released."""

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return super().forward(tokens.transpose(1, 2)).transpose(1, 2)
