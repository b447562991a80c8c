"""Intensity-aware motion refiner: a perceiver over a learned motion memory bank, modulated by AdaLN.

Two intensity ids (head motion, expression) index embedding tables; their sum modulates every
normalisation (AdaLN) and shifts the 64 learned latents (the memory bank). Each driving frame's
expression feature is one key/value token. Key names follow the official ``motion_proj.pth``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 25  # driving frames per (head, expression) intensity id pair, as the release encodes motion


class AdaLN(nn.Module):
    """LayerNorm without affine, then ``* (1 + scale) + shift`` predicted from the intensity vector."""

    def __init__(self, width: int, cond_width: int):
        super().__init__()
        self.linear = nn.Linear(cond_width, 2 * width)
        self.width = width

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # x: (B, N, W); cond: (B, Wc). Shift comes first in the projection, then scale.
        shift, scale = self.linear(F.silu(cond)).unsqueeze(1).chunk(2, dim=-1)
        return F.layer_norm(x, (self.width,), eps=1e-6) * (1 + scale) + shift


class _SquaredReLUMLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(torch.relu(self.c_fc(x)).square())


class PerceiverBlock(nn.Module):
    """latents += MHA(AdaLN1(latents), [AdaLN1(latents), AdaLN2(tokens)]); latents += MLP(AdaLN3(latents))."""

    def __init__(self, width: int, heads: int, cond_width: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = _SquaredReLUMLP(width)
        self.ln_1 = AdaLN(width, cond_width)
        self.ln_2 = AdaLN(width, cond_width)
        self.ln_ff = AdaLN(width, cond_width)

    def forward(self, tokens: torch.Tensor, latents: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        q = self.ln_1(latents, cond)
        kv = torch.cat([q, self.ln_2(tokens, cond)], dim=1)
        latents = latents + self.attn(q, kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.ln_ff(latents, cond))


class _Connector(nn.Module):
    def __init__(self, in_dim: int, width: int, depth: int, heads: int, num_latents: int, out_dim: int,
                 cond_width: int):
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, width) * width ** -0.5)
        self.intensity_aware_linear = nn.Linear(cond_width, width)
        self.proj_in = nn.Linear(in_dim, width)
        self.perceiver_blocks = nn.ModuleList(PerceiverBlock(width, heads, cond_width) for _ in range(depth))
        self.proj_out = nn.Sequential(nn.Linear(width, out_dim), nn.LayerNorm(out_dim))

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        latents = self.latents.unsqueeze(0) + self.intensity_aware_linear(F.silu(cond)).unsqueeze(1)
        tokens = self.proj_in(tokens)
        for block in self.perceiver_blocks:
            latents = block(tokens, latents, cond)
        return self.proj_out(latents)


class MotionRefiner(nn.Module):
    """Per-frame expression features (F, in_dim) + intensity ids -> motion tokens (F, num_latents, out_dim)."""

    def __init__(self, in_dim: int = 512, width: int = 768, depth: int = 6, heads: int = 8,
                 num_latents: int = 64, out_dim: int = 1018, num_buckets: int = 128):
        super().__init__()
        self.position_head = nn.Embedding(num_buckets, width)
        self.position_exp = nn.Embedding(num_buckets, width)
        self.connector = _Connector(in_dim, width, depth, heads, num_latents, out_dim, width)
        self.num_buckets = num_buckets

    def intensity(self, head_id, exp_id, frames: int, device, dtype) -> torch.Tensor:
        """The summed intensity embedding, one row per frame (F, width)."""
        ids = [torch.as_tensor(i, device=device, dtype=torch.long).reshape(-1) for i in (head_id, exp_id)]
        for i in ids:
            if (i < 0).any() or (i >= self.num_buckets).any():
                raise ValueError(f"intensity ids must lie in [0, {self.num_buckets - 1}]")
        vec = self.position_head(ids[0]) + self.position_exp(ids[1])
        return vec.to(dtype).expand(frames, -1)

    def forward(self, features: torch.Tensor, head_id, exp_id) -> torch.Tensor:
        # features: (F, in_dim), one token per frame; ids: ints or tensors of shape () / (1,) / (F,).
        cond = self.intensity(head_id, exp_id, features.shape[0], features.device, features.dtype)
        return self.connector(features.unsqueeze(1), cond)


def motion_tokens(refined: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """cat[refined (F,N,D), rotation (F,3) on every token, zeros (F,3) where translation would be] -> (F,N,D+6).

    The release multiplies the translation by zero before this concatenation; we keep that.
    """
    f, n, _ = refined.shape
    rot = rotation.to(refined.dtype).unsqueeze(1).expand(f, n, 3)
    return torch.cat([refined, rot, torch.zeros_like(rot)], dim=-1)
