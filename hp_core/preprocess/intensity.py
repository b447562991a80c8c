"""Motion-intensity bucket ids (head, expression) from the 5 driving landmarks, per chunk of frames."""

from __future__ import annotations

import numpy as np

from ..models.motion_refiner import CHUNK
from .faces import NOSE_INDEX

MAX_ID = 127
EXPRESSION_GAIN = 1024
HEAD_GAIN = 256


def chunk_intensity(landmarks: np.ndarray, nose_index: int = NOSE_INDEX, max_id: int = MAX_ID) -> tuple[int, int]:
    """(head_id, expression_id) of one chunk of landmarks (F, 5, 2), both clamped to [0, max_id].

    Expression: points relative to the nose, mean distance to each point's mean over the chunk,
    divided by the face scale (diagonal of the first frame's nose-relative extent), x 1024.
    Head: the raw nose track's mean distance to its mean, / the same scale, x 256.
    """
    lmk = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    centred = lmk - lmk[:, nose_index:nose_index + 1]
    first = centred[0]
    scale = float(np.sqrt(((first.max(axis=0) - first.min(axis=0)) ** 2).sum()))
    if not scale > 0:  # all points on one spot: no measurable face, call it no motion
        return 0, 0
    exp_spread = np.sqrt(((centred - centred.mean(axis=0)) ** 2).sum(axis=2)).mean()
    nose = lmk[:, nose_index]
    head_spread = np.sqrt(((nose - nose.mean(axis=0)) ** 2).sum(axis=1)).mean()
    exp_id = min(max(int(exp_spread / scale * EXPRESSION_GAIN), 0), max_id)
    head_id = min(max(int(head_spread / scale * HEAD_GAIN), 0), max_id)
    return head_id, exp_id


def intensity_ids(landmarks: np.ndarray, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """(head_id, expression_id) for each consecutive chunk of `chunk` frames of landmarks (F, 5, 2)."""
    lmk = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    return [chunk_intensity(lmk[start:start + chunk]) for start in range(0, len(lmk), chunk)]
