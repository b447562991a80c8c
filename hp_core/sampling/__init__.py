"""Sampling math: sigma schedules, samplers, context windows, three-branch guidance, v-prediction scalings."""

from .guidance import combine, guidance_ramp, pad_frames, pad_motion, unpad
from .samplers import REGISTRY, SAMPLERS, STOCHASTIC_SAMPLERS, Cancelled, SamplerSpec, draw_noise, sample, step_reporter
from .schedules import SCHEDULES, custom_sigmas, get_sigmas
from .windows import merge_windows, validate_windows, window_indices, window_shift

__all__ = [
    "REGISTRY",
    "SAMPLERS",
    "SCHEDULES",
    "STOCHASTIC_SAMPLERS",
    "Cancelled",
    "SamplerSpec",
    "combine",
    "custom_sigmas",
    "draw_noise",
    "get_sigmas",
    "guidance_ramp",
    "merge_windows",
    "pad_frames",
    "pad_motion",
    "sample",
    "step_reporter",
    "unpad",
    "validate_windows",
    "window_indices",
    "window_shift",
]
