"""Driving skeletons moved onto the source (paper: nose offset, bone-length ratios, no eyes in cross
reenactment) and drawn as OpenPose images for the pose guider.

Keypoints are OpenPose-18 arrays (18, 3) [x, y, score] in pixels; a point counts when score > 0.3.
OpenPose-18: 0 nose, 1 neck, 2-4 right shoulder/elbow/wrist, 5-7 left shoulder/elbow/wrist,
8-10 right hip/knee/ankle, 11-13 left hip/knee/ankle, 14/15 right/left eye, 16/17 right/left ear.
"""

from __future__ import annotations

from collections import deque
from typing import Sequence

import cv2
import numpy as np

VISIBLE = 0.3
NOSE, NECK = 0, 1
EYES = (14, 15)

# The 17 limbs the OpenPose renderer draws, in its order (0-based), and its 18 colours (RGB): limb i
# and keypoint i share colour i.
LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
         (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
          (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
          (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK_WIDTH = 4
JOINT_RADIUS = 4
LIMB_DIM = 0.6  # limbs are drawn at 60 % brightness, joints at full


def _visible(body: np.ndarray, i: int, threshold: float = VISIBLE) -> bool:
    return bool(body[i, 2] > threshold)


def _tree_from(root: int) -> list[tuple[int, int]]:
    """(parent, child) pairs of the skeleton tree walked breadth-first from root."""
    neighbours: dict[int, list[int]] = {i: [] for i in range(18)}
    for a, b in LIMBS:
        neighbours[a].append(b)
        neighbours[b].append(a)
    seen, order, queue = {root}, [], deque([root])
    while queue:
        node = queue.popleft()
        for nxt in neighbours[node]:
            if nxt not in seen:
                seen.add(nxt)
                order.append((node, nxt))
                queue.append(nxt)
    return order


def _first_visible(frames: np.ndarray, *points: int) -> int | None:
    for t in range(len(frames)):
        if all(frames[t, p, 2] > VISIBLE for p in points):
            return t
    return None


def align_poses(source: np.ndarray, driving: Sequence[np.ndarray] | np.ndarray, cross: bool = True) -> np.ndarray:
    """Driving bodies (F, 18, 3) re-targeted to the source body (18, 3).

    Each bone (walked outwards from the nose, or the neck when a nose is missing) keeps its driving
    direction and motion but is scaled by source length / driving length (lengths from the source and
    from the first driving frame that shows the bone), and the skeleton is moved by the offset between
    the source's and the first driving frame's nose. cross=True drops the eye keypoints (and so their
    edges), as the paper does for cross-reenactment.
    """
    src = np.asarray(source, dtype=np.float64).reshape(18, 3)
    drv = np.asarray(driving, dtype=np.float64).reshape(-1, 18, 3)
    root = NOSE
    if not (_visible(src, NOSE) and _first_visible(drv, NOSE) is not None) and _visible(src, NECK):
        root = NECK
    ref = _first_visible(drv, root)
    offset = src[root, :2] - drv[ref, root, :2] if (ref is not None and _visible(src, root)) else np.zeros(2)
    tree = _tree_from(root)
    ratios = {}
    for parent, child in tree:
        t = _first_visible(drv, parent, child)
        ratio = 1.0
        if t is not None and _visible(src, parent) and _visible(src, child):
            d_len = np.linalg.norm(drv[t, child, :2] - drv[t, parent, :2])
            if d_len > 1e-6:
                ratio = np.linalg.norm(src[child, :2] - src[parent, :2]) / d_len
        ratios[(parent, child)] = ratio
    out = np.zeros_like(drv)
    out[:, :, 2] = drv[:, :, 2]
    for f in range(len(drv)):
        frame, placed = drv[f], np.zeros(18, dtype=bool)
        if _visible(frame, root):
            out[f, root, :2] = frame[root, :2] + offset
            placed[root] = True
        for parent, child in tree:
            if not _visible(frame, child):
                continue
            if placed[parent]:
                bone = frame[child, :2] - frame[parent, :2]
                out[f, child, :2] = out[f, parent, :2] + ratios[(parent, child)] * bone
            else:  # the chain is broken here: keep the point where it is, only moved with the skeleton
                out[f, child, :2] = frame[child, :2] + offset
            placed[child] = True
    if cross:
        out[:, list(EYES), :] = 0.0
    return out


def render_pose(body: np.ndarray, width: int, height: int, threshold: float = VISIBLE) -> np.ndarray:
    """One OpenPose-18 body (pixels) -> uint8 RGB height x width skeleton image on black, OpenPose colours."""
    body = np.asarray(body, dtype=np.float64).reshape(18, 3)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for i, (a, b) in enumerate(LIMBS):
        if not (body[a, 2] > threshold and body[b, 2] > threshold):
            continue
        (xa, ya), (xb, yb) = body[a, :2], body[b, :2]
        length = float(np.hypot(xa - xb, ya - yb))
        angle = int(np.degrees(np.arctan2(ya - yb, xa - xb)))
        centre = (int((xa + xb) / 2), int((ya + yb) / 2))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), STICK_WIDTH), angle, 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, COLORS[i])
    canvas = (canvas * LIMB_DIM).astype(np.uint8)
    for i in range(18):
        if body[i, 2] > threshold:
            cv2.circle(canvas, (int(body[i, 0]), int(body[i, 1])), JOINT_RADIUS, COLORS[i], thickness=-1)
    return canvas


def render_poses(bodies: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bodies (F, 18, 3) -> uint8 (F, height, width, 3) skeleton images."""
    return np.stack([render_pose(b, width, height) for b in np.asarray(bodies).reshape(-1, 18, 3)])
