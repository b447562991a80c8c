"""Putting the generated 512 crop back into the full-resolution source image."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np

from ..errors import HPError
from .crop import crop_zero_padded

BORDER_RATIO = 0.1


def soft_mask(width: int, height: int, border_ratio: float = BORDER_RATIO) -> np.ndarray:
    """(height, width) float32 mask: 1 inside, ramping linearly 0 -> 1 over int(ratio x side) pixels at each edge.

    Same arithmetic as the release: linspace(0, 1, n) on the first n columns/rows, linspace(1, 0, n) on
    the last n, the horizontal and vertical ramps multiplied.
    """
    # Column ramp stored in float32, rows multiplied in float64 and stored in float32: bit-equal to the release.
    cols = np.ones(width, dtype=np.float32)
    rows = np.ones(height, dtype=np.float64)
    bw, bh = int(width * border_ratio), int(height * border_ratio)
    if bw > 0:
        cols[:bw] = np.linspace(0, 1, bw)
        cols[-bw:] = np.linspace(1, 0, bw)
    if bh > 0:
        rows[:bh] = np.linspace(0, 1, bh)
        rows[-bh:] = np.linspace(1, 0, bh)
    return (rows[:, None] * cols[None, :].astype(np.float64)).astype(np.float32)


def _as_uint8_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        # the release turns its [0, 1] video into uint8 by truncation before pasting
        frame = (np.clip(frame.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    return frame


def _box_mask(mask: np.ndarray | None, box: Sequence[int], image_hw: tuple[int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    tw, th = x2 - x1, y2 - y1
    if mask is None:
        return soft_mask(tw, th)
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim == 3:
        mask = mask[..., 0] if mask.shape[-1] in (1, 3, 4) else mask[0]
    if mask.shape == tuple(image_hw):  # a mask over the whole source image: take the box from it
        return crop_zero_padded(mask, (x1, y1, x2, y2))
    # otherwise it is a mask in crop space (e.g. 512x512): stretch it over the box
    return cv2.resize(mask, (tw, th), interpolation=cv2.INTER_LINEAR)


def paste_back(source: np.ndarray, generated: np.ndarray, crop_box: Sequence[int],
               mask: np.ndarray | None = None) -> np.ndarray:
    """Blend one generated crop (uint8, or float in [0, 1]) into a copy of source (uint8 H W 3) at crop_box.

    The crop is resized to the box with bilinear (cv2), blended as gen * m + src * (1 - m) with the
    release's soft edge mask, or with `mask` (values in [0, 1]; either the source's size, or any size
    taken as crop space and stretched over the box). Parts of the box outside the image are dropped.
    """
    source = np.asarray(source)
    if source.dtype != np.uint8 or source.ndim != 3:
        raise HPError("paste_back needs the source as uint8 H x W x 3.", hint="Convert it with to_rgb_uint8 first.")
    x1, y1, x2, y2 = (int(v) for v in crop_box)
    tw, th = x2 - x1, y2 - y1
    if tw <= 0 or th <= 0:
        raise HPError(f"The crop box {crop_box} is empty.", hint="Use the crop_bbox from the same preprocessing run.")
    h, w = source.shape[:2]
    gen = cv2.resize(_as_uint8_frame(generated), (tw, th), interpolation=cv2.INTER_LINEAR)
    m = _box_mask(mask, (x1, y1, x2, y2), (h, w))[..., None]
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    out = source.copy()
    if sx2 <= sx1 or sy2 <= sy1:
        return out
    inner = (slice(sy1 - y1, sy2 - y1), slice(sx1 - x1, sx2 - x1))
    fg = gen[inner].astype(np.float32) / 255.0
    bg = source[sy1:sy2, sx1:sx2].astype(np.float32) / 255.0
    mm = m[inner]
    out[sy1:sy2, sx1:sx2] = ((fg * mm + bg * (1 - mm)) * 255).astype(np.uint8)
    return out


def iter_paste_back(source: np.ndarray, frames: Iterable[np.ndarray], crop_box: Sequence[int],
                    mask: np.ndarray | Sequence[np.ndarray] | None = None) -> Iterator[np.ndarray]:
    """paste_back for each generated frame in turn (one full-size frame in memory at a time).

    mask: None (soft edge), one mask for all frames, or a list with one mask per frame (the last repeats).
    """
    per_frame = isinstance(mask, (list, tuple))
    for i, frame in enumerate(frames):
        m = (mask[min(i, len(mask) - 1)] if mask else None) if per_frame else mask
        yield paste_back(source, frame, crop_box, m)
