"""Three-branch guidance and the release's padding of the driving sequence.

Guidance mixes three predictions of the same input: uncond (no appearance, zero reference latents, zero
motion), appearance-only (appearance and latents, zero motion) and full (everything):
    out = uncond + g1 * (appearance - uncond) + g2 * (full - appearance).
The release applies it to the UNet's v output; the weights sum to 1, so applying it to denoised
estimates gives the same result up to rounding.

Padding: 15 frames are added on each side of the driving sequence. Pose/video frames are copies of
driving frame 0 on both sides; motion tokens ramp in from zero before (frame 0 * i/15, i = 0..14) and
out after (last frame * (1 - i/15), i = 0..14, i.e. starting at full strength). The output drops them.
"""

from __future__ import annotations

import torch

from ..errors import HPError


def combine(
    uncond: torch.Tensor,
    appearance: torch.Tensor,
    full: torch.Tensor,
    g1: float | torch.Tensor,
    g2: float | torch.Tensor,
) -> torch.Tensor:
    """uncond + g1 * (appearance - uncond) + g2 * (full - appearance), same layout as the inputs."""
    return uncond + g1 * (appearance - uncond) + g2 * (full - appearance)


def guidance_ramp(
    minimum: float, maximum: float, steps: int, dtype: torch.dtype = torch.float32
) -> list[float]:
    """Per-step guidance scales linspace(minimum, maximum, steps), rounded to `dtype` like the release.

    The release builds the ramp in float32 and casts it to the latent dtype (fp16) before use; pass
    dtype=torch.float16 to get those exact values. ``steps`` was checked at the entry point (Settings).
    """
    ramp = torch.linspace(float(minimum), float(maximum), int(steps), dtype=torch.float32)
    return [float(v) for v in ramp.to(dtype).tolist()]


def _check_pad(pad: int) -> int:
    if isinstance(pad, bool) or int(pad) != pad or pad < 0:
        raise HPError(f"Padding must be a whole number >= 0, got {pad!r}.", hint="The release pads 15 frames.")
    return int(pad)


def pad_motion(tokens: torch.Tensor, pad: int, dim: int = 0) -> torch.Tensor:
    """Motion tokens (F N C, frames on `dim`) -> F + 2*pad frames with the release's fade-in/fade-out ramps."""
    pad = _check_pad(pad)
    if tokens.shape[dim] < 1:
        raise HPError("No motion frames to pad.", hint="Give at least one driving frame.")
    if pad == 0:
        return tokens
    first = tokens.narrow(dim, 0, 1)
    last = tokens.narrow(dim, tokens.shape[dim] - 1, 1)
    # Python-float weights, as the release multiplies by i / pad computed in double precision.
    before = [first * (i / pad) for i in range(pad)]
    after = [last * (1 - i / pad) for i in range(pad)]
    return torch.cat([*before, tokens, *after], dim=dim)


def pad_frames(frames: torch.Tensor, pad: int, dim: int = 0) -> torch.Tensor:
    """Frames (F ..., frames on `dim`) -> F + 2*pad frames, copies of frame 0 before AND after (the release)."""
    pad = _check_pad(pad)
    if frames.shape[dim] < 1:
        raise HPError("No frames to pad.", hint="Give at least one driving frame.")
    if pad == 0:
        return frames
    first = frames.narrow(dim, 0, 1)
    reps = [1] * frames.ndim
    reps[dim] = pad
    block = first.repeat(reps)
    return torch.cat([block, frames, block], dim=dim)


def unpad(frames: torch.Tensor, pad: int, dim: int = 0) -> torch.Tensor:
    """Drop `pad` frames from each end of axis `dim` (pad 0 keeps everything, unlike a [pad:-pad] slice)."""
    pad = _check_pad(pad)
    if frames.shape[dim] < 2 * pad:
        raise HPError(
            f"Cannot remove {pad} padding frames from each end of {frames.shape[dim]} frames.",
            hint="Pass the same pad that was used for padding.",
        )
    return frames.narrow(dim, pad, frames.shape[dim] - 2 * pad)
