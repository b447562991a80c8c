"""What a face detector returns, how several faces are told apart, and one NMS for every detector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import HPError

# Order of the 5 landmarks everywhere in this package (the YOLOv5-face / insightface order).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "left_mouth", "right_mouth")
NOSE_INDEX = 2


@dataclass
class Face:
    """One detected face in image pixels: box (x1, y1, x2, y2), confidence, landmarks (5, 2) as (x, y)."""

    box: np.ndarray
    score: float
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((5, 2), np.float64))

    def __post_init__(self):
        self.box = np.asarray(self.box, dtype=np.float64).reshape(4)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(5, 2)
        self.score = float(self.score)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2, float(self.box[1] + self.box[3]) / 2


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with detect(rgb uint8 H x W x 3) -> faces in that image's pixel coordinates."""

    def detect(self, image: np.ndarray) -> list[Face]:
        ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, *, pixel_offset: float = 0.0) -> np.ndarray:
    """Indices of the boxes (N, 4 as x1 y1 x2 y2) kept by greedy NMS, best score first.

    A box is dropped when its IoU with a kept box is above the threshold. ``pixel_offset=1`` gives the
    older "+1 pixel" box areas that insightface and YOLOX use; 0 is torchvision's convention.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    widths = np.maximum(boxes[:, 2] - boxes[:, 0] + pixel_offset, 0.0)
    heights = np.maximum(boxes[:, 3] - boxes[:, 1] + pixel_offset, 0.0)
    areas = widths * heights
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        iw = np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]) + pixel_offset
        ih = np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]) + pixel_offset
        inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
        union = areas[best] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def no_face_error(where: str) -> HPError:
    """The error for 'the detector found nothing', with what the user can do about it."""
    return HPError(f"No face was found in the {where}.",
                   hint="Use a closer, clearer, well-lit crop with the whole face visible and roughly frontal.")


def select_face(faces: Sequence[Face], index: int | None = None, *, where: str = "image") -> Face:
    """The largest face (index None, as the release does), or the index-th face counted left to right."""
    if not faces:
        raise no_face_error(where)
    if index is None:
        # max() keeps the first of equal areas, like the release's argmax
        return max(faces, key=lambda f: f.area)
    ordered = sorted(faces, key=lambda f: f.center[0])
    if not -len(ordered) <= index < len(ordered):
        raise HPError(f"Face index {index} was asked for, but the {where} has {len(ordered)} face(s).",
                      hint=f"Use an index from 0 to {len(ordered) - 1} (faces are counted left to right), "
                           "or leave it empty for the largest face.")
    return ordered[index]
