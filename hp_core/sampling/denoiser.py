"""The windowed three-branch guidance denoiser, in the k-diffusion convention ``D(x, sigma) -> denoised``.

Over the whole padded sequence x (B=1, L, 4, h, w), every call runs the UNet on the context windows of
the current step with three guidance branches (uncond / appearance / appearance + motion), combines them
with the two guidance scales of the step, and returns each frame's denoised estimate averaged over the
windows that cover it. Because an Euler step is affine in the denoised estimate with the same x for every
window, averaging denoised estimates and then stepping equals the release's stepping of each window and
averaging the stepped latents; any k-diffusion sampler can drive this denoiser.

Memory: the sequence and all per-frame conditions stay where the caller keeps them (the CPU by default);
only the active window's tensors are moved to the compute device, and pose features are computed per
window, so device memory does not grow with video length. ``branch_mode="sequential"`` runs the three
branches one after another (a third of the activation memory, the same result).

Exact reuse: the UNet is told which branches have zero appearance/motion tokens (their attention terms are
constants, see models/unet.py), and what is identical for every window and step is computed once: the
conditioning latents' share of conv_in, the added-time embedding, the blank pose's features.

Guidance interval (opt-in): on a call whose sigma lies outside [lo, hi] only the full branch runs and its
prediction is used as is (one UNet evaluation per window instead of three).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import HPError
from ..models.fp8 import compute_dtype
from .guidance import combine, guidance_ramp
from .v_prediction import c_in, c_noise, v_to_denoised
from .samplers import Cancelled
from .windows import merge_windows, validate_windows, window_indices


@dataclass
class Conditions:
    """Everything the denoiser needs besides x, for one video (L padded frames).

    appearance: (1, Na, C) projected appearance tokens.
    motion: (L, Nm, C) motion tokens, padding included (zeros are the unconditional motion).
    cond_latents: (1, 4, h, w) VAE encoder mode of the reference image, unscaled.
    pose: (L, 3, H, W) pose images in [0, 1], or None for the release's blank pose.
    added_time_ids: (3,) [fps, motion_bucket_id, noise_aug_strength].
    """

    appearance: torch.Tensor
    motion: torch.Tensor
    cond_latents: torch.Tensor
    pose: torch.Tensor | None
    added_time_ids: torch.Tensor

    @property
    def length(self) -> int:
        return self.motion.shape[0]


BRANCHES = ("uncond", "appearance", "full")
# Per branch: (appearance tokens present, motion tokens present); False means the tokens are zeros.
PRESENT = {"uncond": (False, False), "appearance": (True, False), "full": (True, True)}
BRANCH_MODES = ("batched", "sequential")


@dataclass
class GuidanceSettings:
    # No defaults: the release's values live in hp_core.pipeline.Settings, which builds this.
    window: int
    overlap: int
    shift: int
    appearance_cfg: tuple[float, float]
    motion_cfg: tuple[float, float]
    branch_mode: str = "batched"                          # or "sequential" (a third of the activations)
    guidance_interval: tuple[float, float] | None = None  # sigmas [lo, hi] that get guidance; None = all


def guided(sigma: float, interval: tuple[float, float] | None) -> bool:
    """Whether a call at ``sigma`` runs the three guidance branches (else only the full branch)."""
    return interval is None or interval[0] <= sigma <= interval[1]


def planned_evaluations(sigmas: torch.Tensor, length: int, settings: GuidanceSettings,
                        calls_per_step: int = 1) -> int:
    """UNet evaluations (one branch over one window) of a run whose sampler calls the denoiser
    ``calls_per_step`` times per step at the step's sigma (1 for Euler and the other one-call samplers)."""
    windows = -(-length // (settings.window - settings.overlap))
    per_step = [3 if guided(float(s), settings.guidance_interval) else 1 for s in torch.as_tensor(sigmas)[:-1]]
    return windows * calls_per_step * sum(per_step)


class PortraitDenoiser:
    """k-diffusion denoiser over the whole sequence; ``sigmas`` is the schedule being sampled (for the
    per-step window shift and guidance ramp)."""

    def __init__(self, unet: torch.nn.Module, pose_guider: torch.nn.Module, conditions: Conditions,
                 sigmas: torch.Tensor, settings: GuidanceSettings, *,
                 device: torch.device | str | None = None,
                 should_cancel: Callable[[], bool] | None = None):
        self.unet, self.pose_guider, self.cond = unet, pose_guider, conditions
        self.settings = settings
        s = self.settings
        validate_windows(conditions.length, s.window, s.overlap, s.shift)
        self.sigmas = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        if self.sigmas.numel() < 2:
            raise HPError("The sigma schedule needs at least one step.", hint="Use steps >= 1.")
        steps = self.sigmas.numel() - 1
        self.g1 = guidance_ramp(*s.appearance_cfg, steps)
        self.g2 = guidance_ramp(*s.motion_cfg, steps)
        self.device = torch.device(device) if device is not None else next(unet.parameters()).device
        self.dtype = compute_dtype(unet)
        self.should_cancel = should_cancel
        if s.branch_mode not in BRANCH_MODES:
            raise HPError(f"Unknown branch mode {s.branch_mode!r}.", hint=f"Use one of {', '.join(BRANCH_MODES)}.")
        self._blank_pose: torch.Tensor | None = None
        self._reuse: dict | None = None
        self.evaluations = 0  # UNet evaluations so far (one branch over one window each)
        self.unet_calls = 0   # UNet forward calls so far (a batched call evaluates several branches)

    def step_index(self, sigma: float) -> int:
        """The schedule step whose sigma is nearest (in log space) to ``sigma``."""
        levels = self.sigmas[:-1].clamp_min(1e-12).log()
        return int((levels - math.log(max(sigma, 1e-12))).abs().argmin())

    def _pose_features(self, idx: list[int], h: int, w: int) -> torch.Tensor:
        pg_dtype = compute_dtype(self.pose_guider)
        if self.cond.pose is None:
            # Blank pose: the features are the same for every frame, so compute them once.
            if self._blank_pose is None or self._blank_pose.shape[-2:] != (h, w):
                blank = torch.zeros(1, 3, h * 8, w * 8, device=self.device, dtype=pg_dtype)
                self._blank_pose = self.pose_guider(blank)
            return self._blank_pose.expand(len(idx), -1, -1, -1)
        pose = self.cond.pose[idx].to(self.device)
        if pose.dtype == torch.uint8:  # skeletons travel as uint8 to save memory; the guider wants [0, 1]
            pose = pose.float() / 255
        return self.pose_guider(pose.to(pg_dtype))

    def _shared(self, h: int, w: int) -> dict:
        """What is the same for every window and step, computed once: per-branch conv_in share of the
        conditioning latents and the added-time embedding (PortraitUNet only; other UNets get none)."""
        if self._reuse is None or self._reuse["hw"] != (h, w):
            reuse = {"hw": (h, w), "cond": None, "emb": None}
            if hasattr(self.unet, "conditioning_features"):
                lat = self.cond.cond_latents.to(self.device, self.dtype)
                feat = self.unet.conditioning_features(lat)
                reuse["cond"] = {"uncond": torch.zeros_like(feat), "appearance": feat, "full": feat}
                ids = self.cond.added_time_ids.to(self.device, self.dtype).reshape(1, 3)
                reuse["emb"] = self.unet.added_embedding(ids)
            self._reuse = reuse
        return self._reuse

    def _run_branches(self, names: list[str], x_in: torch.Tensor, timestep: float, app: torch.Tensor,
                      motion: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """One UNet call over the given branches of a window -> v (len(names), W, 4, h, w)."""
        n, (h, w) = len(names), x_in.shape[-2:]
        zeros_app, zeros_mot = torch.zeros_like(app), torch.zeros_like(motion)
        ctx = torch.cat([torch.cat([app if PRESENT[b][0] else zeros_app, motion if PRESENT[b][1] else zeros_mot],
                                   dim=-2) for b in names])
        pose = pose.expand(n, -1, -1, -1, -1)
        shared = self._shared(h, w)
        self.unet_calls += 1
        self.evaluations += n
        if shared["cond"] is not None:
            feats = torch.cat([shared["cond"][b] for b in names])
            return self.unet(x_in.expand(n, -1, -1, -1, -1), timestep, ctx, None, pose,
                             present=[PRESENT[b] for b in names], cond_features=feats,
                             added_emb=shared["emb"].expand(n, -1))
        wlen = x_in.shape[1]
        lat = self.cond.cond_latents.to(self.device, self.dtype).unsqueeze(1).expand(1, wlen, -1, -1, -1)
        lat = torch.cat([lat if PRESENT[b][0] else torch.zeros_like(lat) for b in names])
        sample = torch.cat([x_in.expand(n, -1, -1, -1, -1), lat], dim=2)
        ids = self.cond.added_time_ids.to(self.device, self.dtype).reshape(1, 3).expand(n, -1)
        return self.unet(sample, timestep, ctx, ids, pose)

    def window_output(self, x_win: torch.Tensor, sigma: float, idx: list[int], step: int) -> torch.Tensor:
        """Guided denoised estimate (1, W, 4, h, w) of one window (x_win already on the device)."""
        wlen, (h, w) = len(idx), x_win.shape[-2:]
        dt = self.dtype
        sig = torch.tensor(sigma, dtype=torch.float64)
        x_in = (x_win * c_in(sig).item()).to(dt)
        app = self.cond.appearance.to(self.device, dt).unsqueeze(1).expand(1, wlen, -1, -1)
        motion = self.cond.motion[idx].to(self.device, dt).unsqueeze(0)
        pose = self._pose_features(idx, h, w).unsqueeze(0)
        names = list(BRANCHES) if guided(sigma, self.settings.guidance_interval) else ["full"]
        groups = [names] if self.settings.branch_mode == "batched" else [[b] for b in names]
        den = {}
        for group in groups:
            v = self._run_branches(group, x_in, c_noise(sig).item(), app, motion, pose)
            d = v_to_denoised(v.float(), x_win.float().expand(len(group), -1, -1, -1, -1), sig.float())
            den.update({b: d[j:j + 1] for j, b in enumerate(group)})
        if len(names) == 1:
            return den["full"]
        return combine(den["uncond"], den["appearance"], den["full"], self.g1[step], self.g2[step])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma, **_extra) -> torch.Tensor:
        """x: (1, L, 4, h, w) on any device; sigma: scalar or (1,) tensor -> denoised, like x."""
        if x.ndim != 5 or x.shape[0] != 1 or x.shape[1] != self.cond.length:
            raise HPError(f"Expected latents (1, {self.cond.length}, 4, h, w), got {tuple(x.shape)}.")
        sigma = float(torch.as_tensor(sigma).flatten()[0])
        step = self.step_index(sigma)
        s = self.settings
        windows = window_indices(self.cond.length, s.window, s.overlap, step, s.shift)
        outputs = []  # window results wait where x lives (the CPU by default), not on the device
        for idx in windows:
            if self.should_cancel is not None and self.should_cancel():
                raise Cancelled(step, self.sigmas.numel() - 1)
            x_win = x[:, idx].to(self.device, torch.float32)
            outputs.append(self.window_output(x_win, sigma, idx, step).to(x.device))
        return merge_windows(outputs, windows, self.cond.length, dim=1).to(x.dtype)
