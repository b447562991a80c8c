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
position attend to it, which is the same arithmetic (see tests/models/test_networks.py).
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch
import torch.nn.functional as F
from diffusers import UNetSpatioTemporalConditionModel
from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput
from diffusers.models.transformers.transformer_temporal import (TransformerSpatioTemporalModel,
                                                                TransformerTemporalModelOutput)
from torch import nn

from ..errors import HPError
from .sdpa import sdpa_backends, sdpa_context

CONTEXT_SHARED = "shared"          # temporal context projected once per window (ours)
CONTEXT_PER_POSITION = "per_position"  # the release's arithmetic: one copy per spatial position


def _heads_split(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """(B,Nq,C) x (B,Nk,C) -> (B,Nq,C), multi-head scaled dot-product attention (optional key mask)."""
    y = F.scaled_dot_product_attention(_heads_split(q, heads), _heads_split(k, heads), _heads_split(v, heads),
                                       attn_mask=mask)
    return y.transpose(1, 2).reshape(q.shape[0], q.shape[1], -1)


def _take(x: torch.Tensor, rows: list[int]) -> torch.Tensor:
    """Rows ``rows`` of x (dim 0): a view when they are one contiguous run (the usual branch layout)."""
    if rows == list(range(rows[0], rows[-1] + 1)):
        return x[rows[0]:rows[-1] + 1]
    return x.index_select(0, torch.tensor(rows, device=x.device))


def _key_mask(mask: torch.Tensor | None, groups: int, tokens: int) -> torch.Tensor | None:
    """A key mask over the context tokens, (groups, N) or (groups, 1, N), bool (True = attend) or additive
    float -> (groups, 1, 1, N) for SDPA; anything else is refused (diffusers passes none to SVD blocks)."""
    if mask is None:
        return None
    if mask.ndim == 3 and mask.shape[1] == 1:
        mask = mask[:, 0]
    if mask.ndim != 2 or mask.shape != (groups, tokens):
        raise HPError(f"The adapter attention takes a key mask of shape ({groups}, {tokens}) or "
                      f"({groups}, 1, {tokens}), got {tuple(mask.shape)}.",
                      hint="Mask context tokens only (one row per context row); query masks are not supported.")
    return mask[:, None, None, :]


class AdapterAttnProcessor(nn.Module):
    """Cross-attention with appearance tokens (to_k/to_v) plus motion tokens (to_k_ip/to_v_ip).

    The context holds appearance tokens first and ``num_motion_tokens`` motion tokens last. When the
    context batch is smaller than the query batch (temporal blocks: queries are (B*H*W, F, C), the
    context is (B, N, C)), each context row serves the H*W consecutive query rows of its window.

    Exact savings (``present``, set by ``PortraitUNet.forward``): one (appearance, motion) flag pair per
    batch row, False promising that those tokens are zeros. to_k_ip/to_v_ip have no bias, so zero motion
    tokens give k = v = 0 and the motion term is exactly 0: skipped. Zero appearance tokens give keys that
    are all to_k's bias (equal logits, a uniform softmax) and values that are all to_v's bias b_v, so the
    appearance term is exactly b_v (0 in SVD, which has no to_k/to_v bias) whatever the query: taken as
    that constant without attending. A row with neither needs no query at all: its output is to_out(b_v).
    """

    def __init__(self, hidden_size: int, cross_attention_dim: int, num_motion_tokens: int,
                 motion_scale: float = 1.0):
        super().__init__()
        # ModuleLists so that keys read ``processor.to_k_ip.0.weight`` as in the official checkpoint.
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.num_motion_tokens = num_motion_tokens
        self.motion_scale = motion_scale
        self.present: list[tuple[bool, bool]] | None = None

    def _row_flags(self, groups: int) -> tuple[list[int], list[int]]:
        """Context rows whose appearance / motion tokens may be non-zero."""
        present = self.present or [(True, True)]
        if groups % len(present):
            raise ValueError(f"context batch {groups} is not a multiple of the {len(present)} flagged rows")
        per = groups // len(present)
        app = [i for i in range(groups) if present[i // per][0]]
        mot = [i for i in range(groups) if present[i // per][1] and self.motion_scale != 0]
        return app, mot

    def forward(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor = None,
                attention_mask: torch.Tensor | None = None, temb=None, **_ignored) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise ValueError("adapter attention needs a context (appearance + motion tokens)")
        rows, nq, _ = hidden_states.shape
        groups, tokens = encoder_hidden_states.shape[:2]
        if rows % groups:
            raise ValueError(f"query batch {rows} is not a multiple of context batch {groups}")
        mask = _key_mask(attention_mask, groups, tokens)
        # Fold the positions that share a context row into the query sequence: (B*P, Nq, C) -> (B, P*Nq, C).
        folded = hidden_states.reshape(groups, (rows // groups) * nq, -1)
        app_rows, mot_rows = self._row_flags(groups)
        if len(app_rows) == len(mot_rows) == groups:  # every row has both kinds of tokens: the release's sum
            y = self._both_terms(attn, folded, encoder_hidden_states, mask)
        else:
            y = self._present_terms(attn, folded, encoder_hidden_states, mask, app_rows, mot_rows)
        return y.reshape(rows, nq, -1) / attn.rescale_output_factor

    def _both_terms(self, attn, folded, context, mask) -> torch.Tensor:
        """to_out(attention to the appearance tokens + motion_scale * attention to the motion tokens)."""
        split = context.shape[1] - self.num_motion_tokens
        app, mot = context[:, :split], context[:, split:]
        app_mask, mot_mask = (mask[..., :split], mask[..., split:]) if mask is not None else (None, None)
        q = attn.to_q(folded)
        y = _attend(q, attn.to_k(app), attn.to_v(app), attn.heads, app_mask)
        y = y + self.motion_scale * _attend(q, self.to_k_ip[0](mot), self.to_v_ip[0](mot), attn.heads, mot_mask)
        return attn.to_out[1](attn.to_out[0](y))

    def _present_terms(self, attn, folded, context, mask, app_rows: list[int], mot_rows: list[int]) -> torch.Tensor:
        """The same sum with the terms of zero tokens not computed (see the class docstring): an absent
        appearance term is the constant to_v bias, an absent motion term 0, and a row with neither is
        to_out(to_v bias) without a query."""
        groups, tokens = context.shape[:2]
        split = tokens - self.num_motion_tokens
        need = sorted(set(app_rows) | set(mot_rows))
        v_bias = attn.to_v.bias  # read directly: it may wait in system memory while the layer is streamed
        const = (v_bias.to(folded) if v_bias is not None
                 else folded.new_zeros(attn.to_v.out_features))  # appearance term of zero tokens
        out_const = attn.to_out[1](attn.to_out[0](const))
        if not need:
            return out_const.expand(groups, folded.shape[1], -1)
        q = attn.to_q(_take(folded, need))
        where = {row: i for i, row in enumerate(need)}

        def term(sel: list[int], to_k, to_v, part: slice) -> torch.Tensor:
            ctx = _take(context, sel)[:, part]
            m = _take(mask, sel)[..., part] if mask is not None else None
            return _attend(_take(q, [where[r] for r in sel]), to_k(ctx), to_v(ctx), attn.heads, m)

        if app_rows == need:
            y = term(app_rows, attn.to_k, attn.to_v, slice(0, split))
        else:
            y = const.expand_as(q).clone()
            if app_rows:
                y[[where[r] for r in app_rows]] = term(app_rows, attn.to_k, attn.to_v, slice(0, split))
        if mot_rows:
            mot = self.motion_scale * term(mot_rows, self.to_k_ip[0], self.to_v_ip[0], slice(split, tokens))
            if mot_rows == need:
                y = y + mot
            else:
                y[[where[r] for r in mot_rows]] += mot
        y = attn.to_out[1](attn.to_out[0](y))
        if len(need) < groups:
            full = out_const.expand(groups, *y.shape[1:]).clone()
            full[need] = y
            y = full
        return y


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

    forward(sample (B,F,8,h,w), timestep (scalar or (B,)), context (B,F,N,C) or (B,N,C),
            added_time_ids (B,3), pose_features (B,F,C0,h,w) or None) -> (B,F,4,h,w)

    The parent's contract holds: latent sides that are not a multiple of 2**num_upsamplers are upsampled
    to their skip connection's size; ``return_dict=True`` gives a ``UNetSpatioTemporalConditionOutput``,
    ``False`` a tuple; left out (None) it gives the bare tensor, the convention of this project's callers.
    ``num_motion_tokens`` is part of ``unet.config``.
    """

    def __init__(self, *args, num_motion_tokens: int = 64, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_to_config(num_motion_tokens=num_motion_tokens)
        self._install_adapters(num_motion_tokens)

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        """diffusers reads init arguments off the signature; ours passes the parent's through ``**kwargs``,
        so ``from_config`` hands num_motion_tokens and the parent's arguments on explicitly."""
        config_dict = dict(config_dict)
        motion = config_dict.pop("num_motion_tokens", 64)
        parent, unused, hidden = UNetSpatioTemporalConditionModel.extract_init_dict(
            {**config_dict, "_class_name": "UNetSpatioTemporalConditionModel"}, **kwargs)
        return {**parent, "num_motion_tokens": motion}, unused, hidden

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

    def set_sdpa_backend(self, backend: str | None) -> None:
        """Pin every attention of this UNet to one SDPA backend ("flash", "efficient", "math", "cudnn");
        None lets PyTorch choose (the default)."""
        self.sdpa_backend = sdpa_backends(backend)

    def conditioning_features(self, cond_latents: torch.Tensor) -> torch.Tensor:
        """conv_in's share of the conditioning latents (B,Cc,h,w) -> (B,C0,h,w), without conv_in's bias.

        conv_in is linear in its input channels, so conv_in(cat[x, lat]) = conv(x, W_x) + b + conv(lat, W_lat):
        the second part is the same for every window and step and is computed once by the denoiser."""
        cc = cond_latents.shape[1]
        w = self.conv_in.weight[:, -cc:].to(cond_latents.device)
        return F.conv2d(cond_latents.to(w.dtype), w, None, self.conv_in.stride, self.conv_in.padding)

    def added_embedding(self, added_time_ids: torch.Tensor) -> torch.Tensor:
        """The added-time embedding (B,3) -> (B,D): constant over a run, so the denoiser computes it once."""
        batch = added_time_ids.shape[0]
        added = self.add_time_proj(added_time_ids.flatten()).reshape(batch, -1)
        return self.add_embedding(added.to(self.add_embedding.linear_1.weight.dtype))

    @contextlib.contextmanager
    def _branch_flags(self, present):
        procs = [m for m in self.modules() if isinstance(m, AdapterAttnProcessor)]
        for p in procs:
            p.present = list(present) if present is not None else None
        try:
            yield
        finally:
            for p in procs:
                p.present = None

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor | None, pose_features: torch.Tensor | None = None,
                return_dict: bool | None = None, *, present: Sequence[tuple[bool, bool]] | None = None,
                cond_features: torch.Tensor | None = None, added_emb: torch.Tensor | None = None):
        """The parent's forward, step for step and under its names, with the method's three additions marked
        HunyuanPortrait: per-frame context tokens (B,F,N,C) (the parent's (B,N,C) is taken as the same tokens
        for every frame), pose features added after conv_in, and the adapter flags.

        Keyword-only speed-ups (results equal within rounding): ``present`` = per batch row (appearance,
        motion) flags, False promising zero tokens (see AdapterAttnProcessor); ``cond_features`` (B,C0,h,w)
        from ``conditioning_features`` with ``sample`` holding only the noisy channels; ``added_emb`` (B,D)
        from ``added_embedding`` in place of ``added_time_ids``."""
        batch_size, num_frames = sample.shape[:2]
        if present is not None and len(present) != batch_size:
            raise ValueError(f"present has {len(present)} rows for a batch of {batch_size}")
        # By default samples have to be at least a multiple of the overall upsampling factor.
        default_overall_up_factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(s % default_overall_up_factor for s in sample.shape[-2:])
        upsample_size = None

        # 1. time
        timesteps = torch.as_tensor(timestep, device=sample.device, dtype=torch.float32).reshape(-1)
        timesteps = timesteps.expand(batch_size)
        t_emb = self.time_proj(timesteps).to(dtype=sample.dtype)
        emb = self.time_embedding(t_emb)
        aug_emb = self.added_embedding(added_time_ids) if added_emb is None else added_emb
        emb = emb + aug_emb.to(emb.dtype).expand(batch_size, -1)

        # Flatten the batch and frames dimensions; HunyuanPortrait: the context is per frame already.
        emb = emb.repeat_interleave(num_frames, dim=0)
        if encoder_hidden_states.ndim == 3:
            encoder_hidden_states = encoder_hidden_states.unsqueeze(1).expand(-1, num_frames, -1, -1)
        encoder_hidden_states = encoder_hidden_states.flatten(0, 1).to(sample.dtype)

        # 2. pre-process
        sample = self.pre_process(sample, cond_features)
        if pose_features is not None:  # HunyuanPortrait: the pose guider's features join after conv_in
            sample = sample + pose_features.reshape(sample.shape).to(sample.dtype)
        image_only_indicator = torch.zeros(batch_size, num_frames, dtype=sample.dtype, device=sample.device)

        with self._branch_flags(present), sdpa_context(getattr(self, "sdpa_backend", None)):
            # 3. down
            down_block_res_samples = (sample,)
            for downsample_block in self.down_blocks:
                if getattr(downsample_block, "has_cross_attention", False):
                    sample, res_samples = downsample_block(hidden_states=sample, temb=emb,
                                                          encoder_hidden_states=encoder_hidden_states,
                                                          image_only_indicator=image_only_indicator)
                else:
                    sample, res_samples = downsample_block(hidden_states=sample, temb=emb,
                                                          image_only_indicator=image_only_indicator)
                down_block_res_samples += res_samples

            # 4. mid
            sample = self.mid_block(hidden_states=sample, temb=emb, encoder_hidden_states=encoder_hidden_states,
                                    image_only_indicator=image_only_indicator)

            # 5. up
            for i, upsample_block in enumerate(self.up_blocks):
                is_final_block = i == len(self.up_blocks) - 1
                res_samples = down_block_res_samples[-len(upsample_block.resnets):]
                down_block_res_samples = down_block_res_samples[: -len(upsample_block.resnets)]
                # if we have not reached the final block and need to forward the upsample size, we do it here
                if not is_final_block and forward_upsample_size:
                    upsample_size = down_block_res_samples[-1].shape[2:]
                if getattr(upsample_block, "has_cross_attention", False):
                    sample = upsample_block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res_samples,
                                            encoder_hidden_states=encoder_hidden_states, upsample_size=upsample_size,
                                            image_only_indicator=image_only_indicator)
                else:
                    sample = upsample_block(hidden_states=sample, temb=emb, res_hidden_states_tuple=res_samples,
                                            upsample_size=upsample_size, image_only_indicator=image_only_indicator)

        # 6. post-process
        sample = self.conv_norm_out(sample)
        sample = self.conv_act(sample)
        sample = self.conv_out(sample)

        # 7. Reshape back to original shape
        sample = sample.reshape(batch_size, num_frames, *sample.shape[1:])
        if return_dict is None:  # this project's callers take the bare tensor
            return sample
        return UNetSpatioTemporalConditionOutput(sample=sample) if return_dict else (sample,)

    def pre_process(self, sample: torch.Tensor, cond_features: torch.Tensor | None = None) -> torch.Tensor:
        """conv_in over the flattened frames (B*F, C, h, w). With ``cond_features`` (the conditioning latents'
        share, see conditioning_features), ``sample`` holds only the noisy channels: conv_in is linear in its
        input channels, so their share is added instead of convolved again."""
        batch_size, num_frames = sample.shape[:2]
        sample = sample.flatten(0, 1)
        if cond_features is None:
            return self.conv_in(sample)
        noisy = sample.shape[1]
        weight, bias = self.conv_in.weight[:, :noisy].to(sample), self.conv_in.bias
        sample = F.conv2d(sample, weight, None if bias is None else bias.to(sample), self.conv_in.stride,
                          self.conv_in.padding)
        return (sample.unflatten(0, (batch_size, num_frames)) + cond_features.to(sample.dtype).unsqueeze(1)).flatten(0, 1)
