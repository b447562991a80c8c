"""IMAdapter appearance extractor: the source portrait -> appearance tokens, identity and reference latents."""

from __future__ import annotations

import numpy as np
import torch

from hp_core.errors import HPError
from hp_core.pipeline import appearance_at, encode_appearance, encode_reference, reference_at
from hp_core.preprocess import no_identity

from . import bridge, core
from .motion import uint8_to_image
from .sockets import APPEARANCE, MODELS, MOTION_FEATURES, PortraitAppearance

CATEGORY = "HunyuanPortrait"


def source_only(source_image: torch.Tensor, detector: str):
    """Preprocess the source alone (it is its own one-frame driving video) when no motion features come in."""
    det = core.face_detector(detector)
    return core.prepare(source_image[0], source_image[0:1], det, face_index=None, max_frames=1, smoothing=0,
                        driving_face_index=None, edge_mode="auto", progress=None)


class HunyuanPortraitAppearanceExtractor:
    """Node: DINOv2 + IMAdapters with the ArcFace identity, and the VAE reference latents."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "models": (MODELS, {"tooltip": "From HunyuanPortrait Load Models."}),
                "source_image": ("IMAGE", {"tooltip": "The portrait to animate (the first image of a batch). "
                                                      "Connect the same image as to the Face-Crop Motion Encoder."}),
                "use_arcface": ("BOOLEAN", {"default": True, "tooltip":
                                "Feed the ArcFace identity vector to the IMAdapters (the release does; needs "
                                "arcface.onnx). Off: a zero identity vector."}),
                "resolution": ("INT", {"default": 512, "min": 64, "max": 1024, "step": 64, "tooltip":
                               "Side of the generated square video. 512 is what the weights were trained at; "
                               "256 gives a quick, rough draft."}),
                "detector": (list(core.DETECTORS), {"default": "yolo", "tooltip":
                             "Face detector used only when motion_features is not connected."}),
            },
            "optional": {
                "motion_features": (MOTION_FEATURES, {"tooltip":
                                    "From the Face-Crop Motion Encoder: reuse its source crop and landmarks "
                                    "(recommended, so both extractors see the same face)."}),
            },
        }

    RETURN_TYPES = (APPEARANCE, "IMAGE")
    RETURN_NAMES = ("appearance", "portrait_crop")
    OUTPUT_TOOLTIPS = ("Appearance tokens, identity vector, reference latents and the crop box for paste-back.",
                       "Preview: the 512x512 portrait crop the model sees.")
    FUNCTION = "extract"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encodes the source portrait with DINOv2 and the identity-aware IMAdapters (ArcFace "
                   "identity), projects the tokens for the UNet's cross-attention, and encodes the crop with "
                   "the VAE (start and conditioning latents).")

    def extract(self, models, source_image, use_arcface, resolution, detector, motion_features=None):
        if resolution % 64 or not 64 <= resolution <= 1024:
            raise HPError(f"resolution must be a multiple of 64 between 64 and 1024, got {resolution}.")
        prepared = motion_features if motion_features is not None else source_only(source_image, detector)
        crop = prepared.source_crop_512
        identity = core.arcface().embed(crop, prepared.source_landmarks) if use_arcface else no_identity()
        app_in = appearance_at(prepared, models.dims.appearance_size)
        with bridge.readable_errors("appearance encoding", "the resolution or precision"):
            tokens = encode_appearance(models, app_in, torch.from_numpy(np.asarray(identity, np.float32)))
            reference = reference_at(prepared, (int(resolution), int(resolution)))
            ref_latents, cond_latents = encode_reference(models, reference)
        box = tuple(int(v) for v in prepared.crop_bbox)
        appearance = PortraitAppearance(tokens=tokens, identity=np.asarray(identity, np.float32),
                                        ref_latents=ref_latents, cond_latents=cond_latents, crop_box=box,
                                        source_hw=(int(source_image.shape[1]), int(source_image.shape[2])),
                                        reference=reference.float().cpu())
        return (appearance, uint8_to_image(crop[None]))


NODE_CLASS_MAPPINGS = {"HunyuanPortraitAppearanceExtractor": HunyuanPortraitAppearanceExtractor}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitAppearanceExtractor": "HunyuanPortrait IMAdapter Appearance Extractor"}
