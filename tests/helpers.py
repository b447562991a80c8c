"""Small conveniences the tests need and the pack does not: reading a whole clip into memory, writing frames
to an mp4 in one call, loading a checkpoint in one call, random sampling conditions. Each is built on the pack's own functions
(hp_core.video.iter_frames / probe_video / VideoWriter, hp_core.weights.read_checkpoint / confirm_checkpoint),
so the tests still exercise those."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hp_core import video as V
from hp_core import weights as W
from hp_core.errors import HPError


@dataclass
class Clip:
    """A decoded video: frames (F, H, W, 3) uint8 RGB and frames per second."""

    frames: np.ndarray
    fps: float


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> Clip:
    """All frames of a video (at most ``max_frames``) and its fps."""
    frames = np.stack(list(V.iter_frames(path, max_frames=max_frames)))
    return Clip(frames, V.probe_video(path).fps)


def write_video(path: str | os.PathLike, frames, fps: float, *, audio: str | os.PathLike | None = None,
                crf: int = 18, chunk: int = 16) -> Path:
    """Frames (F, H, W, 3) or one (H, W, 3); uint8, or float in [0, 1]; numpy or torch) as an H.264 mp4,
    ``audio``'s first audio stream muxed in and cut at the video's length."""
    if hasattr(frames, "ndim") and frames.ndim == 3:
        frames = frames[None]
    if len(frames) == 0:
        raise HPError("There are no frames to write.")
    with V.VideoWriter(path, fps, audio=audio, frames=len(frames), crf=crf) as writer:
        for start in range(0, len(frames), chunk):
            writer.write(frames[start:start + chunk])
    return Path(path)


def load_checkpoint(entry_id: str, search_dirs, *, cache_dir: str | os.PathLike | None = None,
                    preset: str | None = None) -> dict:
    """Verified state dict of a manifest checkpoint, then pinned and cached: read_checkpoint followed by
    confirm_checkpoint, as a loader does once its strict load succeeded."""
    ckpt = W.read_checkpoint(entry_id, search_dirs, cache_dir=cache_dir, preset=preset)
    W.confirm_checkpoint(ckpt)
    return ckpt.state


def random_conditions(models, frames: int, settings):
    """(Conditions, reference latents) of random seeded inputs for ``frames`` driving frames, through the
    pipeline's own encoders: what the sampling tests feed ``sample_latents``."""
    import torch

    from hp_core import pipeline as P

    g = torch.Generator().manual_seed(3)
    d = models.dims
    app = P.encode_appearance(models, torch.randn(1, 3, d.appearance_size, d.appearance_size, generator=g),
                              torch.randn(512, generator=g))
    motion = P.encode_motion(models, torch.rand(frames, 3, 64, 64, generator=g),
                             torch.rand(frames, 3, 64, 64, generator=g), [(7, 11)])
    ref, cond = P.encode_reference(models, torch.rand(1, 3, settings.height, settings.width, generator=g) * 2 - 1)
    return P.build_conditions(app, motion.tokens, cond, None, settings), ref
