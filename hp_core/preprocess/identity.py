"""ArcFace identity vector: align the face to the 112x112 ArcFace template, run the recogniser, L2-normalise."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .onnx_session import open_session

# insightface's arcface_dst: where the 5 landmarks sit in a 112x112 ArcFace input.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ARCFACE_SIZE = 112
EMBED_DIM = 512


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 matrix of the least-squares similarity (rotation, uniform scale, shift) taking src to dst (Umeyama)."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    n = len(src)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    cov = d.T @ s / n
    u, sv, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better; similarities may not reflect
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var_s = (s ** 2).sum() / n
    scale = (sv * np.diag(sign)).sum() / var_s if var_s > 0 else 1.0
    m = np.eye(3)
    m[:2, :2] = scale * rot
    m[:2, 2] = mu_d - scale * rot @ mu_s
    return m


def warp_bilinear(image: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Sample image (H W C) at matrix^-1 of every output pixel, bilinearly, as if surrounded by zeros.

    Pixel centres sit on integer coordinates and the image is extended with 0 (interpolated across the
    edge), as the release's skimage warp (order 1, constant mode, cval 0) does. Output float64.
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape[:2]
    padded = np.zeros((h + 2, w + 2) + img.shape[2:], dtype=np.float64)
    padded[1:-1, 1:-1] = img
    inv = np.linalg.inv(matrix)
    oy, ox = np.mgrid[:out_hw[0], :out_hw[1]].astype(np.float64)
    # +1: coordinates in the padded image; clipping lands far-away samples on the zero border.
    sx = np.clip(inv[0, 0] * ox + inv[0, 1] * oy + inv[0, 2] + 1, 0, w + 1)
    sy = np.clip(inv[1, 0] * ox + inv[1, 1] * oy + inv[1, 2] + 1, 0, h + 1)
    x0 = np.minimum(np.floor(sx).astype(np.int64), w)
    y0 = np.minimum(np.floor(sy).astype(np.int64), h)
    fx, fy = sx - x0, sy - y0
    if img.ndim == 3:
        fx, fy = fx[..., None], fy[..., None]
    top = padded[y0, x0] * (1 - fx) + padded[y0, x0 + 1] * fx
    bottom = padded[y0 + 1, x0] * (1 - fx) + padded[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def align_arcface(image_uint8: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """RGB uint8 face image + its 5 landmarks -> aligned 112x112x3 float in [0, 1] (the recogniser input, HWC)."""
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
    return warp_bilinear(np.asarray(image_uint8, dtype=np.float64) / 255.0, matrix, (ARCFACE_SIZE, ARCFACE_SIZE))


class ArcFaceEmbedder:
    """ArcFace recogniser (onnxruntime session whose input is named `data`, 1x3x112x112 RGB in [0, 1])."""

    def __init__(self, session, input_name: str | None = None):
        self.session = session
        self.input_name = input_name or session.get_inputs()[0].name

    def embed(self, crop512_uint8: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Identity vector (512,) float32, unit L2 norm, for the face in the crop with these 5 landmarks."""
        aligned = align_arcface(crop512_uint8, landmarks)
        blob = np.ascontiguousarray(aligned.transpose(2, 0, 1)[None].astype(np.float32))
        out = np.asarray(self.session.run(None, {self.input_name: blob})[0], dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(out))
        return out / norm if norm > 0 else out


def load_arcface(path: str | os.PathLike, providers: Sequence[str] | None = None) -> ArcFaceEmbedder:
    """Open arcface.onnx (Arc2Face's recogniser) with onnxruntime (default providers: onnx_providers())."""
    return ArcFaceEmbedder(open_session(path, providers, what="ArcFace"))


def no_identity() -> np.ndarray:
    """The identity vector used when ArcFace is disabled: zeros (512,) float32, as the release does."""
    return np.zeros(EMBED_DIM, dtype=np.float32)
