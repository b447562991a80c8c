"""The release's crop arithmetic: the square portrait crop, the motion face crop, and tensor layouts.

Every number here is what the official weights were trained with; the order of operations (expand,
clip, square, round; int() truncation in the motion crop) matters for bit-level agreement.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import HPError

CROP_SIZE = 512
POSE_SIZE = 256
MOTION_SIZE = 256
APPEARANCE_SIZE = 224
EXPAND_RATIO = 1.0
MOTION_MARGIN = 0.45
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EDGE_MODES = ("auto", "clip", "pad")  # what portrait_crop_box does with faces at the border

Box = tuple[int, int, int, int]


def _py_round(value: float) -> int:
    return int(round(float(value)))  # Python's round: halves to even, as the release's round()


def square_crop_box(face_box: Sequence[float], height: int, width: int, ratio: float = EXPAND_RATIO,
                    clip: bool = True) -> Box:
    """Face box (x1, y1, x2, y2) -> the square crop box (x1, y1, x2, y2) in integer pixels.

    Release rule (clip=True): grow by ratio x width/height on each side, clip to the image, take the
    shorter side of that box, and move the square's centre towards the face centre by at most half
    the difference of the sides. clip=False keeps the grown box unclipped, so a face at the border
    stays centred and the crop gets black padding instead of being cut small.
    """
    x1, y1, x2, y2 = (float(v) for v in face_box)
    bw, bh = x2 - x1, y2 - y1
    ex1, ey1, ex2, ey2 = x1 - ratio * bw, y1 - ratio * bh, x2 + ratio * bw, y2 + ratio * bh
    if clip:
        ex1, ey1, ex2, ey2 = max(ex1, 0), max(ey1, 0), min(ex2, width), min(ey2, height)
    h, w = ey2 - ey1, ex2 - ex1
    cy, cx = (ey1 + ey2) / 2, (ex1 + ex2) / 2
    half = min(h, w) / 2
    face_cy, face_cx = (y1 + y2) / 2, (x1 + x2) / 2
    slack = abs(h - w) / 2
    if w < h:
        shift = min(slack, abs(face_cy - cy))
        cy += shift if face_cy > cy else -shift
    else:
        shift = min(slack, abs(face_cx - cx))
        cx += shift if face_cx > cx else -shift
    return (_py_round(cx - half), _py_round(cy - half), _py_round(cx + half), _py_round(cy + half))


def portrait_crop_box(face_box: Sequence[float], height: int, width: int, edge_mode: str = "auto") -> Box:
    """The square crop for a face: edge_mode "clip" (release), "pad" (unclipped, black padding), or "auto".

    "auto" keeps the release's box unless it cuts more than a tenth of the face off, which happens only
    for faces at the image border whose box is much taller than wide (or wider than tall); then it pads
    instead. A smaller cut keeps the release's framing, so ordinary close-ups match the release.
    """
    if edge_mode not in EDGE_MODES:
        raise HPError(f"edge_mode must be one of {', '.join(EDGE_MODES)}, not {edge_mode!r}.")
    if edge_mode == "pad":
        return square_crop_box(face_box, height, width, clip=False)
    box = square_crop_box(face_box, height, width, clip=True)
    if edge_mode == "clip":
        return box
    fx1, fy1 = max(float(face_box[0]), 0.0), max(float(face_box[1]), 0.0)
    fx2, fy2 = min(float(face_box[2]), width), min(float(face_box[3]), height)
    tol_x = max(1.0, 0.1 * (fx2 - fx1))  # at least the rounding of the box corners
    tol_y = max(1.0, 0.1 * (fy2 - fy1))
    if (fx1 < box[0] - tol_x or fy1 < box[1] - tol_y or fx2 > box[2] + tol_x
            or fy2 > box[3] + tol_y):
        return square_crop_box(face_box, height, width, clip=False)
    return box


def crop_resize(image: np.ndarray | Image.Image, box: Box, size: int = CROP_SIZE,
                resample: int = Image.BICUBIC) -> np.ndarray:
    """Cut box from an RGB image (outside the image is black) and resize to size x size -> uint8 RGB."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
    return np.array(pil.crop(tuple(int(v) for v in box)).resize((size, size), resample=resample))


def resize_square(image: np.ndarray, size: int, resample: int = Image.BILINEAR) -> np.ndarray:
    """uint8 RGB square image -> size x size with PIL (bilinear: what torchvision Resize does on PIL images)."""
    return np.array(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), resample=resample))


def motion_face_box(landmarks: np.ndarray, face_box: Sequence[float], margin: float = MOTION_MARGIN) -> np.ndarray:
    """Box between the landmarks' extent and the face box: each side moves outwards by margin of the gap."""
    marks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    bx1, by1, bx2, by2 = (float(v) for v in face_box)
    lx1, ly1 = marks.min(axis=0)
    lx2, ly2 = marks.max(axis=0)
    return np.array([lx1 - (lx1 - bx1) * margin, ly1 - (ly1 - by1) * margin,
                     lx2 + (bx2 - lx2) * margin, ly2 + (by2 - ly2) * margin])


def motion_crop_window(box: Sequence[float]) -> Box:
    """Square window around a box: centre and half side truncated as the release does (int())."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
    half = int(max(x1 - x0, y1 - y0)) // 2
    return cx - half, cy - half, cx + half, cy + half


def crop_zero_padded(image: np.ndarray, window: Box) -> np.ndarray:
    """The pixels of window (x1, y1, x2, y2) from image; black where the window leaves the image."""
    x1, y1, x2, y2 = window
    h, w = image.shape[:2]
    out = np.zeros((max(y2 - y1, 0), max(x2 - x1, 0)) + image.shape[2:], dtype=image.dtype)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if sx2 > sx1 and sy2 > sy1:
        out[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2]
    return out


def motion_face_crop(image: np.ndarray, landmarks: np.ndarray, face_box: Sequence[float],
                     size: int = MOTION_SIZE) -> np.ndarray:
    """The expression encoder's input for one frame: uint8 RGB size x size (0.45 rule, zero padding)."""
    window = motion_crop_window(motion_face_box(landmarks, face_box))
    patch = crop_zero_padded(image, window)
    if patch.shape[0] == 0:  # degenerate landmarks: nothing to see, feed black rather than crash
        return np.zeros((size, size, 3), np.uint8)
    return resize_square(patch, size)


def to_unit_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (H W C) or (F H W C) -> float32 (C H W) or (F C H W) in [0, 1]."""
    arr = np.ascontiguousarray(images)
    t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    t = t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)
    return t.float().div_(255)


def to_signed_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (H W C) or (F H W C) -> float32 (C H W) or (F C H W) in [-1, 1]."""
    return to_unit_tensor(images).sub_(0.5).div_(0.5)


def appearance_input(crop512: np.ndarray, size: int = APPEARANCE_SIZE) -> torch.Tensor:
    """512 crop uint8 -> (1, 3, 224, 224): bilinear antialiased resize of [0, 1] values, ImageNet mean/std."""
    x = to_unit_tensor(crop512)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def to_crop_coords(points: np.ndarray, box: Box, size: int = CROP_SIZE) -> np.ndarray:
    """Frame pixel coordinates (..., 2) -> coordinates in the size x size crop of box."""
    x1, y1, x2, y2 = box
    pts = np.asarray(points, dtype=np.float64)
    return (pts - np.array([x1, y1])) * np.array([size / (x2 - x1), size / (y2 - y1)])
