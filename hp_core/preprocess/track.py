"""Per-frame face tracks over a driving video: filling frames without a face, optional smoothing."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .faces import no_face_error


def fill_missing(values: Sequence[np.ndarray | None], *, where: str = "driving video") -> tuple[np.ndarray, list[int]]:
    """Stack per-frame arrays; frames given as None are filled linearly from the nearest frames that have one.

    Frames before the first (after the last) detection copy it. Returns (array (F, ...), indices filled).
    Raises HPError when no frame has a value at all.
    """
    known = [i for i, v in enumerate(values) if v is not None]
    if not known:
        raise no_face_error(f"{where} (no frame had one)")
    shape = np.asarray(values[known[0]]).shape
    out = np.zeros((len(values),) + shape, dtype=np.float64)
    for i in known:
        out[i] = values[i]
    missing = [i for i, v in enumerate(values) if v is None]
    known_arr = np.asarray(known)
    for i in missing:
        after = np.searchsorted(known_arr, i)
        if after == 0:
            out[i] = out[known_arr[0]]
        elif after == len(known_arr):
            out[i] = out[known_arr[-1]]
        else:
            lo, hi = known_arr[after - 1], known_arr[after]
            t = (i - lo) / (hi - lo)
            out[i] = (1 - t) * out[lo] + t * out[hi]
    return out, missing


def smooth_track(track: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving average over frames (axis 0); near the ends the window shrinks instead of padding."""
    track = np.asarray(track, dtype=np.float64)
    if window <= 1 or len(track) < 2:
        return track.copy()
    half = window // 2
    csum = np.concatenate([np.zeros((1,) + track.shape[1:]), np.cumsum(track, axis=0)])
    idx = np.arange(len(track))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(track))
    counts = (hi - lo).reshape((-1,) + (1,) * (track.ndim - 1))
    return (csum[hi] - csum[lo]) / counts
