"""EDM preconditioning for SVD's v-prediction UNet (sigma_data = 1), as the release's Euler scheduler applies it.

With x = x0 + sigma * noise: the UNet sees c_in * x at timestep c_noise and predicts v; the clean estimate is
denoised = c_out * v + c_skip * x. The arithmetic below follows the release's order of operations so fp16
runs round the same way.
"""

from __future__ import annotations

import torch


def c_in(sigma: torch.Tensor) -> torch.Tensor:
    """Input scale 1 / sqrt(sigma^2 + 1) (the release divides x by sqrt(sigma^2 + 1))."""
    return 1 / (sigma**2 + 1) ** 0.5


def c_skip(sigma: torch.Tensor) -> torch.Tensor:
    """Skip weight 1 / (sigma^2 + 1)."""
    return 1 / (sigma**2 + 1)


def c_out(sigma: torch.Tensor) -> torch.Tensor:
    """Output weight -sigma / sqrt(sigma^2 + 1)."""
    return -sigma / (sigma**2 + 1) ** 0.5


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    """UNet timestep 0.25 * ln(sigma) (the release's continuous timestep)."""
    return 0.25 * torch.as_tensor(sigma).log()


def scale_input(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """UNet input x / sqrt(sigma^2 + 1); sigma broadcastable to x (a 0-d tensor or a float)."""
    return x / ((sigma**2 + 1) ** 0.5)


def v_to_denoised(v: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Clean estimate from a v prediction: v * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)."""
    return v * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)


def denoised_to_v(denoised: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of v_to_denoised: the v that yields `denoised` at (x, sigma); sigma must be > 0."""
    return (denoised - x / (sigma**2 + 1)) / (-sigma / (sigma**2 + 1) ** 0.5)
