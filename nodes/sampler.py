"""SVD sampler with adapter attention injection: windowed three-branch guidance over the whole video."""

from __future__ import annotations

import torch

from hp_core.errors import HPError
from hp_core.options import OPTIONS, settings_from_widgets, widget_inputs
from hp_core.pipeline import VAE_SCALE, Settings, build_conditions, encode_reference, pose_condition, sample_latents
from hp_core.sampling import custom_sigmas, unpad

from . import bridge, comfy_sampler
from .sockets import APPEARANCE, MODELS, PERFORMANCE, POSE
from . import validate
from .validate import WIDGET_FIELDS, report, widget_problems

CATEGORY = "HunyuanPortrait"


def pose_frames(pose, frames: int, resolution: int) -> torch.Tensor | None:
    """HP_POSE -> (F, 3, R, R) uint8 for the pose guider, cut to the motion's frame count and resized in
    batches (4x less memory than floats; the denoiser scales it to [0, 1])."""
    if pose is None:
        return None
    if pose.num_frames < frames:
        raise HPError(f"The pose input has {pose.num_frames} frames but the motion has {frames}.",
                      hint="Feed the DWPose node from the same Face-Crop Motion Encoder as the motion extractor.")
    return pose_condition(pose.images[:frames], (resolution, resolution))


class HunyuanPortraitSampler:
    """Node: denoise the whole video with the appearance and motion conditions injected through attention."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "models": (MODELS, {"tooltip": "From HunyuanPortrait Load Models."}),
                "appearance": (APPEARANCE, {"tooltip": "From the IMAdapter Appearance Extractor."}),
                "performance": (PERFORMANCE, {"tooltip": "From the Intensity-Aware Motion Extractor, Motion Edit or "
                                                         "Load Performance."}),
                **widget_inputs(),  # every sampling setting, declared once in hp_core.options
            },
            "optional": {
                "pose": (POSE, {"tooltip": "Aligned skeletons from DWPose Alignment. Not connected: the release's "
                                           "blank pose images."}),
                "sampler": ("SAMPLER", {"tooltip": "Any ComfyUI sampler (e.g. KSamplerSelect); replaces "
                                                   "sampler_name."}),
                "sigmas": ("SIGMAS", {"tooltip": "Any ComfyUI noise schedule (e.g. AlignYourStepsScheduler with "
                                                 "model_type SVD); replaces scheduler, steps and denoise."}),
                **widget_inputs(optional=True),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, steps=None, denoise=None, seed=None, context_window=None, context_overlap=None,
                        shift=None, padding=None):
        """Refuse impossible widget combinations (overlap >= window, ...) when the prompt is queued: the
        message (what to set first), or inside ComfyUI an HPError so that ComfyUI shows it once (validate.py).
        ComfyUI passes the inputs this signature names: validate.QUEUE_CHECKED (a test keeps them equal)."""
        values = dict(steps=steps, denoise=denoise, seed=seed, context_window=context_window,
                      context_overlap=context_overlap, shift=shift, padding=padding)
        return report(widget_problems(cls.INPUT_TYPES()["required"], values))

    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised latents of every driving frame (F, 4, R/8, R/8), padding removed (kept "
                       "aside for HunyuanPortrait Decode, which decodes as the release does).",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Samples the video with the SVD UNet whose cross-attention carries the appearance tokens and, "
                   "through the motion adapters, the motion tokens. Three-branch guidance (uncond, appearance, "
                   "appearance + motion) with separate appearance and motion CFG, context windows for long "
                   "videos. Shows a progress bar and a preview of the middle frame per step; Cancel stops between steps.")

    OPTIONS = OPTIONS  # the widgets that arrive as **widgets

    def sample(self, models, appearance, performance, pose=None, sampler=None, sigmas=None, **widgets):
        frames = performance.frames
        if performance.preset != models.preset:
            raise HPError(f"The performance was made with the {performance.preset} models, and the {models.preset} "
                          "models are loaded.", action=f"Set the loader's preset to {performance.preset}, or extract "
                                                       "the performance again with these models.")
        problems = widget_problems(self.INPUT_TYPES()["required"], {k: widgets.get(k) for k in WIDGET_FIELDS})
        if problems is not True:  # widgets fed by links reach here unchecked
            raise HPError(str(problems))
        resolution = appearance.resolution
        settings = settings_from_widgets(widgets, height=resolution, width=resolution)
        settings.validate()
        schedule = custom_sigmas(sigmas) if sigmas is not None else None
        total = (len(schedule) if schedule is not None else len(settings.sigma_schedule())) - 1
        progress = bridge.Progress(total)
        cond_latents = self.conditioning_latents(models, appearance, settings)
        conditions = build_conditions(appearance.tokens, performance.tokens, cond_latents,
                                      pose_frames(pose, frames, resolution), settings)
        run = comfy_sampler.sampler_function(sampler) if sampler is not None else None
        with bridge.readable_errors("sampling", "context_window (e.g. 16), the resolution or the precision"):
            padded = sample_latents(models, conditions, appearance.ref_latents, settings, progress=progress,
                                    should_cancel=bridge.interrupted, sampler_fn=run, sigmas=schedule,
                                    keep_padding=True, preview=progress.preview)
        return (latent_output(padded, settings.pad),)

    @staticmethod
    def conditioning_latents(models, appearance, settings: Settings) -> torch.Tensor:
        """The appearance's conditioning latents, or with noise_aug > 0 those of the noised reference."""
        if settings.noise_aug <= 0:
            return appearance.cond_latents
        if appearance.reference is None:
            raise HPError("noise_aug needs the reference image, which this appearance input does not carry.",
                          hint="Connect the HunyuanPortrait Appearance Extractor, or set noise_aug to 0.")
        with bridge.readable_errors("noise augmentation", "the resolution or precision"):
            return encode_reference(models, appearance.reference, settings.noise_aug, settings.seed)[1]


def latent_output(padded: torch.Tensor, pad: int) -> dict:
    """ComfyUI LATENT of a padded sampled sequence (pad + F + pad, 4, h, w), scaled latents.

    ``samples`` holds exactly the F output frames as raw VAE latents (ComfyUI's samplers apply the 0.18215
    scale inside), so core VAE Decode with an SVD VAE reads it; ``hp_padding`` keeps the padding frames on
    either side ({"before", "after"}, raw latents), which HunyuanPortrait Decode puts back to decode with
    the release's chunk alignment.
    """
    raw = padded / VAE_SCALE
    return {"samples": unpad(raw, pad), "hp_padding": {"before": raw[:pad], "after": raw[raw.shape[0] - pad:]}}


def _queue_check(values: dict) -> str | bool:
    """The sampler's widget check on a posted prompt's literal values (validate.register)."""
    return widget_problems(HunyuanPortraitSampler.INPUT_TYPES()["required"],
                           {k: values.get(k) for k in WIDGET_FIELDS})


validate.register("HunyuanPortraitSampler", _queue_check)

NODE_CLASS_MAPPINGS = {"HunyuanPortraitSampler": HunyuanPortraitSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitSampler": "HunyuanPortrait Sampler (SVD + Adapter Attention)"}
