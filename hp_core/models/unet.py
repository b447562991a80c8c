"""The SVD spatio-temporal UNet with HunyuanPortrait's adapter attention and pose features.

Built on diffusers' ``UNetSpatioTemporalConditionModel`` and its blocks; the method enters through:
- attention processors on every cross-attention (``attn2``) of the spatial and temporal transformer blocks:
  ``SDPA(q, to_k(appearance), to_v(appearance)) + motion_scale * SDPA(q, to_k_ip(motion), to_v_ip(motion))``
  then ``to_out``;
- per-frame context for spatial blocks, and for temporal blocks the mean over the window's frames of
  each token set;
- pose-guider features added to the output of ``conv_in``.

Speed: the release copies the temporal context once per spatial position (H*W identical copies) before
projecting it. Here the temporal processor projects the (B, N, C) context once per window and lets every
position attend to it, which is the same arithmetic (see tests/test_unet.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.transformers.transformer_temporal import (TransformerSpatioTemporalModel,
                                                                TransformerTemporalModelOutput)
from torch import nn

CONTEXT_SHARED = "shared"          # temporal context projected once per window (ours)
CONTEXT_PER_POSITION = "per_position"  # the release's arithmetic: one copy per spatial position


def _heads_split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """(B,Nq,C) x (B,Nk,C) -> (B,Nq,C), multi-head scaled dot-product attention."""
    y = F.scaled_dot_product_attention(_heads_split(q, heads), _heads_split(k, heads), _heads_split(v, heads))
    return y.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


class AdapterAttnProcessor(nn.Module):
    """Cross-attention with appearance tokens (to_k/to_v) plus motion tokens (to_k_ip/to_v_ip).

    The context holds appearance tokens first and ``num_motion_tokens`` motion tokens last. When the
    context batch is smaller than the query batch (temporal blocks: queries are (B*H*W, F, C), the
    context is (B, N, C)), each context row serves the H*W consecutive query rows of its window.
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_motion_tokens: int,
                 motion_scale: float = 1.0):
        super().__init__()
        # ModuleLists so that keys read ``processor.to_k_ip.0.weight`` as in the official checkpoint.
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.num_motion_tokens = num_motion_tokens
        self.motion_scale = motion_scale

    def forward(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor = None,
                attention_mask=None, temb=None, **_ignored) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("adapter attention needs a context (appearance + motion tokens)")
        rows, nq, _ = hidden_states.shape
        groups = encoder_hidden_states.shape[0]
        if rows % groups:
            raise ValueError(f"query batch {rows} is not a multiple of context batch {groups}")
        # Fold the positions that share a context row into the query sequence: (B*P, Nq, C) -> (B, P*Nq, C).
        q = attn.to_q(hidden_states).reshape(groups, (rows // groups) * nq, -1)
        app = encoder_hidden_states[:, :-self.num_motion_tokens]
        motion = encoder_hidden_states[:, -self.num_motion_tokens:]
        out = _attend(q, attn.to_k(app), attn.to_v(app), attn.heads)
        if self.motion_scale != 0:
            out = out + self.motion_scale * _attend(q, self.to_k_ip[0](motion), self.to_v_ip[0](motion),
                                                    attn.heads)
        out = attn.to_out[1](attn.to_out[0](out.reshape(rows, nq, -1)))
        return out / attn.rescale_output_factor


class _PortraitSpatioTemporalTransformer(TransformerSpatioTemporalModel):
    """Same modules and weights as diffusers' block; our forward feeds per-frame context to the spatial
    blocks and the per-window mean context (once, not per position) to the temporal blocks."""

    context_mode = CONTEXT_SHARED

    def forward(self, hidden_states, encoder_hidden_states=None, image_only_indicator=None,
                return_dict: bool = True):
        bf, _, h, w = hidden_states.shape
        frames = image_only_indicator.shape[-1]
        batch = bf // frames
        ctx = encoder_hidden_states  # (B*F, N, C), per frame
        time_ctx = ctx.view(batch, frames, *ctx.shape[1:]).mean(dim=1)  # (B, N, C)
        if self.context_mode == CONTEXT_PER_POSITION:
            time_ctx = time_ctx.repeat_interleave(h * w, dim=0)

        residual = hidden_states
        x = self.norm(hidden_states)
        width = x.shape[1]
        x = self.proj_in(x.permute(0, 2, 3, 1).reshape(bf, h * w, width))
        frame_ids = torch.arange(frames, device=x.device).repeat(batch)
        frame_emb = self.time_pos_embed(self.time_proj(frame_ids).to(x.dtype))[:, None, :]
        for spatial, temporal in zip(self.transformer_blocks, self.temporal_transformer_blocks):
            x = spatial(x, encoder_hidden_states=ctx)
            mixed = temporal(x + frame_emb, num_frames=frames, encoder_hidden_states=time_ctx)
            x = self.time_mixer(x_spatial=x, x_temporal=mixed, image_only_indicator=image_only_indicator)
        x = self.proj_out(x).reshape(bf, h, w, width).permute(0, 3, 1, 2)
        out = x + residual
        return TransformerTemporalModelOutput(sample=out) if return_dict else (out,)


class PortraitUNet(UNetSpatioTemporalConditionModel):
    """SVD UNet whose forward takes per-frame context tokens and optional pose features.

    forward(sample (B,F,8,h,w), timestep (scalar or (B,)), context (B,F,N,C), added_time_ids (B,3),
            pose_features (B,F,C0,h,w) or None) -> (B,F,4,h,w)
    """

    def __init__(self, *args, num_motion_tokens: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self._install_adapters(num_motion_tokens)

    def _install_adapters(self, num_motion_tokens: int) -> None:
        procs = {}
        for name, module in self.named_modules():
            if isinstance(module, TransformerSpatioTemporalModel):
                module.__class__ = _PortraitSpatioTemporalTransformer
        for name in self.attn_processors:
            if name.endswith("attn2.processor"):
                attn = self.get_submodule(name[: -len(".processor")])
                procs[name] = AdapterAttnProcessor(attn.to_q.out_features, attn.to_k.in_features,
                                                   num_motion_tokens)
            else:
                procs[name] = self.attn_processors[name]
        self.set_attn_processor(procs)

    def set_context_mode(self, mode: str) -> None:
        """``shared`` (default, fast) or ``per_position`` (the release's copies; for checks and benchmarks)."""
        if mode not in (CONTEXT_SHARED, CONTEXT_PER_POSITION):
            raise ValueError(f"unknown context mode {mode!r}")
        for module in self.modules():
            if isinstance(module, _PortraitSpatioTemporalTransformer):
                module.context_mode = mode

    def set_motion_scale(self, scale: float) -> None:
        """Weight of the motion attention term (1.0 in the release)."""
        for module in self.modules():
            if isinstance(module, AdapterAttnProcessor):
                module.motion_scale = float(scale)

    def forward(self, sample: torch.Tensor, timestep, context: torch.Tensor, added_time_ids: torch.Tensor,
                pose_features: torch.Tensor | None = None, return_dict: bool = False):
        batch, frames = sample.shape[:2]
        t = torch.as_tensor(timestep, device=sample.device, dtype=torch.float32).reshape(-1).expand(batch)
        emb = self.time_embedding(self.time_proj(t).to(sample.dtype))
        added = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1).to(emb.dtype)
        emb = (emb + self.add_embedding(added)).repeat_interleave(frames, dim=0)
        ctx = context.reshape(batch * frames, *context.shape[2:]).to(sample.dtype)

        x = self.conv_in(sample.flatten(0, 1))
        if pose_features is not None:
            x = x + pose_features.reshape(x.shape).to(x.dtype)
        indicator = torch.zeros(batch, frames, dtype=x.dtype, device=x.device)

        skips = (x,)
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                x, res = block(hidden_states=x, temb=emb, encoder_hidden_states=ctx,
                               image_only_indicator=indicator)
            else:
                x, res = block(hidden_states=x, temb=emb, image_only_indicator=indicator)
            skips += res
        x = self.mid_block(hidden_states=x, temb=emb, encoder_hidden_states=ctx, image_only_indicator=indicator)
        for block in self.up_blocks:
            res, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
            if getattr(block, "has_cross_attention", False):
                x = block(hidden_states=x, temb=emb, res_hidden_states_tuple=res, encoder_hidden_states=ctx,
                          image_only_indicator=indicator)
            else:
                x = block(hidden_states=x, temb=emb, res_hidden_states_tuple=res, image_only_indicator=indicator)
        x = self.conv_out(F.silu(self.conv_norm_out(x)))
        return x.reshape(batch, frames, *x.shape[1:])
