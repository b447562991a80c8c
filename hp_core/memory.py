"""Peak-memory estimates for sampling and decoding, checked against what the device has free.

The estimates cover the activations of one UNet call (window x branches at the latent size) and of one
decode chunk; the weights are already on the device when the checks run (inside ``PortraitModels.use``), so
the free figure already accounts for them. Calibration (peak resident memory added by one forward, fp32 on
the CPU, glibc mmap threshold lowered so freed tensors leave at once, as benchmarks/bench_pipeline.py measures):
  UNet: about UNET_BYTES_PER_ELEMENT x (rows x C0 x h x w) elements of the first block's width, where
        rows = window x branches per call; attention with a linear-memory kernel (flash / efficient / the
        CPU's fused kernel); the math backend adds the (h*w)^2 score matrix per head.
  VAE decode: about VAE_BYTES_PER_ELEMENT x (chunk x C_last x H x W) elements of the decoder's last width.
A safety factor covers allocator slack. On CUDA, free = cudaMemGetInfo's free + what PyTorch's cache holds
unused; on the CPU, MemAvailable from /proc/meminfo (no check where that file does not exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import HPError

UNET_BYTES_PER_ELEMENT = 28.0  # measured fp32 CPU: tiny 27 (C0 32); official slope about 10 (C0 320, 64-128 px)
UNET_FIXED_BYTES = 256 * 1024 ** 2  # official at 64 px: about 225 MiB whatever the size (deep levels, context)
VAE_BYTES_PER_ELEMENT = 10.5   # measured fp32 CPU: tiny 8.0 (C_last 32), official 10.0 (C_last 128, 128 px)
SAFETY = 1.15
GIB = 1024 ** 3


def free_bytes(device: torch.device | str) -> int | None:
    """Bytes this process can still allocate on ``device`` (None where that cannot be known)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        free, _total = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + cached)
    if device.type == "cpu":
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None


def _bytes_of(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def unet_call_bytes(config, rows: int, latent_hw: tuple[int, int], dtype: torch.dtype,
                    math_attention: bool = False) -> int:
    """Activation bytes of one UNet call over ``rows`` frames (window x branches) at the latent size."""
    h, w = latent_hw
    c0 = int(config.block_out_channels[0])
    size = _bytes_of(dtype)
    total = UNET_BYTES_PER_ELEMENT * rows * c0 * h * w * size + UNET_FIXED_BYTES * size / 4
    if math_attention:
        heads = config.num_attention_heads
        heads = int(heads[0] if isinstance(heads, (list, tuple)) else heads)
        total += 2 * rows * heads * (h * w) ** 2 * size  # scores and softmax of the first level
    return int(total * SAFETY)


def decode_bytes(config, chunk: int, image_hw: tuple[int, int], dtype: torch.dtype) -> int:
    """Activation bytes of decoding ``chunk`` frames at the image size with the temporal VAE decoder."""
    h, w = image_hw
    c_last = int(config.block_out_channels[0])
    return int(VAE_BYTES_PER_ELEMENT * chunk * c_last * h * w * _bytes_of(dtype) * SAFETY)


@dataclass
class SamplingPlan:
    """The branch mode chosen and the estimate it rests on."""

    branch_mode: str
    needed: int
    free: int | None


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def plan_sampling(unet: torch.nn.Module, device, *, window: int, latent_hw: tuple[int, int], branch_mode: str,
                  branches: int = 3, math_attention: bool = False, free: int | None = None) -> SamplingPlan:
    """Resolve ``auto`` to batched or sequential and refuse (HPError) settings that will not fit."""
    config = getattr(unet, "config", None)
    if config is None or not hasattr(config, "block_out_channels"):
        return SamplingPlan("batched" if branch_mode == "auto" else branch_mode, 0, None)
    dtype = next(unet.parameters()).dtype
    free = free_bytes(device) if free is None else free
    need = {mode: unet_call_bytes(config, window * (branches if mode == "batched" else 1), latent_hw, dtype,
                                  math_attention) for mode in ("batched", "sequential")}
    if branch_mode == "auto":
        branch_mode = "batched" if free is None or need["batched"] <= free else "sequential"
    if free is not None and need[branch_mode] > free:
        h, w = latent_hw
        tips = ["a smaller context window", f"a smaller output size (now {h * 8}x{w * 8})"]
        if branch_mode == "batched":
            tips.insert(0, "branch mode sequential (a third of the activations, same result)")
        if math_attention:
            tips.append("an attention backend other than math")
        raise HPError(f"Sampling needs about {_gib(need[branch_mode])} on {device} for window {window} "
                      f"({branch_mode} branches) but only {_gib(free)} is free.",
                      hint="Lower the settings: " + ", ".join(tips) + ".")
    return SamplingPlan(branch_mode, need[branch_mode], free)


def check_decoding(vae: torch.nn.Module, device, *, chunk: int, image_hw: tuple[int, int],
                   free: int | None = None) -> int:
    """Refuse (HPError) a decode chunk that will not fit; returns the estimate in bytes."""
    config = getattr(vae, "config", None)
    if config is None or not hasattr(config, "block_out_channels"):
        return 0
    need = decode_bytes(config, chunk, image_hw, next(vae.parameters()).dtype)
    free = free_bytes(device) if free is None else free
    if free is not None and need > free:
        raise HPError(f"Decoding {chunk} frames at {image_hw[0]}x{image_hw[1]} needs about {_gib(need)} on {device} "
                      f"but only {_gib(free)} is free.",
                      hint="Lower decode_chunk (the temporal decoder then sees fewer frames at once, which changes "
                           "the result slightly) or the output size.")
    return need


__all__ = ["SamplingPlan", "check_decoding", "decode_bytes", "free_bytes", "plan_sampling", "unet_call_bytes"]
