"""From a source image and driving frames to every tensor the networks need (the release's preprocess).

The portrait side (prepare_source) and the driving side (track_driving, then DrivingTrack.crops a frame at a
time; prepare_driving keeps every frame's crops) are independent. They follow the official preprocessing and
differ only where it would crash or cannot be steered: frames without a face are filled from their
neighbours, faces can be picked by index (left to right), edge_mode ("auto" default, "clip" = release,
"pad") decides what happens to faces at the border (see portrait_crop_box), smoothing (True or a window
length) averages landmarks and boxes over time.
"""

from __future__ import annotations

from collections.abc import Sequence as SequenceABC
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from ..errors import HPError
from .crop import (CROP_SIZE, EDGE_MODES, POSE_SIZE, Box, appearance_input, crop_resize, motion_face_crop, portrait_crop_box,
                   resize_square, to_crop_coords, to_signed_tensor)
from .faces import Face, FaceDetector, no_face_error, select_face
from .identity import ArcFaceEmbedder, no_identity
from .image import to_rgb_uint8
from .intensity import CHUNK, intensity_ids
from .pose_align import align_poses, render_poses
from .track import fill_missing, smooth_track

SMOOTHING_WINDOW = 5


def _crop_face(detector: FaceDetector, crop: np.ndarray, expected_center: np.ndarray | None,
               fallback: Face, crop_box: Box, warnings: list[str]) -> np.ndarray:
    """Landmarks in the 512 crop from a second detection there (as the release), robustly."""
    faces = detector.detect(crop)
    if faces:
        if expected_center is None:
            return select_face(faces).landmarks
        return min(faces, key=lambda f: float(np.hypot(*(np.array(f.center) - expected_center)))).landmarks
    warnings.append("The face was not found again in the 512 crop of the source; using the landmarks of the "
                    "first detection instead.")
    return to_crop_coords(fallback.landmarks, crop_box)


def _frame_source(frames: Any) -> SequenceABC | np.ndarray:
    if isinstance(frames, np.ndarray) or hasattr(frames, "shape") and hasattr(frames, "__getitem__"):
        if len(frames.shape) == 3:  # one frame given as an array
            return [frames]
        return frames
    if isinstance(frames, SequenceABC):
        return frames
    return list(frames)  # an iterator: it has to be kept to be read twice


@dataclass
class SourceFace:
    """The source portrait, prepared: its 512 crop and what the appearance path needs (one image, small)."""

    source_crop_512: np.ndarray           # (512, 512, 3) uint8 RGB
    crop_bbox: Box                        # (x1, y1, x2, y2) of that crop in source pixels (paste-back)
    source_landmarks: np.ndarray          # (5, 2) landmarks in the 512 crop
    appearance_224: torch.Tensor          # (1, 3, 224, 224) ImageNet-normalised
    vae_reference: torch.Tensor           # (1, 3, 512, 512) in [-1, 1]
    identity: np.ndarray                  # (512,) float32 ArcFace vector, zeros when disabled
    motion_crop: np.ndarray | None = None  # (256, 256, 3) uint8 expression-encoder crop, a driving frame's rule
    warnings: list[str] = field(default_factory=list)

    @property
    def pose_crop(self) -> np.ndarray:
        """(256, 256, 3) uint8 head-pose input: the 512 crop resized, as for a driving frame."""
        return resize_square(self.source_crop_512, POSE_SIZE)


def prepare_source(source_rgb: Any, detector: FaceDetector, face_index: int | None = None,
                   arcface: ArcFaceEmbedder | Any | None = None, edge_mode: str = "auto") -> SourceFace:
    """Source image -> its portrait crop, crop box, landmarks, appearance/VAE inputs and identity (the release's
    source preprocessing; edge_mode as in portrait_crop_box)."""
    if edge_mode not in EDGE_MODES:
        raise HPError(f"edge_mode must be one of {', '.join(EDGE_MODES)}, not {edge_mode!r}.")
    if arcface is not None and not hasattr(arcface, "embed"):
        arcface = ArcFaceEmbedder(arcface)
    warnings: list[str] = []
    source = to_rgb_uint8(source_rgb)
    h, w = source.shape[:2]
    face = select_face(detector.detect(source), face_index, where="source image")
    crop_bbox = portrait_crop_box(face.box, h, w, edge_mode)
    crop512 = crop_resize(source, crop_bbox, CROP_SIZE)
    expected = None if face_index is None else to_crop_coords(np.array(face.center), crop_bbox)
    src_landmarks = _crop_face(detector, crop512, expected, face, crop_bbox, warnings)
    identity = arcface.embed(crop512, src_landmarks) if arcface is not None else no_identity()
    return SourceFace(crop512, crop_bbox, np.asarray(src_landmarks, np.float64), appearance_input(crop512),
                      to_signed_tensor(crop512)[None], np.asarray(identity, np.float32),
                      motion_face_crop(source, face.landmarks, face.box), warnings)


@dataclass
class DrivingTrack:
    """Compact per-frame data of the driving video (landmarks and boxes, a few floats a frame): enough to cut
    every frame's crops again while streaming the video, without keeping any frame."""

    landmarks: np.ndarray                 # (F, 5, 2) in frame pixels (filled where no face was found)
    boxes: np.ndarray                     # (F, 4) face boxes in frame pixels
    crop_box: Box                         # the square cut from every frame (from the first frame's face)
    missing: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    def crops(self, t: int, frame: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame ``t`` -> (driven 512 crop, head-pose 256 input, expression 256 input), uint8 RGB."""
        frame = to_rgb_uint8(frame)
        driven = crop_resize(frame, self.crop_box, CROP_SIZE)
        return driven, resize_square(driven, POSE_SIZE), motion_face_crop(frame, self.landmarks[t], self.boxes[0])


def track_driving(frames: Iterable[Any], detector: FaceDetector, *, driving_face_index: int | None = None,
                  smoothing: bool | int = False, edge_mode: str = "auto",
                  progress: Callable[[int], None] | None = None) -> DrivingTrack:
    """Detect the face in every driving frame (an iterable: read once, nothing kept) -> DrivingTrack."""
    found_marks: list[np.ndarray | None] = []
    found_boxes: list[np.ndarray | None] = []
    frame_hw = None
    for t, frame in enumerate(frames):
        frame = to_rgb_uint8(frame)
        frame_hw = frame_hw or frame.shape[:2]
        faces = detector.detect(frame)
        chosen = None
        if faces:
            try:
                chosen = select_face(faces, driving_face_index, where="driving frame")
            except HPError:  # that index not present in this frame: treat as no face
                chosen = None
        found_marks.append(None if chosen is None else chosen.landmarks)
        found_boxes.append(None if chosen is None else chosen.box)
        if progress:
            progress(t + 1)
    total = len(found_marks)
    if total <= 0:
        raise HPError("The driving video has no frames.", hint="Check the video loader's frame range and limit.")
    try:
        landmarks, missing = fill_missing(found_marks)
    except HPError:
        raise no_face_error("driving video (not in any frame)") from None
    boxes, _ = fill_missing(found_boxes)
    warnings = []
    if missing:
        warnings.append(f"{len(missing)} of {total} driving frames had no face; their landmarks were "
                        "interpolated from the nearest frames with a face.")
    if smoothing:
        window = SMOOTHING_WINDOW if smoothing is True else int(smoothing)
        landmarks, boxes = smooth_track(landmarks, window), smooth_track(boxes, window)
    # The first frame's face decides the crop for the whole video, as in the release.
    drive_box = portrait_crop_box(boxes[0], frame_hw[0], frame_hw[1], edge_mode)
    return DrivingTrack(landmarks, boxes, drive_box, list(missing), warnings)


@dataclass
class DrivingInputs:
    """The driving clip, preprocessed alone (no portrait involved): every frame's crops and the face track.
    What the motion encoders and DWPose read; a performance is made from it."""

    driven_crops: np.ndarray              # (F, 512, 512, 3) uint8 driving frames cut at crop_box
    pose_crops: np.ndarray                # (F, 256, 256, 3) uint8 head-pose encoder input
    motion_crops: np.ndarray              # (F, 256, 256, 3) uint8 expression encoder input
    landmarks: np.ndarray                 # (F, 5, 2) in frame pixels (what the release feeds to intensity)
    boxes: np.ndarray                     # (F, 4) face boxes in frame pixels (filled where missing)
    crop_box: Box                         # (x1, y1, x2, y2) the square cut from every frame
    missing_frames: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fps: float = 25.0

    @property
    def num_frames(self) -> int:
        return int(self.driven_crops.shape[0])

    def intensity(self, chunk: int = CHUNK) -> list[tuple[int, int]]:
        """(head_id, expression_id) per chunk, from the frame-pixel landmarks as the release computes them."""
        return intensity_ids(self.landmarks, chunk)


def prepare_driving(driving_frames: Any, detector: FaceDetector, max_frames: int | None = None,
                    smoothing: bool | int = False, *, driving_face_index: int | None = None,
                    edge_mode: str = "auto", fps: float = 25.0,
                    progress: Callable[[int, int], None] | None = None) -> DrivingInputs:
    """Driving frames (list, (F, H, W, 3) array/tensor, or iterable) -> DrivingInputs, keeping every frame's
    crops (edge_mode as in prepare_source; smoothing as in track_driving)."""
    frames = _frame_source(driving_frames)
    total = len(frames) if max_frames is None else min(len(frames), int(max_frames))
    if total <= 0:
        raise HPError("The driving video has no frames.", hint="Check the video loader's frame range and limit.")
    track = track_driving((frames[t] for t in range(total)), detector, driving_face_index=driving_face_index,
                          smoothing=smoothing, edge_mode=edge_mode,
                          progress=(lambda i: progress(i, 2 * total)) if progress else None)
    driven = np.empty((total, CROP_SIZE, CROP_SIZE, 3), np.uint8)
    pose = np.empty((total, POSE_SIZE, POSE_SIZE, 3), np.uint8)
    motion = np.empty((total, POSE_SIZE, POSE_SIZE, 3), np.uint8)
    for t in range(total):
        driven[t], pose[t], motion[t] = track.crops(t, frames[t])
        if progress:
            progress(total + t + 1, 2 * total)
    return DrivingInputs(driven, pose, motion, track.landmarks, track.boxes, track.crop_box, list(track.missing),
                         list(track.warnings), float(fps))


def skeleton_images(source_body: np.ndarray, driving_bodies: Sequence[np.ndarray] | np.ndarray,
                    size: int = CROP_SIZE, cross: bool = True) -> np.ndarray:
    """Source body (18, 3) + driving bodies (F, 18, 3) in crop pixels -> aligned skeletons uint8 (F, size, size, 3)."""
    return render_poses(align_poses(source_body, np.asarray(driving_bodies), cross=cross), size, size)
