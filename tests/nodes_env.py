"""What the node, workflow and ComfyUI-server tests share: a tiny-preset models folder in the official
layout (random weights with make-random-weights' stand-in YOLO-face detector and ArcFace), a fake DWPose estimator,
and synthetic images as ComfyUI IMAGE tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fakes import driving_frames, portrait
from hp_core import weights as W


def make_models_dir(root: str | Path) -> Path:
    """root/ with hyportrait/*.pth (tiny), vae/, yoloface_v5m.pt and arcface.onnx where the manifest puts them
    (write_random_weights writes the stand-in detector and ArcFace itself)."""
    root = Path(root)
    W.write_random_weights(root, "tiny", seed=0, log=lambda *_: None)
    return root


def load_tiny_models():
    """HunyuanPortrait Load Models on the manifest's files of the models folder in use, tiny preset: HP_MODELS
    (import the pack's nodes first; inside ComfyUI, register the models folder first)."""
    import nodes
    from nodes import core

    files = {n: core.manifest_path(n) for n in ("unet", "dino", "image_proj", "motion_proj", "expression",
                                                "headpose", "pose_guider")}
    return nodes.NODE_CLASS_MAPPINGS["HunyuanPortraitModelLoader"]().load(
        **files, vae=core.manifest_path("svd_vae"), preset="tiny", precision="auto", keep_on_gpu="all")[0]


def as_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) or (F, H, W, 3) -> ComfyUI IMAGE (B, H, W, 3) float32 in [0, 1]."""
    arr = frames[None] if frames.ndim == 3 else frames
    return torch.from_numpy(arr.astype(np.float32) / 255.0)


def source_image() -> torch.Tensor:
    """A 240x320 portrait as a ComfyUI IMAGE batch of one."""
    return as_image(portrait())


def driving_video(n: int = 4) -> torch.Tensor:
    """n driving frames (200x200) as a ComfyUI IMAGE batch; with n > 3 one frame has no face."""
    return as_image(driving_frames(n))


class FakeDWPose:
    """Stands in for DWPoseEstimator: an OpenPose-18 body placed by the image's red face, all visible."""

    # nose, neck, shoulders/elbows/wrists (R, L), hips/knees/ankles (R, L), eyes, ears: fractions of the face box
    LAYOUT = np.array([[0.5, 0.55], [0.5, 1.3], [0.0, 1.3], [-0.2, 1.9], [-0.3, 2.4], [1.0, 1.3], [1.2, 1.9],
                       [1.3, 2.4], [0.2, 2.6], [0.2, 3.4], [0.2, 4.2], [0.8, 2.6], [0.8, 3.4], [0.8, 4.2],
                       [0.35, 0.4], [0.65, 0.4], [0.15, 0.45], [0.85, 0.45]])

    def __init__(self):
        self.calls = 0

    def estimate(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        red = (image[..., 0] > 200) & (image[..., 1] < 64) & (image[..., 2] < 64)
        ys, xs = np.nonzero(red)
        if not len(xs):
            return np.zeros((18, 3))
        x1, y1, w, h = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        body = np.ones((18, 3))
        body[:, 0] = x1 + self.LAYOUT[:, 0] * w
        body[:, 1] = y1 + self.LAYOUT[:, 1] * h
        return body


class FakeKSampler:
    """A ComfyUI KSAMPLER stand-in: sampler_function in the k-diffusion convention (plain Euler)."""

    def __init__(self):
        self.extra_options = {}
        self.seen = {}

    def sampler_function(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        self.seen["sigma_max"] = model.inner_model.inner_model.model_sampling.sigma_max
        self.seen["patcher"] = model.inner_model.model_patcher.get_model_object("model_sampling").sigma_min
        self.seen["seed"] = extra_args["seed"]
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in, **extra_args)
            if callback is not None:
                callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
            x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return x


__all__ = ["FakeDWPose", "FakeKSampler", "as_image", "driving_video", "make_models_dir", "source_image"]
