"""Context windows over a (padded) frame sequence, built exactly as the release builds them every step.

At step i (0-based) with L frames, window W, overlap O and per-step shift S:
  stride = W - O; starts = 0, stride, 2*stride, ... (every multiple of stride below L);
  offset_i = (i * S) mod W  (the release adds S after each step and reduces modulo W);
  window k covers frames (start_k - offset_i + j) mod L for j = 0 .. W-1.
So there are ceil(L / stride) windows, each exactly W long; indices wrap around the end of the sequence.
When L < W a window wraps onto itself and lists some frames twice; the release keeps those duplicates
(each copy counts once in the per-frame average), and so do we.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import HPError


def validate_windows(length: int, window: int, overlap: int, shift: int = 0) -> None:
    """Raise HPError for settings no window schedule can satisfy (call before any model runs)."""
    for label, value in (("length", length), ("window", window), ("overlap", overlap), ("shift", shift)):
        if isinstance(value, bool) or int(value) != value:
            raise HPError(f"Context {label} must be a whole number, got {value!r}.", hint="Use integers.")
        if value < 0:
            raise HPError(f"Context {label} must not be negative, got {value}.", hint=f"Set {label} to 0 or more.")
    if length < 1:
        raise HPError("There are no frames to sample.", hint="Give at least one driving frame.")
    if window < 1:
        raise HPError(f"Context window must be at least 1 frame, got {window}.", hint="The release uses 25.")
    if overlap >= window:
        raise HPError(
            f"Context overlap ({overlap}) must be smaller than the window ({window}).",
            hint="The release uses window 25 with overlap 3.",
        )


def window_shift(step: int, window: int, shift: int) -> int:
    """How far (in frames) the window starts have moved back at `step`: (step * shift) mod window."""
    return (step * shift) % window


def window_indices(length: int, window: int, overlap: int, step: int, shift: int) -> list[list[int]]:
    """Frame indices of every context window at sampling step `step` (0-based), as the release builds them."""
    validate_windows(length, window, overlap, shift)
    if isinstance(step, bool) or int(step) != step or step < 0:
        raise HPError(f"Step index must be a whole number >= 0, got {step!r}.", hint="Steps count from 0.")
    length, window, overlap, step, shift = int(length), int(window), int(overlap), int(step), int(shift)
    back = window_shift(step, window, shift)
    return [
        [(start - back + j) % length for j in range(window)]
        for start in range(0, length, window - overlap)
    ]


def merge_windows(
    outputs: Sequence[torch.Tensor], windows: Sequence[Sequence[int]], length: int, dim: int = 1
) -> torch.Tensor:
    """Per-frame mean of window outputs placed back at their frame indices (frame axis `dim`, e.g. B F C H W)."""
    if len(outputs) != len(windows) or not outputs:
        raise HPError(
            f"Got {len(outputs)} window outputs for {len(windows)} windows.",
            hint="Pass one output per window, in window order.",
        )
    first = outputs[0]
    shape = list(first.shape)
    shape[dim] = length
    total = first.new_zeros(shape)
    count = [0] * length
    # Frame by frame, window by window, like the release: a frame listed twice in one window adds twice.
    for out, idx in zip(outputs, windows):
        if out.shape[dim] != len(idx):
            raise HPError(
                f"A window output has {out.shape[dim]} frames but its window lists {len(idx)}.",
                hint="Keep the window order and the frame axis consistent.",
            )
        for j, frame in enumerate(idx):
            total.select(dim, frame).add_(out.select(dim, j))
            count[frame] += 1
    if min(count) == 0:
        raise HPError("Some frames were covered by no window.", hint="Use window_indices to build the windows.")
    counts = torch.tensor(count, dtype=total.dtype, device=total.device)
    view = [1] * total.ndim
    view[dim] = length
    return total / counts.reshape(view)
