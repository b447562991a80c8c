"""Letting a ComfyUI SAMPLER (e.g. from KSamplerSelect) drive the portrait denoiser.

ComfyUI's KSAMPLER objects carry ``sampler_function(model, x, sigmas, extra_args, callback, disable,
**extra_options)`` in the k-diffusion convention, which is also ours. Some of those functions look
through the model for its noise parametrisation (``model.inner_model.inner_model.model_sampling`` or
``model.inner_model.model_patcher.get_model_object("model_sampling")``); the wrapper below answers
those with SVD's: continuous EDM sigmas (0.002 .. 700) with v-prediction.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Callable

import torch

from hp_core.errors import HPError
from hp_core.sampling import REGISTRY, sample
from hp_core.sampling.schedules import SIGMA_MAX, SIGMA_MIN

from . import bridge


class _PlainEDMSampling:
    """Stand-in for ComfyUI's model_sampling object when ComfyUI is not importable (tests, scripts)."""

    sigma_min = SIGMA_MIN
    sigma_max = SIGMA_MAX
    sigma_data = 1.0

    def noise_scaling(self, sigma, noise, latent_image, max_denoise=False):
        return latent_image + noise * sigma

    def inverse_noise_scaling(self, sigma, latent):
        return latent

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        lo = math.log(self.sigma_min)
        return math.exp((math.log(self.sigma_max) - lo) * (1.0 - percent) + lo)


def model_sampling():
    """SVD's noise parametrisation as ComfyUI's samplers expect to find it (a plain stand-in without ComfyUI)."""
    sampling = bridge.ComfyInternals.svd_model_sampling(SIGMA_MIN, SIGMA_MAX)
    return sampling if sampling is not None else _PlainEDMSampling()


class _Patcher:
    def __init__(self, sampling):
        self._sampling = sampling

    def get_model_object(self, name: str):
        if name == "model_sampling":
            return self._sampling
        raise AttributeError(name)


class ComfyDenoiser:
    """Our windowed guidance denoiser with the attributes ComfyUI's sampler functions look up."""

    def __init__(self, denoiser: Callable[..., torch.Tensor], sampling=None):
        self.denoiser = denoiser
        sampling = sampling if sampling is not None else model_sampling()
        self.inner_model = SimpleNamespace(inner_model=SimpleNamespace(model_sampling=sampling),
                                           model_patcher=_Patcher(sampling), model_sampling=sampling)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra) -> torch.Tensor:
        options = extra.get("model_options") or {}
        if options.get("sampler_post_cfg_function") or options.get("sampler_cfg_function"):
            # CFG++ style samplers read ComfyUI's own cond/uncond split, which this three-branch
            # guidance does not produce.
            raise HPError("This ComfyUI sampler (a CFG++ variant) needs ComfyUI's own CFG and cannot drive "
                          "HunyuanPortrait's appearance/motion guidance.",
                          hint="Pick a sampler without _cfg_pp in its name.")
        return self.denoiser(x, sigma)


def sampler_function(sampler):
    """The k-diffusion style function (``fn(model, x, sigmas, extra_args=None, callback=None, disable=None)``)
    that hp_core.pipeline.sample_latents takes as ``sampler_fn``, running a ComfyUI SAMPLER on our
    denoiser with the SAMPLER's own options."""
    function = getattr(sampler, "sampler_function", None)
    if function is None and not callable(getattr(sampler, "sample", None)):
        raise HPError(f"The SAMPLER input ({type(sampler).__name__}) is not a k-diffusion style ComfyUI sampler.",
                      hint="Connect KSamplerSelect or another node that outputs a KSAMPLER.")
    if hasattr(sampler, "extra_options"):
        options = dict(sampler.extra_options or {})
    else:
        bridge.fall_back(EXTRA_OPTIONS)
        options = {}

    def run(model, x: torch.Tensor, sigmas: torch.Tensor, extra_args=None, callback=None, disable=None):
        wrapped = ComfyDenoiser(model)
        if function is None:  # a ComfyUI SAMPLER without the k-diffusion function it used to carry
            bridge.fall_back(SAMPLER_FUNCTION)
        else:
            err = bridge._signature_error(function, (wrapped, x, sigmas),
                                          dict(extra_args=extra_args, callback=callback, disable=disable, **options))
            if err is None:
                return function(wrapped, x, sigmas, extra_args=extra_args, callback=callback, disable=disable,
                                **options)
            bridge.fall_back(SAMPLER_FUNCTION, err)
        return builtin_fallback(function, model, x, sigmas, extra_args, callback)

    return run


def builtin_fallback(function, model, x: torch.Tensor, sigmas: torch.Tensor, extra_args=None, callback=None):
    """The pack's own sampler named like the SAMPLER's function (``sample_dpmpp_2m`` -> dpmpp_2m), else
    euler, seeded as the sampler node seeds its built-in samplers."""

    name = getattr(function, "__name__", "").removeprefix("sample_")
    name = name if name in REGISTRY else "euler"
    seed = int((extra_args or {}).get("seed", 0))
    generator = torch.Generator("cpu").manual_seed((seed + 1) % 2**64)
    return sample(name, model, x, sigmas, generator=generator, callback=callback)


SAMPLER_FUNCTION = "comfy.samplers.KSAMPLER.sampler_function"
EXTRA_OPTIONS = "comfy.samplers.KSAMPLER.extra_options"


__all__ = ["ComfyDenoiser", "model_sampling", "sampler_function"]
