"""Decode (latents -> 512 frames) and paste back (frames -> the full-resolution source image)."""

from __future__ import annotations

import logging

import numpy as np
import torch

from hp_core.errors import HPError
from hp_core.pipeline import VAE_SCALE, decode_latents
from hp_core.preprocess import paste_back, soft_mask, to_rgb_uint8
from hp_core.video import pad_even

from . import bridge
from .sockets import APPEARANCE, MODELS

CATEGORY = "HunyuanPortrait"
LOG = logging.getLogger("HunyuanPortrait")


def padded_latents(latent: dict) -> tuple[torch.Tensor, int]:
    """LATENT -> (raw latents with the sampler's padding put back on both sides, pad). A LATENT without
    ``hp_padding`` (or whose padding no longer fits its samples) decodes as it is: pad 0."""
    samples = latent["samples"]
    extra = latent.get("hp_padding")
    if not extra:
        return samples, 0
    before, after = extra["before"], extra["after"]
    if before.shape[0] != after.shape[0] or not before.shape[1:] == after.shape[1:] == samples.shape[1:]:
        LOG.warning("HunyuanPortrait: the latent's padding frames do not fit its samples (changed after "
                    "sampling?); decoding the samples alone, not aligned as the release.")
        return samples, 0
    return torch.cat([before.to(samples), samples, after.to(samples)]), int(before.shape[0])


class HunyuanPortraitDecode:
    """Node: the SVD temporal VAE decoder, a few frames at a time."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "models": (MODELS, {"tooltip": "From HunyuanPortrait Load Models."}),
            "latent": ("LATENT", {"tooltip": "From the HunyuanPortrait Sampler."}),
            "decode_chunk": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip":
                             "Frames decoded together (the release: 8). Trade-off: lower uses less memory "
                             "but changes the result slightly (the temporal decoder smooths over the frames "
                             "it sees together); higher can be slightly faster."}),
        }}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The generated portrait frames (square, the appearance resolution).",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Decodes the sampled latents with the SVD temporal VAE decoder into image frames. Latents "
                   "from the HunyuanPortrait Sampler are decoded with their padding frames as neighbours, in "
                   "chunks counted from the first padding frame, as the release does.")

    def decode(self, models, latent, decode_chunk):
        samples = latent["samples"]
        if samples.ndim != 4 or samples.shape[1] != 4:
            raise HPError(f"Expected latents (frames, 4, h, w), got {tuple(samples.shape)}.",
                          hint="Connect the HunyuanPortrait Sampler's latent output.")
        latents, pad = padded_latents(latent)
        progress = bridge.Progress(samples.shape[0])

        def step(done, total):
            bridge.check_interrupt()
            progress(done, total)

        with bridge.readable_errors("decoding", "decode_chunk (e.g. 2) or the precision"):
            frames = decode_latents(models, latents.float() * VAE_SCALE, chunk=int(decode_chunk), progress=step,
                                    pad=pad)
        return (frames,)


def _masks(mask: torch.Tensor, frames: int) -> list[np.ndarray]:
    """ComfyUI MASK (H, W) or (B, H, W) -> one mask per frame (a batch of one serves every frame)."""
    m = mask.detach().cpu().float().clamp(0, 1).numpy()
    if m.ndim == 2:
        return [m]
    if m.shape[0] not in (1, frames):
        raise HPError(f"The mask batch has {m.shape[0]} masks for {frames} frames.",
                      hint="Give one mask, or one per frame.")
    return list(m)


class HunyuanPortraitPasteBack:
    """Node: blend each generated frame back into the full-resolution source image at the crop box."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": ("IMAGE", {"tooltip": "Generated frames from HunyuanPortrait Decode."}),
                "source_image": ("IMAGE", {"tooltip": "The original source portrait (the same image the "
                                                      "extractors saw), at full resolution."}),
                "appearance": (APPEARANCE, {"tooltip": "From the Appearance Extractor: it knows where the crop "
                                                       "was cut."}),
                "feather": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 0.5, "step": 0.01, "tooltip":
                            "Width of the soft edge as a fraction of the crop side (the release: 0.1)."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Replaces the soft edge: either over the whole source image or in "
                                             "crop space (stretched over the crop). 1 = generated, 0 = source."}),
            },
        }

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The animated portrait at the source image's full resolution (an odd side gets one edge "
                       "row/column, so Save Video's H.264 accepts it).",)
    FUNCTION = "paste"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Resizes every generated frame to the crop box and blends it into the original source image "
                   "with a soft edge, so the output keeps the source's full resolution and background.")

    def paste(self, frames, source_image, appearance, feather, mask=None):
        source = to_rgb_uint8(source_image[0])
        if tuple(source.shape[:2]) != tuple(appearance.source_hw):
            raise HPError(f"The source image is {source.shape[1]}x{source.shape[0]} but the crop box was found on a "
                          f"{appearance.source_hw[1]}x{appearance.source_hw[0]} image.",
                          hint="Connect the same source image as to the Appearance Extractor.")
        x1, y1, x2, y2 = appearance.crop_box
        masks = _masks(mask, frames.shape[0]) if mask is not None else [soft_mask(x2 - x1, y2 - y1, float(feather))]
        h, w = source.shape[:2]
        if h % 2 or w % 2:
            LOG.info("HunyuanPortrait Paste Back: the %dx%d source has an odd side; the frames get one edge "
                     "row/column (%dx%d) so video encoders (H.264, yuv420p) accept them", w, h, w + w % 2, h + h % 2)
        out = torch.empty((frames.shape[0], h + h % 2, w + w % 2, 3), dtype=torch.float32)
        progress = bridge.Progress(frames.shape[0])
        for i in range(frames.shape[0]):
            if i % 16 == 0:
                bridge.check_interrupt()
            m = masks[min(i, len(masks) - 1)]
            blended = paste_back(source, frames[i].detach().cpu().float().numpy(), appearance.crop_box, m)
            out[i] = torch.from_numpy(pad_even(blended[None])[0].astype(np.float32) / 255.0)
            progress(i + 1)
        return (out,)


NODE_CLASS_MAPPINGS = {"HunyuanPortraitDecode": HunyuanPortraitDecode,
                       "HunyuanPortraitPasteBack": HunyuanPortraitPasteBack}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitDecode": "HunyuanPortrait Decode",
                              "HunyuanPortraitPasteBack": "HunyuanPortrait Paste Back"}
