"""SVD sampler with adapter attention injection: windowed three-branch guidance over the whole video."""

from __future__ import annotations

import torch

from hp_core.errors import HPError
from hp_core.pipeline import SEED_MAX, VAE_SCALE, Settings, build_conditions, encode_reference, pose_condition, sample_latents
from hp_core.sampling import SAMPLERS, SCHEDULES, custom_sigmas, unpad

from . import bridge, comfy_sampler
from .sockets import APPEARANCE, MODELS, PERFORMANCE, POSE
from . import validate
from .validate import WIDGET_FIELDS, report, widget_problems

CATEGORY = "HunyuanPortrait"
RELEASE = Settings()


def _cfg(default: float, what: str) -> tuple:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 20.0, "step": 0.05, "round": 0.01, "tooltip": what})


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
                "sampler_name": (list(SAMPLERS), {"default": RELEASE.sampler, "tooltip":
                                 "Built-in sampler. euler = the release. dpmpp_2m or lcm reach good results in "
                                 "fewer steps. Ignored when a SAMPLER is connected."}),
                "scheduler": (list(SCHEDULES), {"default": RELEASE.schedule, "tooltip":
                              "Noise levels: karras (700 -> 0.002, rho 7) = the release; ays_svd = Align Your "
                              "Steps for SVD, good at 8-12 steps; exponential. Ignored when SIGMAS is connected."}),
                "steps": ("INT", {"default": RELEASE.steps, "min": 1, "max": 200, "tooltip":
                          "Denoising steps (the release: 25). Ignored when SIGMAS is connected."}),
                "appearance_cfg_min": _cfg(RELEASE.appearance_cfg[0], "Appearance guidance at the first step: "
                                           "how strongly the result follows the source portrait (release: 2)."),
                "appearance_cfg_max": _cfg(RELEASE.appearance_cfg[1], "Appearance guidance at the last step "
                                           "(ramped linearly from min; release: 2)."),
                "motion_cfg_min": _cfg(RELEASE.motion_cfg[0], "Motion guidance at the first step: how strongly "
                                       "the result follows the driving expressions and head pose (release: 2)."),
                "motion_cfg_max": _cfg(RELEASE.motion_cfg[1], "Motion guidance at the last step (release: 2)."),
                "seed": ("INT", {"default": RELEASE.seed, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                         "tooltip": "Seed of the starting noise (and of the noise stochastic samplers add)."}),
                "denoise": ("FLOAT", {"default": RELEASE.denoise, "min": 0.01, "max": 1.0, "step": 0.01, "tooltip":
                            "Fraction of the schedule run, starting from the source latents (1.0 = the release)."}),
                "context_window": ("INT", {"default": RELEASE.window, "min": 1, "max": 128, "tooltip":
                                   "Frames the UNet sees at once (release: 25). Lower it if you run out of "
                                   "memory; long videos are covered by overlapping windows."}),
                "context_overlap": ("INT", {"default": RELEASE.overlap, "min": 0, "max": 127, "tooltip":
                                    "Frames shared by neighbouring windows (release: 3). More overlap = smoother "
                                    "transitions, slower. Must be smaller than the window."}),
                "shift": ("INT", {"default": RELEASE.shift, "min": 0, "max": 128, "tooltip":
                          "How far the windows move each step (release: 3), so window seams never stay put."}),
                "padding": ("INT", {"default": RELEASE.pad, "min": 0, "max": 64, "tooltip":
                            "Frames added before and after the video (motion ramping in and out of the source "
                            "pose, release: 15); cut from the result."}),
                "motion_scale": ("FLOAT", {"default": RELEASE.motion_scale, "min": 0.0, "max": 3.0, "step": 0.05,
                                 "tooltip": "Strength of the motion adapters' attention (1.0 = the release). "
                                            "Below 1 calms the motion, above 1 exaggerates it."}),
                "noise_aug": ("FLOAT", {"default": RELEASE.noise_aug, "min": 0.0, "max": 1.0, "step": 0.01,
                              "tooltip": "Noise added to the source before its conditioning latents are encoded "
                                         "(seeded by seed), and told to the UNet (0 = the release). Higher "
                                         "loosens the likeness to the source."}),
            },
            "optional": {
                "pose": (POSE, {"tooltip": "Aligned skeletons from DWPose Alignment. Not connected: the release's "
                                           "blank pose images."}),
                "sampler": ("SAMPLER", {"tooltip": "Any ComfyUI sampler (e.g. KSamplerSelect); replaces "
                                                   "sampler_name."}),
                "sigmas": ("SIGMAS", {"tooltip": "Any ComfyUI noise schedule (e.g. AlignYourStepsScheduler with "
                                                 "model_type SVD); replaces scheduler, steps and denoise."}),
                "branch_mode": (["auto", "batched", "sequential"], {"default": "auto", "tooltip":
                                "The three guidance branches as one batch, or one after another (a third of the "
                                "activation memory, the same result). auto: sequential when the memory estimate "
                                "says the batch will not fit."}),
                "guidance_sigma_low": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01, "tooltip":
                                       "Guidance interval (off while high is 0): guidance only on steps whose sigma "
                                       "lies in [low, high]; other steps run one UNet evaluation instead of three."}),
                "guidance_sigma_high": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1000.0, "step": 0.01,
                                        "tooltip": "Upper sigma of the guidance interval; 0 = guidance on every step "
                                                   "(the release)."}),
                "attention": (["auto", "flash", "efficient", "math", "cudnn"], {"default": "auto", "tooltip":
                              "PyTorch attention backend for the UNet (auto lets PyTorch choose; math uses the "
                              "most memory)."}),
                "compile_unet": ("BOOLEAN", {"default": False, "tooltip": "torch.compile the UNet (CUDA): faster "
                                 "steps after a slow first one."}),
            },
        }

    @classmethod
    def VALIDATE_INPUTS(cls, steps=None, denoise=None, seed=None, context_window=None, context_overlap=None,
                        shift=None, padding=None):
        """Refuse impossible widget combinations (overlap >= window, ...) when the prompt is queued: the
        message (what to set first), or inside ComfyUI an HPError so that ComfyUI shows it once (validate.py)."""
        return report(widget_problems(cls.INPUT_TYPES()["required"], dict(
            steps=steps, denoise=denoise, seed=seed, context_window=context_window,
            context_overlap=context_overlap, shift=shift, padding=padding)))

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

    def sample(self, models, appearance, performance, sampler_name, scheduler, steps, appearance_cfg_min,
               appearance_cfg_max, motion_cfg_min, motion_cfg_max, seed, denoise, context_window, context_overlap,
               shift, padding, motion_scale, noise_aug, pose=None, sampler=None, sigmas=None, branch_mode=None,
               guidance_sigma_low=None, guidance_sigma_high=None, attention=None, compile_unet=None):
        frames = performance.frames
        if performance.preset != models.preset:
            raise HPError(f"The performance was made with the {performance.preset} models, and the {models.preset} "
                          "models are loaded.", action=f"Set the loader's preset to {performance.preset}, or extract "
                                                       "the performance again with these models.")
        problems = widget_problems(self.INPUT_TYPES()["required"], dict(
            steps=steps, denoise=denoise, seed=seed, context_window=context_window,
            context_overlap=context_overlap, shift=shift, padding=padding))
        if problems is not True:  # widgets fed by links reach here unchecked
            raise HPError(str(problems))
        resolution = appearance.resolution
        settings = Settings(steps=int(steps), sampler=sampler_name, schedule=scheduler,
                            appearance_cfg=(float(appearance_cfg_min), float(appearance_cfg_max)),
                            motion_cfg=(float(motion_cfg_min), float(motion_cfg_max)), denoise=float(denoise),
                            seed=int(seed), window=int(context_window), overlap=int(context_overlap),
                            shift=int(shift), pad=int(padding), motion_scale=float(motion_scale),
                            noise_aug=float(noise_aug), height=resolution, width=resolution, branch_mode=branch_mode or "auto",
                            guidance_interval=((float(guidance_sigma_low or 0.0), float(guidance_sigma_high))
                                               if guidance_sigma_high else None),
                            sdpa_backend=attention or "auto", compile_unet=bool(compile_unet))
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
