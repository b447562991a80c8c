"""DWPose alignment (optional): driving body poses re-targeted to the source and drawn for the pose guider."""

from __future__ import annotations

import cv2
import numpy as np

from hp_core.errors import HPError
from hp_core.preprocess import skeleton_images

from . import bridge, core
from .motion import uint8_to_image
from .sockets import APPEARANCE, MOTION_FEATURES, POSE, PortraitPose

CATEGORY = "HunyuanPortrait"
PREVIEW_SIZE = 256


def preview(images: np.ndarray, size: int = PREVIEW_SIZE) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, size, size, 3) uint8, area-averaged (thin skeleton lines stay visible)."""
    return np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in images])


class HunyuanPortraitDWPoseAlignment:
    """Node: DWPose on the source crop and every driving crop, aligned to the source, drawn as skeletons."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "motion_features": (MOTION_FEATURES, {"tooltip": "From the Face-Crop Motion Encoder (DWPose reads its "
                                                             "driving crops)."}),
            "appearance": (APPEARANCE, {"tooltip": "From the Appearance Extractor (DWPose reads its portrait "
                                                   "crop, to align the driving skeletons to it)."}),
            "cross_reenactment": ("BOOLEAN", {"default": True, "tooltip":
                                  "Source and driving show different people: drop the eye keypoints, as the "
                                  "paper does, so the driver's eye shape does not leak into the result."}),
        }}

    RETURN_TYPES = (POSE, "IMAGE")
    RETURN_NAMES = ("pose", "pose_preview")
    OUTPUT_TOOLTIPS = ("Aligned skeleton images for the sampler's pose input (one per driving frame).",
                       "Preview: the aligned skeletons (256x256).")
    FUNCTION = "align"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Runs DWPose (yolox_l.onnx + dw-ll_ucoco_384.onnx in models/hunyuan_portrait/dwpose) on the "
                   "source and driving crops, moves the driving skeletons by the nose offset and scales their "
                   "bones to the source's proportions (the paper's alignment), and draws them for the pose "
                   "guider. Without this node the sampler uses the release's blank pose images.")

    def align(self, motion_features, appearance, cross_reenactment):
        driving = motion_features
        if appearance.source_crop is None:
            raise HPError("This appearance input carries no portrait crop for DWPose.",
                          hint="Connect the HunyuanPortrait Appearance Extractor's appearance output.")
        estimator = core.dwpose()
        frames = driving.num_frames
        progress = bridge.Progress(frames + 1)
        source_body = estimator.estimate(appearance.source_crop)
        progress(1)
        bodies = []
        for t in range(frames):
            bridge.check_interrupt()
            bodies.append(estimator.estimate(driving.driven_crops[t]))
            progress(t + 2)
        images = skeleton_images(source_body, np.stack(bodies), cross=bool(cross_reenactment))
        return (PortraitPose(images), uint8_to_image(preview(images)))


NODE_CLASS_MAPPINGS = {"HunyuanPortraitDWPoseAlignment": HunyuanPortraitDWPoseAlignment}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitDWPoseAlignment": "HunyuanPortrait DWPose Alignment"}
