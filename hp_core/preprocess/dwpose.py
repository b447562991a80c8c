"""Body keypoints (OpenPose-18 layout) from the DWPose ONNX pair, or from OpenPose-style JSON.

DWPose facts (standard ONNX pipeline): YOLOX-L person detector on a 640x640 letterbox (top-left,
grey 114, raw 0..255 values), outputs decoded with cell grids and strides 8/16/32, person score =
objectness x class 0, NMS 0.45 over scores > 0.1, persons kept above 0.3; then per person the
RTMPose-style DWPose-L model: box centre/size x 1.25, widened to the 288:384 aspect, affine-warped
to 288x384, ImageNet mean/std on 0..255 values, SimCC outputs (x: 576 bins, y: 768 bins, 2 bins per
pixel) decoded by argmax, score = the smaller of the two maxima. The 133 COCO-WholeBody points are
mapped to OpenPose-18, the neck being the mean of the shoulders.
"""

from __future__ import annotations

import json
import os
from typing import Any, Sequence

import cv2
import numpy as np

from .faces import nms
from .onnx_session import open_session

DET_INPUT = (640, 640)  # (h, w)
DET_STRIDES = (8, 16, 32)
DET_PAD_VALUE = 114
DET_NMS = 0.45
DET_SCORE_MIN = 0.1
DET_PERSON_MIN = 0.3
POSE_INPUT_WH = (288, 384)
POSE_PADDING = 1.25
SIMCC_SPLIT = 2.0
POSE_MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
POSE_STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
VISIBLE = 0.3

# OpenPose-18 index <- COCO-WholeBody index (the neck, OpenPose 1, is built from COCO 5 and 6).
OPENPOSE_FROM_COCO = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16,
                      11: 11, 12: 13, 13: 15, 14: 2, 15: 1, 16: 4, 17: 3}
NECK = 1


# ---- YOLOX person detector ------------------------------------------------------------------

def yolox_input(image: np.ndarray, input_hw: tuple[int, int] = DET_INPUT) -> tuple[np.ndarray, float]:
    """RGB uint8 frame -> ((1, 3, h, w) float32 0..255 letterbox, top-left on grey 114; the resize ratio)."""
    h, w = image.shape[:2]
    ratio = min(input_hw[0] / h, input_hw[1] / w)
    nh, nw = int(h * ratio), int(w * ratio)
    canvas = np.full((input_hw[0], input_hw[1], 3), DET_PAD_VALUE, dtype=np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None].astype(np.float32)), ratio


def decode_yolox(raw: np.ndarray, ratio: float, input_hw: tuple[int, int] = DET_INPUT) -> np.ndarray:
    """Raw YOLOX output (1, N, 5 + classes) -> person boxes (M, 5) [x1, y1, x2, y2, score] in frame pixels."""
    pred = np.asarray(raw, dtype=np.float64).reshape(-1, raw.shape[-1])
    grids, strides = [], []
    for stride in DET_STRIDES:
        ny, nx = input_hw[0] // stride, input_hw[1] // stride
        ys, xs = np.mgrid[:ny, :nx]
        grids.append(np.stack([xs, ys], axis=-1).reshape(-1, 2))
        strides.append(np.full((ny * nx, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    centers = (pred[:, :2] + grid) * stride
    sizes = np.exp(pred[:, 2:4]) * stride
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1) / ratio
    scores = pred[:, 4] * pred[:, 5]
    hit = scores > DET_SCORE_MIN
    boxes, scores = boxes[hit], scores[hit]
    keep = nms(boxes, scores, DET_NMS, pixel_offset=1.0)
    boxes, scores = boxes[keep], scores[keep]
    good = scores > DET_PERSON_MIN
    return np.concatenate([boxes[good], scores[good, None]], axis=1)


# ---- DWPose keypoint model ------------------------------------------------------------------

def pose_box(box: Sequence[float], input_wh: tuple[int, int] = POSE_INPUT_WH,
             padding: float = POSE_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Person box (x1, y1, x2, y2) -> (centre (2,), size (2,)) of the region the pose model sees."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    center = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    w, h = (x2 - x1) * padding, (y2 - y1) * padding
    aspect = input_wh[0] / input_wh[1]
    size = np.array([w, w / aspect]) if w > h * aspect else np.array([h * aspect, h])
    return center, size


def pose_warp_matrix(center: np.ndarray, size: np.ndarray, input_wh: tuple[int, int] = POSE_INPUT_WH) -> np.ndarray:
    """2x3 affine taking frame pixels to pose-input pixels (uniform scale, region centre -> input centre)."""
    s = input_wh[0] / size[0]
    return np.array([[s, 0, input_wh[0] / 2 - s * center[0]], [0, s, input_wh[1] / 2 - s * center[1]]])


def pose_input(image: np.ndarray, center: np.ndarray, size: np.ndarray,
               input_wh: tuple[int, int] = POSE_INPUT_WH) -> np.ndarray:
    """RGB uint8 frame -> (1, 3, 384, 288) float32 normalised crop of the person region."""
    warped = cv2.warpAffine(image, pose_warp_matrix(center, size, input_wh), input_wh, flags=cv2.INTER_LINEAR)
    x = (warped.astype(np.float32) - POSE_MEAN) / POSE_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def decode_simcc(simcc_x: np.ndarray, simcc_y: np.ndarray, split: float = SIMCC_SPLIT) -> tuple[np.ndarray, np.ndarray]:
    """SimCC (K, Wx), (K, Wy) -> (keypoints (K, 2) in input pixels, scores (K,)); no response -> -1 / split."""
    sx = np.asarray(simcc_x, dtype=np.float64).reshape(-1, np.shape(simcc_x)[-1])
    sy = np.asarray(simcc_y, dtype=np.float64).reshape(-1, np.shape(simcc_y)[-1])
    locs = np.stack([sx.argmax(axis=1), sy.argmax(axis=1)], axis=1).astype(np.float64)
    scores = np.minimum(sx.max(axis=1), sy.max(axis=1))
    locs[scores <= 0] = -1
    return locs / split, scores


def input_to_frame(points: np.ndarray, center: np.ndarray, size: np.ndarray,
                   input_wh: tuple[int, int] = POSE_INPUT_WH) -> np.ndarray:
    """Pose-input pixels (K, 2) -> frame pixels."""
    return points / np.asarray(input_wh, dtype=np.float64) * size + center - size / 2


def wholebody_to_openpose(points: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """133 COCO-WholeBody keypoints (+ scores) -> OpenPose-18 body (18, 3) [x, y, score]."""
    body = np.zeros((18, 3), dtype=np.float64)
    for op, coco in OPENPOSE_FROM_COCO.items():
        body[op] = (points[coco, 0], points[coco, 1], scores[coco])
    body[NECK, :2] = (points[5] + points[6]) / 2
    body[NECK, 2] = float(scores[5] > VISIBLE and scores[6] > VISIBLE)
    return body


class DWPoseEstimator:
    """YOLOX person detector + DWPose whole-body model (two onnxruntime sessions) -> OpenPose-18 bodies."""

    def __init__(self, det_session, pose_session):
        self.det = det_session
        self.pose = pose_session
        self.det_input = det_session.get_inputs()[0].name
        self.pose_input = pose_session.get_inputs()[0].name

    def people(self, image: np.ndarray) -> list[np.ndarray]:
        """Every person in an RGB uint8 frame as (18, 3) [x, y, score] in frame pixels, largest box first."""
        blob, ratio = yolox_input(image)
        boxes = decode_yolox(self.det.run(None, {self.det_input: blob})[0], ratio)
        if not len(boxes):  # the standard pipeline then looks at the whole frame
            boxes = np.array([[0, 0, image.shape[1], image.shape[0], 0.0]])
        order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
        bodies = []
        for box in boxes[order]:
            center, size = pose_box(box)
            simcc_x, simcc_y = self.pose.run(None, {self.pose_input: pose_input(image, center, size)})[:2]
            pts, scores = decode_simcc(simcc_x[0], simcc_y[0])
            bodies.append(wholebody_to_openpose(input_to_frame(pts, center, size), scores))
        return bodies

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """The main (largest) person's OpenPose-18 body (18, 3) in frame pixels."""
        return self.people(image)[0]


def load_dwpose(det_path: str | os.PathLike, pose_path: str | os.PathLike,
                providers: Sequence[str] | None = None) -> DWPoseEstimator:
    """Open yolox_l.onnx and dw-ll_ucoco_384.onnx with onnxruntime (default providers: onnx_providers())."""
    return DWPoseEstimator(open_session(det_path, providers, what="DWPose person detector (yolox_l)"),
                           open_session(pose_path, providers, what="DWPose keypoint model (dw-ll_ucoco_384)"))


# ---- OpenPose JSON (ComfyUI POSE_KEYPOINT) -------------------------------------------------------

def poses_from_openpose_json(data: Any, person: int = 0) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """POSE_KEYPOINT (list of frames, a single frame dict, or its JSON text) -> per frame ((18, 3), (W, H)).

    Coordinates come back in pixels of the frame's canvas: normalised ones (all visible values <= 1)
    are scaled by canvas_width/height. A frame without that person gives an all-invisible body.
    """
    if isinstance(data, (str, bytes)):
        data = json.loads(data)
    if isinstance(data, dict):
        data = [data]
    frames = []
    for frame in data:
        w = int(frame.get("canvas_width", 0) or 0)
        h = int(frame.get("canvas_height", 0) or 0)
        body = np.zeros((18, 3), dtype=np.float64)
        people = frame.get("people") or []
        if person < len(people):
            flat = people[person].get("pose_keypoints_2d") or []
            pts = np.asarray(flat, dtype=np.float64).reshape(-1, 3)[:18]
            body[:len(pts)] = pts
            vis = body[:, 2] > 0
            if vis.any() and np.all(body[vis, :2] <= 1.0) and w > 0 and h > 0:
                body[:, 0] *= w
                body[:, 1] *= h
        frames.append((body, (w, h)))
    return frames


def frame_to_crop(body: np.ndarray, crop_box: Sequence[int], crop_size: int,
                  canvas_wh: tuple[int, int] | None = None, frame_wh: tuple[int, int] | None = None) -> np.ndarray:
    """Body keypoints in frame (or canvas) pixels -> pixels of the crop_size crop of crop_box."""
    out = np.array(body, dtype=np.float64)
    if canvas_wh and frame_wh and all(canvas_wh) and tuple(canvas_wh) != tuple(frame_wh):
        out[:, 0] *= frame_wh[0] / canvas_wh[0]
        out[:, 1] *= frame_wh[1] / canvas_wh[1]
    x1, y1, x2, y2 = crop_box
    out[:, 0] = (out[:, 0] - x1) * crop_size / (x2 - x1)
    out[:, 1] = (out[:, 1] - y1) * crop_size / (y2 - y1)
    return out
