"""ODE/SDE samplers in the k-diffusion convention: x = x0 + sigma * noise, model(x, sigma, **extra) -> x0 estimate.

`x` must already carry noise at sigmas[0]. The model is called as model(x, s, **extra_args) where s is a
1-D tensor of shape [x.shape[0]] holding the current sigma (same dtype as `sigmas`, on x's device), the
signature k-diffusion and ComfyUI use. All randomness comes from the caller's torch.Generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..errors import HPError

Denoiser = Callable[..., torch.Tensor]
StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]

SAMPLERS: tuple[str, ...] = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "lcm")
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset({"euler_ancestral", "dpmpp_2m_sde", "lcm"})

# Options each sampler accepts, with their defaults.
_OPTIONS: dict[str, dict[str, float]] = {
    "euler": {},
    "euler_ancestral": {"eta": 1.0, "s_noise": 1.0},
    "heun": {},
    "dpmpp_2m": {},
    "dpmpp_2m_sde": {"eta": 1.0, "s_noise": 1.0},
    "lcm": {"s_noise": 1.0},
}


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
    """Run sampler `name` over `sigmas` (1-D, descending) from the noisy `x`; returns the final sample."""
    if name not in _SAMPLER_FNS:
        raise HPError(f"Unknown sampler '{name}'.", hint=f"Choose one of: {', '.join(SAMPLERS)}.")
    allowed = _OPTIONS[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        accepted = ", ".join(allowed) if allowed else "none"
        raise HPError(
            f"Sampler '{name}' does not take option(s) {', '.join(unknown)}.",
            hint=f"Options it accepts: {accepted}.",
        )
    opts = {**allowed, **{k: float(v) for k, v in options.items()}}
    if any(v < 0 or not math.isfinite(v) for v in opts.values()):
        raise HPError(f"Sampler options must be finite and >= 0, got {opts}.", hint="Use eta/s_noise between 0 and 1.")
    _check_sigmas(sigmas)
    if name in STOCHASTIC_SAMPLERS and generator is None:
        raise HPError(
            f"Sampler '{name}' adds fresh noise every step and needs a seeded torch.Generator.",
            hint="Pass generator=torch.Generator().manual_seed(seed).",
        )
    run = _Run(model, x, sigmas, callback, should_cancel, extra_args or {})
    return _SAMPLER_FNS[name](run, x, generator, **opts)


def _check_sigmas(sigmas: torch.Tensor) -> None:
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or sigmas.numel() < 2:
        raise HPError(
            "Sigmas must be a 1-D tensor with at least two entries (start and end noise level).",
            hint="Build them with hp_core.sampling.get_sigmas.",
        )
    vals = sigmas.detach().double().cpu()
    if not bool(torch.isfinite(vals).all()) or bool((vals[:-1] <= 0).any()) or float(vals[-1]) < 0:
        raise HPError("Sigmas must be finite, positive, and only the last may be 0.", hint="Check the sigma list.")
    if bool((vals[1:] >= vals[:-1]).any()):
        raise HPError("Sigmas must be strictly descending.", hint="Sort them from the largest noise level down.")


class _Run:
    """What every sampler loop needs: the model call, the per-step hooks and sigma access."""

    def __init__(self, model, x, sigmas, callback, should_cancel, extra_args):
        self.model = model
        self.callback = callback
        self.should_cancel = should_cancel
        self.extra_args = extra_args
        # 0-d sigma tensors on the CPU, used in the update arithmetic exactly like the release's scheduler.
        self.sigmas = sigmas.detach().to("cpu")
        self.model_sigmas = sigmas.detach().to(x.device)
        self.batch = x.shape[0] if x.ndim > 0 else 1
        self.total = len(sigmas) - 1

    def steps(self) -> range:
        return range(self.total)

    def check_cancel(self, i: int) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(i, self.total)

    def denoise(self, x: torch.Tensor, i: int) -> torch.Tensor:
        s = self.model_sigmas[i].reshape(1).repeat(self.batch)
        return self.model(x, s, **self.extra_args)

    def report(self, i: int, x: torch.Tensor, denoised: torch.Tensor) -> None:
        if self.callback is not None:
            self.callback(i, self.total, x, denoised)

    def f(self, i: int) -> float:
        return float(self.sigmas[i])


def _euler(run: _Run, x: torch.Tensor, generator) -> torch.Tensor:
    # Plain Euler on the probability-flow ODE, no churn: the release's sampler.
    for i in run.steps():
        run.check_cancel(i)
        sigma, sigma_next = run.sigmas[i], run.sigmas[i + 1]
        denoised = run.denoise(x, i)
        d = (x - denoised) / sigma
        x = x + d * (sigma_next - sigma)
        run.report(i, x, denoised)
    return x


def _ancestral_split(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """Split a step to sigma_next into a deterministic part (down to sigma_down) and fresh noise sigma_up."""
    if sigma_next == 0 or eta == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    down = math.sqrt(sigma_next**2 - up**2)
    return down, up


def _euler_ancestral(run: _Run, x, generator, *, eta: float, s_noise: float) -> torch.Tensor:
    for i in run.steps():
        run.check_cancel(i)
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        down, up = _ancestral_split(sigma, sigma_next, eta)
        x = x + (x - denoised) / sigma * (down - sigma)
        if up > 0:
            x = x + draw_noise(generator, x) * (s_noise * up)
        run.report(i, x, denoised)
    return x


def _heun(run: _Run, x, generator) -> torch.Tensor:
    # Heun's second-order method (EDM Algorithm 1 without churn); the step to sigma 0 is a plain Euler step.
    for i in run.steps():
        run.check_cancel(i)
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
        d = (x - denoised) / sigma
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = x + d * dt
        else:
            x_pred = x + d * dt
            d_next = (x_pred - run.denoise(x_pred, i + 1)) / sigma_next
            x = x + (d + d_next) * (dt / 2)
        run.report(i, x, denoised)
    return x


def _dpmpp_2m(run: _Run, x, generator) -> torch.Tensor:
    # DPM-Solver++(2M) in log-sigma time t = -ln(sigma): second order from the previous step's estimate.
    old_denoised = None
    h_last = None
    for i in run.steps():
        run.check_cancel(i)
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
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
        run.report(i, x, denoised)
    return x


def _dpmpp_2m_sde(run: _Run, x, generator, *, eta: float, s_noise: float) -> torch.Tensor:
    # DPM-Solver++(2M) SDE, midpoint variant, with plain Gaussian noise instead of a Brownian tree.
    old_denoised = None
    h_last = None
    for i in run.steps():
        run.check_cancel(i)
        sigma, sigma_next = run.f(i), run.f(i + 1)
        denoised = run.denoise(x, i)
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
                x = x + draw_noise(generator, x) * (sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
            h_last = h
        old_denoised = denoised
        run.report(i, x, denoised)
    return x


def _lcm(run: _Run, x, generator, *, s_noise: float) -> torch.Tensor:
    # Latent-consistency style: jump to the clean estimate, then re-noise to the next level.
    for i in run.steps():
        run.check_cancel(i)
        sigma_next = run.f(i + 1)
        denoised = run.denoise(x, i)
        x = denoised
        if sigma_next > 0 and s_noise > 0:
            x = x + draw_noise(generator, x) * (sigma_next * s_noise)
        run.report(i, x, denoised)
    return x


_SAMPLER_FNS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": _euler,
    "euler_ancestral": _euler_ancestral,
    "heun": _heun,
    "dpmpp_2m": _dpmpp_2m,
    "dpmpp_2m_sde": _dpmpp_2m_sde,
    "lcm": _lcm,
}
assert tuple(_SAMPLER_FNS) == SAMPLERS
