"""The pack's socket types and the objects that travel on them.

HP_MODELS            hp_core.pipeline.PortraitModels (networks + device + placement policy)
HP_MOTION_FEATURES   hp_core.preprocess.DrivingInputs (the driving clip's crops, landmarks, crop box)
HP_PERFORMANCE       hp_core.performance.Performance (expression tokens, head rotation per driving frame)
HP_APPEARANCE        PortraitAppearance below (the portrait side, with its own head pose)
HP_POSE              PortraitPose below
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hp_core.motion_edit import PortraitMotion

MODELS = "HP_MODELS"
MOTION_FEATURES = "HP_MOTION_FEATURES"
PERFORMANCE = "HP_PERFORMANCE"
APPEARANCE = "HP_APPEARANCE"
POSE = "HP_POSE"


@dataclass(frozen=True)
class PortraitAppearance:
    """What the sampler and paste-back need from the source portrait (all on the CPU).

    tokens: (1, Na, C) projected appearance tokens, fp32.
    identity: (512,) ArcFace vector (zeros when ArcFace is off).
    ref_latents: (1, 4, h, w) VAE encoder mean x 0.18215 (start latents).
    cond_latents: (1, 4, h, w) VAE encoder mode, unscaled (concatenated to the UNet input).
    crop_box: (x1, y1, x2, y2) of the portrait crop in source pixels (paste-back).
    source_hw: (height, width) of the source image the crop box refers to.
    reference: (1, 3, R, R) the VAE reference image in [-1, 1], for the sampler's noise augmentation.
    source_crop: (512, 512, 3) uint8 the portrait crop (DWPose reads it).
    motion: the portrait's own head rotation and expression tokens (relative and still motion edits).
    """

    tokens: torch.Tensor
    identity: np.ndarray
    ref_latents: torch.Tensor
    cond_latents: torch.Tensor
    crop_box: tuple[int, int, int, int]
    source_hw: tuple[int, int]
    reference: torch.Tensor | None = None
    source_crop: np.ndarray | None = None
    motion: PortraitMotion | None = None

    @property
    def resolution(self) -> int:
        """Side in pixels of the generated square frames."""
        return int(self.ref_latents.shape[-1]) * 8


@dataclass(frozen=True)
class PortraitPose:
    """Aligned skeleton images for the pose guider: (F, 512, 512, 3) uint8 RGB, one per driving frame."""

    images: np.ndarray

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])


__all__ = ["APPEARANCE", "MODELS", "MOTION_FEATURES", "PERFORMANCE", "POSE", "PortraitAppearance", "PortraitPose"]
