"""Alternative face detector: insightface SCRFD (det_10g.onnx) through onnxruntime.

Facts of the standard SCRFD pipeline: the frame is resized (aspect kept) into the 640x640 input and
placed top-left on black; input RGB, (x - 127.5) / 128, NCHW; 9 outputs = scores, box distances and
landmark offsets for strides 8/16/32, 2 anchors per cell, all distances in units of the stride;
score threshold 0.5, NMS IoU 0.4 with "+1 pixel" areas.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..errors import HPError
from .faces import Face, nms
from .onnx_session import open_session

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2
SCORE_THRESHOLD = 0.5
IOU_THRESHOLD = 0.4
DEFAULT_INPUT = (640, 640)  # (w, h) when the file leaves it dynamic
# Where SCRFD models with landmarks sit inside an insightface model root (e.g. ComfyUI's models/insightface,
# which other face packs fill): buffalo_l's det_10g, antelopev2's scrfd_10g_bnkps (its zip often nests a
# second antelopev2 folder).
INSIGHTFACE_FILES = ("models/buffalo_l/det_10g.onnx", "models/antelopev2/scrfd_10g_bnkps.onnx",
                     "models/antelopev2/antelopev2/scrfd_10g_bnkps.onnx")


def find_scrfd(roots: Sequence[str | os.PathLike]) -> Path | None:
    """The first SCRFD file of INSIGHTFACE_FILES under any of the insightface roots, or None."""
    for root in roots:
        for rel in INSIGHTFACE_FILES:
            path = Path(root) / rel
            if path.is_file():
                return path
    return None


def letterbox_top_left(image: np.ndarray, input_wh: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Resize keeping aspect into (w, h), top-left on black; returns (uint8 canvas, scale applied)."""
    in_w, in_h = input_wh
    h, w = image.shape[:2]
    if h / w > in_h / in_w:
        new_h, new_w = in_h, int(in_h / (h / w))
    else:
        new_w, new_h = in_w, int(in_w * (h / w))
    canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, new_h / h


def scrfd_blob(canvas: np.ndarray) -> np.ndarray:
    """uint8 RGB canvas -> float32 (1, 3, H, W), (x - 127.5) / 128."""
    blob = (canvas.astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None])


def anchor_centers(height: int, width: int, stride: int) -> np.ndarray:
    """(height * width * 2, 2) anchor centres (x, y) in input pixels, row-major, anchors innermost."""
    ys, xs = np.mgrid[:height, :width]
    centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centers, ANCHORS_PER_CELL, axis=0)


def decode_outputs(outputs: Sequence[np.ndarray], input_hw: tuple[int, int], scale: float,
                   score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD) -> list[Face]:
    """The 9 raw outputs -> faces in frame pixels (divided by the letterbox scale), best first."""
    in_h, in_w = input_hw
    scores_all, boxes_all, marks_all = [], [], []
    for level, stride in enumerate(STRIDES):
        scores = np.asarray(outputs[level], np.float32).reshape(-1)
        dist = np.asarray(outputs[level + 3], np.float32).reshape(-1, 4) * stride
        offs = np.asarray(outputs[level + 6], np.float32).reshape(-1, 10) * stride
        centers = anchor_centers(in_h // stride, in_w // stride, stride)
        hit = scores >= score_threshold
        c = centers[hit]
        boxes = np.concatenate([c - dist[hit, :2], c + dist[hit, 2:]], axis=1)
        marks = offs[hit].reshape(-1, 5, 2) + c[:, None, :]
        scores_all.append(scores[hit])
        boxes_all.append(boxes)
        marks_all.append(marks)
    scores = np.concatenate(scores_all)
    if not len(scores):
        return []
    boxes = np.concatenate(boxes_all) / scale
    marks = np.concatenate(marks_all) / scale
    keep = nms(boxes, scores, iou_threshold, pixel_offset=1.0)
    return [Face(box=boxes[i], score=float(scores[i]), landmarks=marks[i]) for i in keep]


class ScrfdDetector:
    """FaceDetector around an SCRFD onnxruntime session."""

    def __init__(self, session, score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD):
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            self.input_wh = (shape[3], shape[2])
        else:
            self.input_wh = DEFAULT_INPUT
        self.output_names = [o.name for o in session.get_outputs()]
        if len(self.output_names) != 9:
            raise HPError(f"This SCRFD model has {len(self.output_names)} outputs; 9 (with landmarks) are needed.",
                          hint="Use det_10g.onnx from insightface's buffalo_l pack.")
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 H x W x 3 frame, in its pixels, best first."""
        canvas, scale = letterbox_top_left(image, self.input_wh)
        outputs = self.session.run(self.output_names, {self.input_name: scrfd_blob(canvas)})
        return decode_outputs(outputs, (self.input_wh[1], self.input_wh[0]), scale,
                              self.score_threshold, self.iou_threshold)


def load_scrfd(path: str | os.PathLike, providers: Sequence[str] | None = None) -> ScrfdDetector:
    """Open det_10g.onnx (SCRFD with landmarks) with the given onnxruntime providers (default: onnx_providers())."""
    return ScrfdDetector(open_session(path, providers, what="SCRFD face detector"))
