"""Sampling math: sigma schedules, samplers, context windows, three-branch guidance, v-prediction scalings."""

from .guidance import combine, guidance_ramp, pad_frames, pad_motion, unpad
from .samplers import SAMPLERS, STOCHASTIC_SAMPLERS, Cancelled, draw_noise, sample
from .schedules import SCHEDULES, custom_sigmas, get_sigmas
from .windows import merge_windows, validate_windows, window_indices, window_shift

__all__ = [
    "SAMPLERS",
    "SCHEDULES",
    "STOCHASTIC_SAMPLERS",
    "Cancelled",
    "combine",
    "custom_sigmas",
    "draw_noise",
    "get_sigmas",
    "guidance_ramp",
    "merge_windows",
    "pad_frames",
    "pad_motion",
    "sample",
    "unpad",
    "validate_windows",
    "window_indices",
    "window_shift",
]
