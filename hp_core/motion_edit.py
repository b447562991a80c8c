"""Edits of a performance: head-pose mode, per-angle scale and offset, expression strength, smoothing over
time and fitting to a length. Every edit is arithmetic on the performance's tensors; no encoder runs again.

The defaults reproduce the performance bit for bit (``MotionEdit().is_identity``). Arithmetic runs in
float64 and is cast back to float32 once, so ``d0 + 1.0 * (d - d0)`` gives ``d`` exactly.

Head pose (degrees, per angle a; d = the driving rotation, d0 its first frame, p the portrait's own):
- absolute (the release):  d0 + scale_a * (d_t - d0) + offset_a
- relative:                 p  + scale_a * (d_t - d0) + offset_a   (the head starts where the portrait faces)
- still:                    p  + offset_a                           (the head stays; the face speaks)
Results are wrapped into -180..180.

Expression (learned features, so experimental): e0 + s * (e_t - e0), s = strength; 0 freezes the
expression on the first frame's, 1 is the release. The relative mode starts from the portrait's own
expression tokens instead of e0.

Smoothing: a zero-phase Gaussian of the given strength (sigma in frames). Near the ends it becomes a local
linear fit with the same weights, so constant and linear signals pass unchanged everywhere and nothing
lags. White noise keeps about 1 / (2 sqrt(pi) sigma) of its variance (``noise_variance_factor``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import HPError
from .performance import Performance

POSE_MODES = ("absolute", "relative", "still")
EXPRESSION_MODES = ("driving", "relative")
LOOP_MODES = ("none", "repeat", "pingpong")
MAX_SMOOTHING = 30.0          # sigma in frames
SEAM_FRAMES = 8               # frames a repeat loop crossfades over (at most a quarter of the segment)


@dataclass(frozen=True)
class PortraitMotion:
    """The portrait's own head rotation (3,) in degrees and expression tokens (N, D), both float32, from the
    same networks and crop rules as a driving frame (the portrait read as a one-frame clip)."""

    rotation: torch.Tensor
    expression: torch.Tensor


@dataclass(frozen=True)
class MotionEdit:
    """What an artist changes about a performance; the defaults change nothing."""

    pose_mode: str = "absolute"
    pose_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pose_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    expression_strength: float = 1.0
    expression_mode: str = "driving"
    pose_smoothing: float = 0.0
    expression_smoothing: float = 0.0
    start: int = 0
    length: int = 0              # 0 = every frame from start
    loop: str = "none"

    @property
    def is_identity(self) -> bool:
        return self == MotionEdit()

    @property
    def needs_portrait(self) -> bool:
        return self.pose_mode in ("relative", "still") or self.expression_mode == "relative"

    def problems(self) -> list[tuple[tuple[str, ...], HPError]]:
        """Every impossible value, each with the fields involved (the entry points name their own flags)."""
        out = []
        numbers = {"expression_strength": self.expression_strength, "pose_smoothing": self.pose_smoothing,
                   "expression_smoothing": self.expression_smoothing, "start": self.start, "length": self.length}
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (
                    name in ("start", "length") and value != int(value)):
                out.append(((name,), HPError(f"{name} must be a {'whole ' if name in ('start', 'length') else ''}"
                                             f"finite number, got {value!r}.")))
        if out:
            return out
        for name, choices in (("pose_mode", POSE_MODES), ("expression_mode", EXPRESSION_MODES), ("loop", LOOP_MODES)):
            if getattr(self, name) not in choices:
                out.append(((name,), HPError(f"Unknown {name} {getattr(self, name)!r}.",
                                             hint=f"Choose one of {', '.join(choices)}.")))
        for name in ("pose_scale", "pose_offset"):
            vals = getattr(self, name)
            if len(vals) != 3 or not all(math.isfinite(float(v)) for v in vals):
                out.append(((name,), HPError(f"{name} needs three finite numbers (angle 1, 2, 3), got {vals}.")))
        for name in ("pose_smoothing", "expression_smoothing"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= MAX_SMOOTHING:  # also refuses nan
                out.append(((name,), HPError(f"{name} must lie in 0..{MAX_SMOOTHING:g} frames, got {v}.",
                                             hint="0 = off (the release); 2-4 calms jitter.")))
        if int(self.start) < 0 or int(self.length) < 0:
            out.append((("start", "length"), HPError(f"start and length must not be negative, got "
                                                     f"{self.start} and {self.length}.")))
        return out

    def validate(self, frames: int | None = None) -> None:
        """Raise the first problem; with ``frames``, also the ones that depend on the performance's length."""
        found = self.problems()
        if found:
            raise found[0][1]
        if frames is not None:
            if self.start >= frames:
                raise HPError(f"start frame {self.start} is past the performance's {frames} frames.",
                              hint=f"Use a start below {frames}.")
            if self.loop == "none" and self.length > frames - self.start:
                raise HPError(f"length {self.length} needs more than the {frames - self.start} frames from start "
                              f"frame {self.start}.", hint="Set loop to repeat or pingpong, or a shorter length.")


# ------------------------------------------------------------------------------------------- smoothing

def _gaussian(sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, unnormalised Gaussian weights) of the smoothing kernel, 3 sigma on each side."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    return offsets, np.exp(-0.5 * (offsets / sigma) ** 2)


def smoothing_weights(frames: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(offsets (K,), coefficients (F, K)): smoothed[t] = sum_k coef[t, k] * x[t + offsets[k]] (taps that fall
    outside the clip have coefficient 0). A Gaussian inside; a local linear fit with its weights at the ends."""
    offsets, gauss = _gaussian(sigma)
    t = np.arange(frames)[:, None]
    inside = ((t + offsets) >= 0) & ((t + offsets) < frames)
    w = gauss[None, :] * inside
    s0, s1, s2 = w.sum(1, keepdims=True), (w * offsets).sum(1, keepdims=True), (w * offsets ** 2).sum(1, keepdims=True)
    det = s0 * s2 - s1 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        coef = np.where(det > 1e-12, w * (s2 - s1 * offsets) / det, w / s0)
    return offsets, coef


def smooth(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Zero-phase smoothing of ``x`` (F, ...) along frames; sigma in frames, 0 returns ``x`` itself."""
    if sigma <= 0 or x.shape[0] < 2:
        return x
    frames = x.shape[0]
    offsets, coef = smoothing_weights(frames, float(sigma))
    x64 = x.double()
    out = torch.zeros_like(x64)
    coef_t = torch.from_numpy(coef)
    for k, d in enumerate(offsets.tolist()):
        lo, hi = max(0, -d), min(frames, frames - d)
        if lo >= hi:
            continue
        c = coef_t[lo:hi, k].reshape(-1, *([1] * (x.dim() - 1)))
        out[lo:hi] += c * x64[lo + d:hi + d]
    return out.to(x.dtype)


def noise_variance_factor(sigma: float) -> float:
    """The fraction of white noise's variance that smoothing of strength sigma keeps, away from the ends."""
    _, w = _gaussian(float(sigma))
    w = w / w.sum()
    return float((w ** 2).sum())


# ------------------------------------------------------------------------------------------- length

def timeline(frames: int, edit: MotionEdit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each output frame: (index a, index b, weight w); the frame is (1 - w) * x[a] + w * x[b].

    Frames ``start`` .. are used; ``length`` (0 = all) is reached by cutting or by looping the segment:
    repeat crossfades the segment's last frames into its first ones (no jump at the seam), pingpong plays
    it back and forth (0 1 2 1 0 1 ...)."""
    start = int(edit.start)
    n = frames - start
    length = int(edit.length) or n
    if length <= n or n == 1:
        idx = start + np.minimum(np.arange(length), n - 1)
        return idx, idx, np.zeros(length)
    if edit.loop == "pingpong":
        period = 2 * n - 2
        pos = np.arange(length) % period
        idx = start + np.where(pos < n, pos, period - pos)
        return idx, idx, np.zeros(length)
    seam = min(SEAM_FRAMES, n // 4)
    # First pass plays 0 .. n-seam-1; each seam mixes frames n-seam+j (fading out) with j (fading in); every
    # later pass plays seam .. n-seam-1 before its own seam.
    a, b, w = list(range(n - seam)), list(range(n - seam)), [0.0] * (n - seam)
    while len(a) < length:
        a += [n - seam + j for j in range(seam)]
        b += list(range(seam))
        w += [(j + 1) / (seam + 1) for j in range(seam)]
        a += list(range(seam, n - seam))
        b += list(range(seam, n - seam))
        w += [0.0] * (n - 2 * seam)
    return start + np.array(a[:length]), start + np.array(b[:length]), np.array(w[:length])


def _apply_timeline(x: torch.Tensor, a: np.ndarray, b: np.ndarray, w: np.ndarray) -> torch.Tensor:
    out = x[torch.from_numpy(a)]
    if w.any():
        wt = torch.from_numpy(w).reshape(-1, *([1] * (x.dim() - 1)))
        out = ((1 - wt) * out.double() + wt * x[torch.from_numpy(b)].double()).to(x.dtype)
    return out


# ------------------------------------------------------------------------------------------- edits

def wrap_degrees(x: torch.Tensor) -> torch.Tensor:
    """Angles outside -180..180 wrapped into it; angles inside are returned unchanged (180 stays 180)."""
    return torch.where(x.abs() > 180, torch.remainder(x + 180, 360) - 180, x)


def edit_rotation(d: torch.Tensor, edit: MotionEdit, portrait: torch.Tensor | None) -> torch.Tensor:
    """The head-pose arithmetic of the module docstring on rotations (F, 3), in float64."""
    d = d.double()
    scale = torch.tensor(edit.pose_scale, dtype=torch.float64)
    offset = torch.tensor(edit.pose_offset, dtype=torch.float64)
    d0 = d[:1]
    base = d0 if edit.pose_mode == "absolute" else portrait.double().reshape(1, 3)
    if edit.pose_mode == "still":
        out = base + offset + 0 * d
    else:
        out = base + scale * (d - d0) + offset
    return wrap_degrees(out)


def _unwrap(rotation: torch.Tensor) -> torch.Tensor:
    """Rotations made continuous over time (no 360-degree jumps)."""
    return torch.from_numpy(np.unwrap(rotation.double().numpy(), period=360.0, axis=0))


def edit_performance(perf: Performance, edit: MotionEdit, portrait: PortraitMotion | None = None) -> Performance:
    """``perf`` with ``edit`` applied (see the module docstring); the defaults return ``perf`` itself."""
    edit.validate(perf.frames)
    if edit.is_identity:
        return perf
    if edit.needs_portrait and portrait is None:
        raise HPError(f"pose mode {edit.pose_mode} / expression mode {edit.expression_mode} needs the portrait's own "
                      "pose and expression.", hint="Connect the portrait (appearance) to Motion Edit, or pass --image.")
    a, b, w = timeline(perf.frames, edit)
    pose_kept = (edit.pose_mode, tuple(edit.pose_scale), tuple(edit.pose_offset), edit.pose_smoothing) == (
        DEFAULT.pose_mode, DEFAULT.pose_scale, DEFAULT.pose_offset, DEFAULT.pose_smoothing)
    if pose_kept and not w.any():  # frames picked, not changed: the rotations stay bit for bit
        rotation = perf.rotation[torch.from_numpy(a)].double()
    else:  # continuous over time (no 360-degree jumps) so they can be blended, smoothed and scaled
        rotation = smooth(_apply_timeline(_unwrap(perf.rotation), a, b, w), edit.pose_smoothing)
        rotation = edit_rotation(rotation, edit, None if portrait is None else portrait.rotation)
    expression = smooth(_apply_timeline(perf.expression.double(), a, b, w), edit.expression_smoothing)
    translation = smooth(_apply_timeline(perf.translation.double(), a, b, w), edit.pose_smoothing)
    s = float(edit.expression_strength)
    e0 = expression[:1]
    base = e0 if edit.expression_mode == "driving" else portrait.expression.double().unsqueeze(0)
    if s != 1.0 or edit.expression_mode != "driving":
        expression = base + s * (expression - e0)
    chunk_src = a[::perf.chunk] // perf.chunk
    ids = perf.intensity_ids[torch.from_numpy(chunk_src)]
    return replace(perf, expression=expression.float().contiguous(), rotation=rotation.float().contiguous(),
                   translation=translation.float().contiguous(), intensity_ids=ids.contiguous())


DEFAULT = MotionEdit()


__all__ = ["EXPRESSION_MODES", "LOOP_MODES", "MAX_SMOOTHING", "MotionEdit", "POSE_MODES", "PortraitMotion",
           "edit_performance", "edit_rotation", "noise_variance_factor", "smooth",
           "smoothing_weights", "timeline", "wrap_degrees"]
