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

``check_host_memory`` runs before any work on a CPU run: a size whose smallest UNet call or decode chunk
needs more than the machine's whole RAM (os.sysconf) is refused at once, with the largest size that would
fit, instead of failing in the allocator minutes later.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from .errors import HPError
from .models import build_component, unet_config, vae_config
from .models.fp8 import FP8_LAYERS, compute_dtype
from .models.streaming import in_flight_bytes, unet_blocks

UNET_BYTES_PER_ELEMENT = 28.0  # measured fp32 CPU: tiny 27 (C0 32); official slope about 10 (C0 320, 64-128 px)
UNET_FIXED_BYTES = 256 * 1024 ** 2  # official at 64 px: about 225 MiB whatever the size (deep levels, context)
VAE_BYTES_PER_ELEMENT = 10.5   # measured fp32 CPU: tiny 8.0 (C_last 32), official 10.0 (C_last 128, 128 px)
SAFETY = 1.15
GIB = 1024 ** 3


MEMINFO = Path("/proc/meminfo")  # Linux: MemAvailable is what a process can still allocate


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
            for line in MEMINFO.read_text().splitlines():
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
    dtype = compute_dtype(unet)
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
        tips.append("precision fp8 or a VRAM budget (the UNet's weights then leave more room)")
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
    need = decode_bytes(config, chunk, image_hw, compute_dtype(vae))
    free = free_bytes(device) if free is None else free
    if free is not None and need > free:
        raise HPError(f"Decoding {chunk} frames at {image_hw[0]}x{image_hw[1]} needs about {_gib(need)} on {device} "
                      f"but only {_gib(free)} is free.",
                      hint="Lower decode_chunk (the temporal decoder then sees fewer frames at once, which changes "
                           "the result slightly) or the output size.")
    return need


def host_ram_bytes() -> int | None:
    """The machine's physical memory in bytes (None where os.sysconf cannot tell)."""
    try:
        pages, page = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return int(pages) * int(page) if pages > 0 and page > 0 else None


def run_bytes(preset: str, size: tuple[int, int], *, window: int, decode_chunk: int,
              unet_dtype: torch.dtype = torch.float32, vae_dtype: torch.dtype = torch.float32) -> tuple[int, str]:
    """The least activation memory a run at ``size`` (height, width) needs (sequential branches, the given
    decode chunk): (bytes, which stage needs them)."""

    h, w = size
    unet = unet_call_bytes(SimpleNamespace(**unet_config(preset)), max(int(window), 1), (h // 8, w // 8), unet_dtype)
    vae = decode_bytes(SimpleNamespace(**vae_config(preset)), max(int(decode_chunk), 1), (h, w), vae_dtype)
    return (unet, "sampling") if unet >= vae else (vae, "decoding")


def check_host_memory(preset: str, size: tuple[int, int], device, *, window: int, decode_chunk: int,
                      unet_dtype: torch.dtype = torch.float32, vae_dtype: torch.dtype = torch.float32,
                      total: int | None = None) -> None:
    """Refuse (HPError) a CPU run that cannot fit in the machine's RAM even with nothing else running."""
    if torch.device(device).type != "cpu":
        return
    total = host_ram_bytes() if total is None else total
    if total is None:
        return
    kw = dict(window=window, decode_chunk=decode_chunk, unet_dtype=unet_dtype, vae_dtype=vae_dtype)
    need, stage = run_bytes(preset, size, **kw)
    if need <= total:
        return
    h, w = size
    side = max(h, w)
    fits = None
    for cand in range(side - side % 64, 63, -64):
        if run_bytes(preset, (max(cand * h // side, 8), max(cand * w // side, 8)), **kw)[0] <= total:
            fits = cand
            break
    tips = [f"a --size of at most {fits}" if fits else "a smaller --size"]
    chunk = next((c for c in range(int(decode_chunk) - 1, 0, -1)
                  if run_bytes(preset, size, **{**kw, "decode_chunk": c})[0] <= total), None)
    if stage == "decoding" and chunk:
        tips.append(f"--decode-chunk {chunk}")
    raise HPError(f"--size {h if h == w else f'{h}x{w}'} needs about {_gib(need)} of memory for {stage} on the "
                  f"CPU, and this machine has {_gib(total)} in all.",
                  hint=f"Use {' or '.join(tips)}, or run on a GPU.")


@functools.lru_cache(maxsize=8)
def _unet_sizes(preset: str, dtype: torch.dtype, fp8: bool) -> tuple[int, tuple[int, ...]]:
    """(bytes of the UNet's small layers, bytes of each large block in running order) as they would be stored:
    Linear/conv weights in ``dtype`` or, with ``fp8``, one byte each; everything else in ``dtype``."""
    unet = build_component("unet", preset, device="meta")  # shapes only: no memory
    size = _bytes_of(dtype)

    def stored(module: torch.nn.Module) -> int:
        return sum(t.numel() * (1 if fp8 and name == "weight" and isinstance(layer, FP8_LAYERS) else size)
                   for layer in module.modules() for name, t in layer.named_parameters(recurse=False))

    blocks = tuple(stored(b) for b in unet_blocks(unet))
    return stored(unet) - sum(blocks), blocks


def unet_weight_bytes(preset: str, dtype: torch.dtype, *, fp8: bool = False,
                      stream_budget: int | None = None) -> int:
    """Bytes of UNet weights on the device at most: all of them (Linear/conv weights one byte each with
    ``fp8``); with a ``stream_budget``, what the streaming plan keeps (hp_core.models.streaming: the small
    layers and the blocks that fit, in running order) plus the streamed blocks in flight (the one running
    and the next one's copy)."""
    small, blocks = _unet_sizes(preset, dtype, fp8)
    if stream_budget is None or stream_budget >= small + sum(blocks):
        return small + sum(blocks)
    used, streamed = small, []
    for block in blocks:
        if not streamed and used + block <= stream_budget:
            used += block
        else:
            streamed.append(block)
    return used + in_flight_bytes(streamed)


def check_device_memory(preset: str, device, *, dtype: torch.dtype, window: int, latent_hw: tuple[int, int],
                        fp8: bool = False, stream_budget: int | None = None, free: int | None = None) -> int:
    """Before loading: refuse (HPError) a GPU run whose UNet weights (as stored: fp16, fp8, or what a VRAM
    budget keeps) plus one sequential UNet call will not fit the free memory; suggest fp8 and a VRAM budget
    first. Returns the estimate in bytes (0 where the free memory cannot be known)."""

    free = free_bytes(device) if free is None else free
    if free is None or torch.device(device).type == "cpu":
        return 0
    calls = unet_call_bytes(SimpleNamespace(**unet_config(preset)), window, latent_hw, dtype)
    need = unet_weight_bytes(preset, dtype, fp8=fp8, stream_budget=stream_budget) + calls
    if need <= free:
        return need
    tips = []
    if not fp8:
        lighter = unet_weight_bytes(preset, dtype, fp8=True, stream_budget=stream_budget) + calls
        tips.append(f"precision fp8 (about {_gib(lighter)} in all)")
    if stream_budget is None:
        budgets = [b * GIB / 4 for b in range(int(free * 4 // GIB), 0, -1)]  # quarter GiB steps, largest first
        fits = next((b for b in budgets
                     if unet_weight_bytes(preset, dtype, fp8=fp8, stream_budget=int(b)) + calls <= free), None)
        if fits:
            tips.append(f"a VRAM budget (--vram-budget {fits / GIB:g}): UNet blocks beyond it wait in system "
                        "memory")
    tips.append("a smaller context window or output size")
    raise HPError(f"The UNet's weights and one sampling call need about {_gib(need)} on {device}, and "
                  f"{_gib(free)} is free.", hint="Use " + "; or ".join(tips) + ".")


__all__ = ["SamplingPlan", "check_decoding", "check_device_memory", "check_host_memory", "decode_bytes",
           "free_bytes", "host_ram_bytes", "plan_sampling", "run_bytes", "unet_call_bytes", "unet_weight_bytes"]
