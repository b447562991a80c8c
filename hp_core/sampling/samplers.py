"""ODE/SDE samplers in the k-diffusion convention: x = x0 + sigma * noise, model(x, sigma, **extra) -> x0 estimate.

One registry, ``REGISTRY``: name -> ``SamplerSpec`` (the function, its options with their defaults, whether it
draws fresh noise). Each function has k-diffusion's signature, the one ComfyUI's KSAMPLER calls::

    fn(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)

so a built-in sampler can equally be handed to ComfyUI (``comfy.samplers.KSAMPLER(spec.function,
extra_options=dict(spec.options))``). ``x`` already carries noise at sigmas[0]; the model is called as
``model(x, s, **extra_args)`` with ``s`` a 1-D tensor of shape [x.shape[0]] holding the current sigma. After
each step the callback gets k-diffusion's dict ``{"x", "i", "sigma", "sigma_hat", "denoised"}`` ("x" is the
sample the step started from, "denoised" the model's estimate at it). Stochastic samplers take
``noise_sampler(sigma, sigma_next) -> noise``; without one they seed their noise from ``extra_args["seed"]``
as ComfyUI's do. ``sample`` is the checked entry point: options, sigmas, a seeded generator, cancel.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch

from ..errors import HPError
from .schedules import check_sigma_values

Denoiser = Callable[..., torch.Tensor]
StepCallback = Callable[[dict], None]
NoiseSampler = Callable[[Any, Any], torch.Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered sampler: its k-diffusion style function, its options (with defaults), its randomness."""

    function: Callable[..., torch.Tensor]
    options: Mapping[str, float] = field(default_factory=dict)
    stochastic: bool = False  # draws fresh noise every step: takes noise_sampler, needs a seed


REGISTRY: dict[str, SamplerSpec] = {}


def _register(name: str, options: Mapping[str, float] | None = None, stochastic: bool = False):
    def add(function):
        REGISTRY[name] = SamplerSpec(function, MappingProxyType(dict(options or {})), stochastic)
        return function
    return add


class Cancelled(HPError):
    """Sampling was stopped between two steps because the caller asked to cancel."""

    def __init__(self, step: int, total: int):
        self.step = step
        self.total = total
        super().__init__(f"Sampling was cancelled before step {step + 1} of {total}.")


def draw_noise(generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal noise shaped like `like`, drawn on the generator's device, returned on like's device/dtype."""
    # Drawing in float32 on the generator's own device makes the noise depend only on the seed and shape:
    # a CPU generator works for latents on any device, and fp16/fp32 runs see the same values.
    noise = torch.randn(like.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=like.device, dtype=like.dtype)


def generator_noise(generator: torch.Generator, like: torch.Tensor) -> NoiseSampler:
    """A k-diffusion noise_sampler drawing from ``generator`` (see draw_noise)."""
    return lambda _sigma, _sigma_next: draw_noise(generator, like)


def step_reporter(total: int, progress: Callable[[int, int], None] | None = None,
                  preview: Callable[[int, int, torch.Tensor], None] | None = None) -> StepCallback | None:
    """A k-diffusion callback that reports ``progress(done, total)`` and ``preview(done, total, denoised)``."""
    if progress is None and preview is None:
        return None

    def callback(info: dict) -> None:
        done = int(info["i"]) + 1
        if progress is not None:
            progress(done, total)
        if preview is not None and info.get("denoised") is not None:
            preview(done, total, info["denoised"])

    return callback


def sample(
    name: str,
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    callback: StepCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
    extra_args: dict[str, Any] | None = None,
    **options: float,
) -> torch.Tensor:
    """Run sampler `name` over `sigmas` (1-D, descending) from the noisy `x`; returns the final sample.

    Checks the options and sigmas first; stochastic samplers draw from ``generator`` (required);
    ``should_cancel()`` is asked before every step and raises ``Cancelled`` there."""
    spec = REGISTRY.get(name)
    if spec is None:
        raise HPError(f"Unknown sampler '{name}'.", hint=f"Choose one of: {', '.join(REGISTRY)}.")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        accepted = ", ".join(spec.options) if spec.options else "none"
        raise HPError(
            f"Sampler '{name}' does not take option(s) {', '.join(unknown)}.",
            hint=f"Options it accepts: {accepted}.",
        )
    opts = {**spec.options, **{k: float(v) for k, v in options.items()}}
    if any(v < 0 or not math.isfinite(v) for v in opts.values()):
        raise HPError(f"Sampler options must be finite and >= 0, got {opts}.", hint="Use eta/s_noise between 0 and 1.")
    _check_sigmas(sigmas)
    if spec.stochastic:
        if generator is None:
            raise HPError(
                f"Sampler '{name}' adds fresh noise every step and needs a seeded torch.Generator.",
                hint="Pass generator=torch.Generator().manual_seed(seed).",
            )
        opts["noise_sampler"] = generator_noise(generator, x)
    total = len(sigmas) - 1
    if should_cancel is not None and should_cancel():
        raise Cancelled(0, total)

    def report(info: dict) -> None:
        if callback is not None:
            callback(info)
        step = int(info["i"]) + 1
        if should_cancel is not None and step < total and should_cancel():
            raise Cancelled(step, total)

    return spec.function(model, x, sigmas, extra_args=extra_args, callback=report, disable=True, **opts)


def _check_sigmas(sigmas: torch.Tensor) -> None:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise HPError(
            "Sigmas must be a 1-D tensor with at least two entries (start and end noise level).",
            hint="Build them with hp_core.sampling.get_sigmas.",
        )
    check_sigma_values(sigmas.detach().double().cpu().tolist())


class _Loop:
    """What every sampler loop needs: the model call, the per-step report and sigma access."""

    def __init__(self, model, x, sigmas, extra_args, callback):
        self.model = model
        self.callback = callback
        self.extra_args = extra_args or {}
        # 0-d sigma tensors on the CPU, used in the update arithmetic exactly like the release's scheduler.
        self.sigmas = sigmas.detach().to("cpu")
        self.model_sigmas = sigmas.detach().to(x.device)
        self.batch = x.shape[0] if x.ndim > 0 else 1
        self.total = len(sigmas) - 1

    def steps(self) -> range:
        return range(self.total)

    def denoise(self, x: torch.Tensor, i: int) -> torch.Tensor:
        s = self.model_sigmas[i].reshape(1).repeat(self.batch)
        return self.model(x, s, **self.extra_args)

    def report(self, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if self.callback is not None:
            sigma = self.model_sigmas[i]
            self.callback({"x": x, "i": i, "sigma": sigma, "sigma_hat": sigma, "denoised": denoised})

    def f(self, i: int) -> float:
        return float(self.sigmas[i])


def seeded_noise(x: torch.Tensor, extra_args: dict | None) -> NoiseSampler:
    """k-diffusion's default noise_sampler: seeded from extra_args["seed"] (as ComfyUI passes it), else
    torch's global generator."""
    seed = (extra_args or {}).get("seed")
    if seed is None:
        return lambda _sigma, _sigma_next: torch.randn_like(x)
    return generator_noise(torch.Generator("cpu").manual_seed(int(seed)), x)


@_register("euler")
def sample_euler(model, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
    """Plain Euler on the probability-flow ODE, no churn: the release's sampler."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    for i in run.steps():
        sigma, sigma_next = run.sigmas[i], run.sigmas[i + 1]
        denoised = run.denoise(x, i)
        d = (x - denoised) / sigma
        x_in, x = x, x + d * (sigma_next - sigma)
        run.report(i, x_in, denoised)
    return x


def _ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step to sigma_next into a deterministic part (down to sigma_down) and fresh noise sigma_up."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    down = math.sqrt(sigma_next**2 - up**2)
    return down, up


@_register("euler_ancestral", {"eta": 1.0, "s_noise": 1.0}, stochastic=True)
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                           noise_sampler=None) -> torch.Tensor:
    """Euler with ancestral noise: a deterministic step down to sigma_down, then fresh noise up to sigma_next."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    noise_sampler = noise_sampler or seeded_noise(x, extra_args)
    for i in run.steps():
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        down, up = _ancestral_split(sigma, sigma_next, eta)
        x_in, x = x, x + (x - denoised) / sigma * (down - sigma)
        if up > 0:
            x = x + noise_sampler(sigma, sigma_next) * (s_noise * up)
        run.report(i, x_in, denoised)
    return x


@_register("heun")
def sample_heun(model, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
    """Heun's second-order method (EDM Algorithm 1 without churn); the step to sigma 0 is a plain Euler step."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    for i in run.steps():
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        d = (x - denoised) / sigma
        dt = sigma_next - sigma
        x_in = x
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_pred = x + d * dt
            d_next = (x_pred - run.denoise(x_pred, i + 1)) / sigma_next
            x = x + (d + d_next) * (dt / 2)
        run.report(i, x_in, denoised)
    return x


@_register("dpmpp_2m")
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
    """DPM-Solver++(2M) in log-sigma time t = -ln(sigma): second order from the previous step's estimate."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    old_denoised = None
    h_last = None
    for i in run.steps():
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        x_in = x
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            if old_denoised is None:
                blended = denoised
            else:
                r = h_last / h
                blended = denoised * (1 + 1 / (2 * r)) - old_denoised * (1 / (2 * r))
            x = x * (sigma_next / sigma) + blended * (-math.expm1(-h))
            h_last = h
        old_denoised = denoised
        run.report(i, x_in, denoised)
    return x


@_register("dpmpp_2m_sde", {"eta": 1.0, "s_noise": 1.0}, stochastic=True)
def sample_dpmpp_2m_sde(model, x, sigmas, extra_args=None, callback=None, disable=None, eta=1.0, s_noise=1.0,
                        noise_sampler=None) -> torch.Tensor:
    """DPM-Solver++(2M) SDE, midpoint variant, with plain Gaussian noise instead of a Brownian tree."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    noise_sampler = noise_sampler or seeded_noise(x, extra_args)
    old_denoised = None
    h_last = None
    for i in run.steps():
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        x_in = x
        if sigma_next == 0:
            x = denoised
        else:
            h = math.log(sigma) - math.log(sigma_next)
            eta_h = eta * h
            gain = -math.expm1(-h - eta_h)
            x = x * (sigma_next / sigma * math.exp(-eta_h)) + denoised * gain
            if old_denoised is not None:
                r = h_last / h
                x = x + (denoised - old_denoised) * (0.5 * gain / r)
            if eta > 0 and s_noise > 0:
                noise = noise_sampler(sigma, sigma_next)
                x = x + noise * (sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
            h_last = h
        old_denoised = denoised
        run.report(i, x_in, denoised)
    return x


@_register("lcm", {"s_noise": 1.0}, stochastic=True)
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0,
               noise_sampler=None) -> torch.Tensor:
    """Latent-consistency style: jump to the clean estimate, then re-noise to the next level."""
    run = _Loop(model, x, sigmas, extra_args, callback)
    noise_sampler = noise_sampler or seeded_noise(x, extra_args)
    for i in run.steps():
        sigma_next = run.f(i + 1)
        denoised = run.denoise(x, i)
        x_in, x = x, denoised
        if sigma_next > 0 and s_noise > 0:
            x = x + noise_sampler(run.f(i), sigma_next) * (sigma_next * s_noise)
        run.report(i, x_in, denoised)
    return x


SAMPLERS: tuple[str, ...] = tuple(REGISTRY)
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset(name for name, spec in REGISTRY.items() if spec.stochastic)
