"""The whole run held in memory, for the tests that compare it with the release: both sides of the
preprocessing kept at once (``prepare_inputs``) and the stages chained (``animate``). Built only from the
stage functions the pack's own run uses (prepare_source, prepare_driving, encode_motion, encode_portrait,
build_conditions, sample_latents, decode_latents), so a test through here exercises the same code as
``hp_core.run.run`` and the nodes; the pack streams its clips instead and keeps none of this."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from hp_core import pipeline as P
from hp_core.performance import Performance
from hp_core.preprocess import prepare_driving, prepare_source, skeleton_images, to_crop_coords
from hp_core.preprocess.intensity import CHUNK, intensity_ids
from hp_core.sampling.guidance import unpad


@dataclass
class PreparedInputs:
    """Both sides of the preprocessing at once; frame data as uint8 (F, H, W, 3)."""

    source_crop_512: np.ndarray
    crop_bbox: tuple[int, int, int, int]
    source_landmarks: np.ndarray
    appearance_224: torch.Tensor
    vae_reference: torch.Tensor
    identity: np.ndarray
    driven_crops: np.ndarray
    pose_crops: np.ndarray
    motion_crops: np.ndarray
    driving_landmarks: np.ndarray          # frame pixels: what the release feeds to intensity
    driving_landmarks_crop: np.ndarray     # the same in 512-crop pixels
    driving_boxes: np.ndarray
    driving_crop_box: tuple[int, int, int, int]
    frames_without_face: int = 0
    missing_frames: list[int] = field(default_factory=list)
    pose_images: np.ndarray | None = None  # skeletons; None = black, as the release
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.driven_crops.shape[0])

    def intensity(self, chunk: int = CHUNK) -> list[tuple[int, int]]:
        return intensity_ids(self.driving_landmarks, chunk)


def prepare_inputs(source_rgb: Any, driving_frames: Any, detector, face_index: int | None = None,
                   max_frames: int | None = None, arcface=None, smoothing: bool | int = False, *,
                   driving_face_index: int | None = None, edge_mode: str = "auto", pose_estimator=None,
                   cross_reenactment: bool = True, progress=None) -> PreparedInputs:
    """prepare_source and prepare_driving at once; ``pose_estimator`` draws aligned skeletons."""
    src = prepare_source(source_rgb, detector, face_index, arcface, edge_mode)
    drv = prepare_driving(driving_frames, detector, max_frames, smoothing, driving_face_index=driving_face_index,
                          edge_mode=edge_mode, progress=progress)
    prepared = PreparedInputs(
        source_crop_512=src.source_crop_512, crop_bbox=src.crop_bbox, source_landmarks=src.source_landmarks,
        appearance_224=src.appearance_224, vae_reference=src.vae_reference, identity=src.identity,
        driven_crops=drv.driven_crops, pose_crops=drv.pose_crops, motion_crops=drv.motion_crops,
        driving_landmarks=drv.landmarks, driving_landmarks_crop=to_crop_coords(drv.landmarks, drv.crop_box),
        driving_boxes=drv.boxes, driving_crop_box=drv.crop_box, frames_without_face=len(drv.missing_frames),
        missing_frames=list(drv.missing_frames), warnings=src.warnings + drv.warnings)
    if pose_estimator is not None:
        prepared.pose_images = skeleton_images(pose_estimator.estimate(src.source_crop_512),
                                               [pose_estimator.estimate(c) for c in drv.driven_crops],
                                               cross=cross_reenactment)
    return prepared


def conditions_from_prepared(models, prepared: PreparedInputs, settings: P.Settings, *,
                             intensity: tuple[int, int] | None = None):
    """(Conditions, reference latents, Performance) at the settings' output size; ``intensity`` =
    (head_id, expression_id) replaces the ids measured from the driving landmarks."""
    settings.validate()
    hw = (settings.height, settings.width)
    ids = prepared.intensity(settings.motion_chunk)
    if intensity is not None:
        ids = [tuple(int(v) for v in intensity)] * len(ids)
    motion = P.encode_motion(models, prepared.motion_crops, prepared.pose_crops, ids, chunk=settings.motion_chunk)
    portrait = P.encode_portrait(models, prepared, hw, settings.noise_aug, settings.seed)
    pose = P.pose_condition(prepared.pose_images, hw)
    conditions = P.build_conditions(portrait.tokens, motion.tokens, portrait.cond_latents, pose, settings)
    return conditions, portrait.ref_latents, motion


@dataclass
class Animation:
    """Output frames (F,H,W,3) float in [0,1]; ``latents`` the output frames', ``padded_latents`` the whole
    sampled sequence the frames were decoded from."""

    frames: torch.Tensor
    latents: torch.Tensor
    padded_latents: torch.Tensor
    crop_bbox: tuple[int, int, int, int]
    motion: Performance


def animate(models, prepared: PreparedInputs, settings: P.Settings, *, noise: torch.Tensor | None = None,
            progress: Callable | None = None, sampler_fn: Callable | None = None,
            intensity: tuple[int, int] | None = None) -> Animation:
    """Conditions, sampling and decoding in one call, as hp_core.run.Session.animate chains them."""
    cond, ref, motion = conditions_from_prepared(models, prepared, settings, intensity=intensity)
    padded = P.sample_latents(models, cond, ref, settings, noise=noise, sampler_fn=sampler_fn, keep_padding=True,
                              progress=P.stage_progress(progress, "denoise"))
    frames = P.decode_latents(models, padded, settings.decode_chunk, pad=settings.pad,
                              progress=P.stage_progress(progress, "decode"))
    return Animation(frames, unpad(padded, settings.pad), padded, tuple(int(v) for v in prepared.crop_bbox), motion)
