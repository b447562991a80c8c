"""The driving side: the face-crop motion encoder (driving frames -> crops, landmarks, intensity) and the
intensity-aware motion extractor (crops -> a performance). Neither reads the portrait."""

from __future__ import annotations

import logging

import numpy as np
import torch

from hp_core.errors import HPError
from hp_core.performance import concat as concat_performances
from hp_core.pipeline import encode_motion
from hp_core.preprocess import prepare_driving
from hp_core.preprocess.crop import EDGE_MODES
from hp_core.preprocess.intensity import CHUNK, MAX_ID

from . import bridge, core
from .sockets import MODELS, MOTION_FEATURES, PERFORMANCE

CATEGORY = "HunyuanPortrait"
LOG = logging.getLogger("HunyuanPortrait")
# Chunks of 25 frames encoded per pass: bounded memory for long videos, few passes for short ones.
CHUNKS_PER_PASS = 4
DEFAULT_FPS = 25.0  # a clip's frame rate when nothing says otherwise


def uint8_to_image(frames: np.ndarray) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> ComfyUI IMAGE (F, H, W, 3) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255)


def _optional_index(value: int) -> int | None:
    return None if int(value) < 0 else int(value)


class HunyuanPortraitFaceCropMotionEncoder:
    """Node: face detection on every driving frame, the release's crops and landmarks (no portrait needed)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "driving_frames": ("IMAGE", {"tooltip": "The driving video as an image batch: Get Video Components' "
                                                    "images, or a VideoHelperSuite loader's IMAGE output."}),
            "detector": (list(core.DETECTORS), {"default": "yolo", "tooltip":
                         "Face detector: yolo = the release's YOLOv5m-face (yoloface_v5m.pt); scrfd = insightface "
                         "SCRFD (insightface/models/buffalo_l/det_10g.onnx), better for small or turned faces."}),
            "frame_limit": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "tooltip":
                            "Use at most this many driving frames from the start (0 = all of them)."}),
            "driving_face_index": ("INT", {"default": -1, "min": -1, "max": 63, "tooltip":
                                   "Which face drives the motion when the video shows several: -1 = the largest "
                                   "in each frame, 0, 1, ... = counted from the left."}),
            "smoothing": ("INT", {"default": 0, "min": 0, "max": 31, "tooltip":
                          "Average the face track over this many frames to calm detector jitter (0 or 1 = off, "
                          "the release)."}),
            "edge_mode": (list(EDGE_MODES), {"default": "auto", "tooltip":
                          "Faces near the border: clip = the release's crop (may cut the face), pad = keep the "
                          "face centred with black padding, auto = the release's crop unless it would cut the "
                          "face."}),
        }, "optional": {
            "fps": ("FLOAT", {"default": DEFAULT_FPS, "min": 1.0, "max": 240.0, "step": 0.01, "tooltip":
                    "The driving clip's frame rate, recorded in the performance (connect Get Video Components' "
                    "fps)."}),
        }}

    RETURN_TYPES = (MOTION_FEATURES, "IMAGE", "IMAGE")
    RETURN_NAMES = ("motion_features", "driving_crops", "face_crops")
    OUTPUT_TOOLTIPS = (
        "The driving clip preprocessed: driving crops, head-pose inputs, expression face crops, landmarks and "
        "intensity. Independent of the portrait.",
        "Preview: each driving frame cut at the first frame's face box (256x256).",
        "Preview: the expression encoder's face crop of each driving frame (256x256).",
    )
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Finds the face in every driving frame and cuts the crops the HunyuanPortrait motion "
                   "encoders read, exactly as the release does. Frames without a face are filled from their "
                   "neighbours instead of stopping the run. Independent of the portrait: another portrait "
                   "reuses this node's cached result.")

    def encode(self, driving_frames, detector, frame_limit, driving_face_index, smoothing, edge_mode, fps=None):
        if driving_frames is None or driving_frames.shape[0] == 0:
            raise HPError("The driving video has no frames.", hint="Check the video loader.")
        det = core.face_detector(detector)
        limit = int(frame_limit) if frame_limit and frame_limit > 0 else None
        total = min(driving_frames.shape[0], limit or driving_frames.shape[0])
        progress = bridge.Progress(2 * total)

        def step(done, _total):
            bridge.check_interrupt()
            progress(done, _total)

        driving = prepare_driving(driving_frames, det, max_frames=limit,
                                  smoothing=int(smoothing) if smoothing > 1 else False,
                                  driving_face_index=_optional_index(driving_face_index), edge_mode=edge_mode,
                                  fps=float(fps or DEFAULT_FPS), progress=step)
        for text in driving.warnings:
            LOG.warning("HunyuanPortrait: %s", text)
        return (driving, uint8_to_image(driving.pose_crops), uint8_to_image(driving.motion_crops))


class HunyuanPortraitMotionExtractor:
    """Node: expression + head-pose encoders and the intensity-aware refiner -> a performance."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "models": (MODELS, {"tooltip": "From HunyuanPortrait Load Models."}),
            "motion_features": (MOTION_FEATURES, {"tooltip": "From the Face-Crop Motion Encoder."}),
            "head_intensity": ("INT", {"default": -1, "min": -1, "max": MAX_ID, "tooltip":
                               "Head-motion intensity id for the refiner: -1 = measured from the driving "
                               "landmarks per 25 frames (the release); 0-127 = fixed, higher = stronger head "
                               "motion."}),
            "expression_intensity": ("INT", {"default": -1, "min": -1, "max": MAX_ID, "tooltip":
                                     "Expression intensity id: -1 = measured per 25 frames (the release); 0-127 "
                                     "= fixed, higher = stronger expressions."}),
        }}

    RETURN_TYPES = (PERFORMANCE,)
    RETURN_NAMES = ("performance",)
    OUTPUT_TOOLTIPS = ("The performance: refined expression tokens and head rotation per driving frame. Edit it "
                       "with Motion Edit, save it with Save Performance, or feed it to the Sampler.",)
    FUNCTION = "extract"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encodes each driving frame's expression and head pose and refines the expression with the "
                   "intensity-aware motion extractor (memory bank + intensity embeddings): the performance the "
                   "UNet's motion adapters follow. Independent of the portrait.")

    def extract(self, models, motion_features, head_intensity, expression_intensity):
        driving = motion_features
        frames = driving.num_frames
        ids = [(int(h), int(e)) for h, e in driving.intensity(CHUNK)]
        ids = [(h if head_intensity < 0 else int(head_intensity), e if expression_intensity < 0
                else int(expression_intensity)) for h, e in ids]
        step = CHUNK * CHUNKS_PER_PASS
        progress = bridge.Progress(frames)
        parts = []
        with bridge.readable_errors("motion encoding", "the precision or keep_on_gpu"):
            for start in range(0, frames, step):
                bridge.check_interrupt()
                part = slice(start, start + step)
                parts.append(encode_motion(models, driving.motion_crops[part], driving.pose_crops[part],
                                           ids[start // CHUNK:], chunk=CHUNK, fps=driving.fps))
                progress(min(start + step, frames))
        return (concat_performances(parts),)


NODE_CLASS_MAPPINGS = {
    "HunyuanPortraitFaceCropMotionEncoder": HunyuanPortraitFaceCropMotionEncoder,
    "HunyuanPortraitMotionExtractor": HunyuanPortraitMotionExtractor,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "HunyuanPortraitFaceCropMotionEncoder": "HunyuanPortrait Face-Crop Motion Encoder",
    "HunyuanPortraitMotionExtractor": "HunyuanPortrait Intensity-Aware Motion Extractor",
}
