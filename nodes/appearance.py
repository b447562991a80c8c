"""IMAdapter appearance extractor, the portrait side: the portrait -> appearance tokens, identity, reference
latents and its own head pose. Independent of the driving clip."""

from __future__ import annotations


from hp_core.errors import HPError
from hp_core.pipeline import Settings, encode_portrait, encode_portrait_motion
from hp_core.preprocess import prepare_source
from hp_core.preprocess.crop import EDGE_MODES

from . import bridge, core
from .motion import LOG, uint8_to_image
from .sockets import APPEARANCE, MODELS, PortraitAppearance

CATEGORY = "HunyuanPortrait"


# The generated video's side: the release's 512 by default; multiples of 64 keep the latent windows whole.
RESOLUTION = {"default": Settings().height, "min": 64, "max": 1024, "step": 64}


class HunyuanPortraitAppearanceExtractor:
    """Node: the portrait side. DINOv2 + IMAdapters with the ArcFace identity, the VAE reference latents,
    and the portrait's own head pose and expression (for Motion Edit)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "models": (MODELS, {"tooltip": "From HunyuanPortrait Load Models."}),
                "source_image": ("IMAGE", {"tooltip": "The portrait to animate (the first image of a batch)."}),
                "use_arcface": ("BOOLEAN", {"default": True, "tooltip":
                                "Feed the ArcFace identity vector to the IMAdapters (the release does; needs "
                                "arcface.onnx). Off: a zero identity vector."}),
                "resolution": ("INT", {**RESOLUTION, "tooltip":
                               "Side of the generated square video. 512 is what the weights were trained at; "
                               "256 gives a quick, rough draft."}),
                "detector": (list(core.DETECTORS), {"default": "yolo", "tooltip":
                             "Face detector for the portrait: yolo = the release's; scrfd = insightface SCRFD."}),
            },
            "optional": {
                "face_index": ("INT", {"default": -1, "min": -1, "max": 63, "tooltip":
                               "Which face of the portrait to animate: -1 = the largest (the release), 0, 1, ... = "
                               "counted from the left."}),
                "edge_mode": (list(EDGE_MODES), {"default": "auto", "tooltip":
                              "A face near the border: clip = the release's crop, pad = black padding, auto = the "
                              "release's crop unless it would cut the face."}),
            },
        }

    RETURN_TYPES = (APPEARANCE, "IMAGE")
    RETURN_NAMES = ("appearance", "portrait_crop")
    OUTPUT_TOOLTIPS = ("Appearance tokens, identity vector, reference latents, the crop box for paste-back and the "
                       "portrait's own head pose.",
                       "Preview: the 512x512 portrait crop the model sees.")
    FUNCTION = "extract"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Finds the face in the portrait, encodes it with DINOv2 and the identity-aware IMAdapters "
                   "(ArcFace identity), projects the tokens for the UNet's cross-attention, encodes the crop with "
                   "the VAE (start and conditioning latents), and reads the portrait's own head pose and "
                   "expression with the motion encoders (used by Motion Edit's relative and still modes).")

    def extract(self, models, source_image, use_arcface, resolution, detector, face_index=None, edge_mode=None):
        low, high, step = RESOLUTION["min"], RESOLUTION["max"], RESOLUTION["step"]
        if resolution % step or not low <= resolution <= high:
            raise HPError(f"resolution must be a multiple of {step} between {low} and {high}, got {resolution}.")
        source = prepare_source(source_image[0], core.face_detector(detector),
                                None if face_index is None or int(face_index) < 0 else int(face_index),
                                core.arcface() if use_arcface else None, edge_mode or "auto")
        with bridge.readable_errors("appearance encoding", "the resolution or precision"):
            encoded = encode_portrait(models, source, (int(resolution), int(resolution)))
            own = encode_portrait_motion(models, source.pose_crop, source.motion_crop)
        box = tuple(int(v) for v in source.crop_bbox)
        for text in source.warnings:
            LOG.warning("HunyuanPortrait: %s", text)
        appearance = PortraitAppearance(tokens=encoded.tokens, identity=source.identity,
                                        ref_latents=encoded.ref_latents, cond_latents=encoded.cond_latents,
                                        crop_box=box,
                                        source_hw=(int(source_image.shape[1]), int(source_image.shape[2])),
                                        reference=encoded.reference.float().cpu(), source_crop=source.source_crop_512,
                                        motion=own)
        return (appearance, uint8_to_image(source.source_crop_512[None]))


NODE_CLASS_MAPPINGS = {"HunyuanPortraitAppearanceExtractor": HunyuanPortraitAppearanceExtractor}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitAppearanceExtractor": "HunyuanPortrait IMAdapter Appearance Extractor"}
