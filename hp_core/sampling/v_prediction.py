"""EDM preconditioning for SVD's v-prediction UNet (sigma_data = 1), as the release's Euler scheduler applies it.

With x = x0 + sigma * noise: the UNet sees c_in * x at timestep c_noise and predicts v; the clean estimate is
denoised = c_out * v + c_skip * x with c_out = -sigma / sqrt(sigma^2 + 1) and c_skip = 1 / (sigma^2 + 1)
(v_to_denoised). The arithmetic below follows the release's order of operations so fp16
runs round the same way.
"""

from __future__ import annotations

import torch


def c_in(sigma: torch.Tensor) -> torch.Tensor:
    """Input scale 1 / sqrt(sigma^2 + 1) (the release divides x by sqrt(sigma^2 + 1))."""
    return 1 / (sigma**2 + 1) ** 0.5


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """UNet timestep 0.25 * ln(sigma) (the release's continuous timestep)."""
    return 0.25 * torch.as_tensor(sigma).log()


def v_to_denoised(v: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean estimate from a v prediction: v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)."""
    return v * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
