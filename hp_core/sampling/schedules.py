"""Noise-level (sigma) schedules in the k-diffusion convention: descending, one entry per step plus a final 0.

The release samples with Karras sigmas (rho 7) from 700 down to 0.002 and a final 0 in 25 steps; "karras"
with the defaults reproduces those float32 values bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import HPError

SCHEDULES: tuple[str, ...] = ("karras", "exponential", "ays_svd")

SIGMA_MIN, SIGMA_MAX = 0.002, 700.0  # SVD's noise range: the release's schedule runs from 700 down to 0.002

# Align Your Steps noise levels published by NVIDIA for Stable Video Diffusion (10 steps, 11 levels).
# The last level (sigma_min) is replaced by 0 so that the final step lands on the clean sample, which is
# how ComfyUI's AlignYourStepsScheduler uses the same table.
AYS_SVD_LEVELS: tuple[float, ...] = (
    700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002,
)


def get_sigmas(
    name: str | Sequence[float] | torch.Tensor,
    steps: int | None,
    sigma_min: float = SIGMA_MIN,
    sigma_max: float = SIGMA_MAX,
    rho: float = 7.0,
) -> torch.Tensor:
    """Sigmas (float32, shape [steps + 1], descending, last 0) for a named schedule or a user list."""
    if not isinstance(name, str):
        sigmas = custom_sigmas(name)
        if steps is not None and steps != len(sigmas) - 1:
            raise HPError(
                f"The sigma list gives {len(sigmas) - 1} steps but steps={steps} was asked for.",
                hint="Leave steps empty when passing your own sigmas, or make the two agree.",
            )
        return sigmas
    if name not in SCHEDULES:
        raise HPError(
            f"Unknown sigma schedule '{name}'.",
            hint=f"Choose one of: {', '.join(SCHEDULES)}, or pass a list of sigmas.",
        )
    steps = int(steps)  # checked at the entry point (Settings.problems)
    if name == "ays_svd":
        levels = _loglinear_resample(AYS_SVD_LEVELS, steps + 1)
        levels[-1] = 0.0
        return torch.tensor(levels, dtype=torch.float64).to(torch.float32)
    if not (0.0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise HPError(
            f"Need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}.",
            hint="The release uses sigma_min 0.002 and sigma_max 700.",
        )
    if name == "karras":
        if rho <= 0:
            raise HPError(f"rho must be positive, got {rho}.", hint="The release uses rho 7.")
        # Built in float64 numpy exactly as the release's scheduler does, then rounded to float32, so the
        # release's 25 sigmas come out bit-identical.
        ramp = np.linspace(0, 1, steps)
        hi = sigma_max ** (1 / rho)
        lo = sigma_min ** (1 / rho)
        levels = (hi + ramp * (lo - hi)) ** rho
    else:  # exponential: evenly spaced in log sigma
        levels = np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), steps))
    levels = np.concatenate([levels, [0.0]]).astype(np.float32)
    return torch.from_numpy(levels)


def check_sigma_values(vals: Sequence[float]) -> None:
    """The one rule for a sigma schedule: finite, positive, strictly descending; only the last may be 0."""
    if any(not math.isfinite(v) or v <= 0 for v in vals[:-1]) or not math.isfinite(vals[-1]) or vals[-1] < 0:
        raise HPError(
            "Sigmas must be finite and positive (only the last one may be 0).",
            hint="Remove zero, negative or infinite entries from the list.",
        )
    if any(b >= a for a, b in zip(vals, vals[1:])):
        raise HPError("Sigmas must be strictly descending.", hint="Sort the list from the largest noise level down.")


def custom_sigmas(values: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Validate a user sigma list (descending, positive, finite) and append the final 0 if missing."""
    try:
        if isinstance(values, torch.Tensor):
            vals = [float(v) for v in values.detach().flatten().cpu().tolist()]
        else:
            vals = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise HPError(f"Sigmas must be numbers: {exc}.", hint="Give a list like 14.6, 5.2, 1.1, 0.") from exc
    if not vals or (len(vals) == 1 and vals[0] == 0.0):
        raise HPError("The sigma list is empty.", hint="Give at least one positive sigma, e.g. 14.6, 1.1, 0.")
    if vals[-1] != 0.0:
        vals.append(0.0)
    check_sigma_values(vals)
    return torch.tensor(vals, dtype=torch.float32)


def _loglinear_resample(levels: Sequence[float], count: int) -> list[float]:
    """Resample a descending level table to `count` points, linear in log sigma over a [0, 1] step axis."""
    if count == len(levels):
        return [float(v) for v in levels]
    src_x = np.linspace(0.0, 1.0, len(levels))
    # np.interp wants increasing sample values, so interpolate the ascending (reversed) table.
    src_y = np.log(np.asarray(levels, dtype=np.float64)[::-1])
    new_y = np.interp(np.linspace(0.0, 1.0, count), src_x, src_y)
    return np.exp(new_y)[::-1].tolist()
