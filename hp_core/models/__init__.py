"""Registry of the method's networks and their presets.

``build_component(name, preset)`` returns the module whose ``state_dict()`` has exactly the keys and
shapes of the official ``<name>.pth`` (preset "official"), or the same classes at small widths
(preset "tiny", for tests on a CPU). Building under ``torch.device("meta")`` allocates nothing.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..checkpoint import load_strict, read_state_dict
from ..errors import HPError
from .fp8 import store_fp8
from .precision import DTYPES, FP8_NETWORKS, PRECISIONS, RELEASE_DTYPES, fp8_networks, precision_dtypes

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
COMPONENTS = ("unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider")
PRESETS = ("official", "tiny")
DEFAULT_DTYPES = RELEASE_DTYPES  # the release's column of the one precision table (precision.py)


@dataclass(frozen=True)
class PresetDims:
    """Sizes the rest of the pipeline must agree on for a preset."""

    appearance_size: int      # DINO input side (224 official)
    appearance_tokens: int    # tokens out of the projector (64)
    motion_tokens: int        # refined motion tokens per frame (64)
    motion_width: int         # refined width before rotation/zeros are appended (1018)
    expression_dim: int       # expression feature width (512)
    identity_dim: int         # ArcFace vector width (512)
    context_dim: int          # UNet cross-attention width (1024)


PRESET_DIMS = {
    "official": PresetDims(224, 64, 64, 1018, 512, 512, 1024),
    "tiny": PresetDims(56, 8, 8, 26, 32, 512, 32),
}


def unet_config(preset: str = "official") -> dict:
    """diffusers config of the UNet (the SVD XT file for official; a small one for tiny)."""
    cfg = {k: v for k, v in json.loads((CONFIG_DIR / "unet_config.json").read_text()).items()
           if not k.startswith("_")}
    if preset == "tiny":
        cfg.update(block_out_channels=[32, 64], num_attention_heads=[2, 4], layers_per_block=1,
                   cross_attention_dim=32, addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
                   down_block_types=["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
                   up_block_types=["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"], sample_size=8)
    return cfg


def vae_config(preset: str = "official") -> dict:
    """diffusers config of the SVD temporal VAE (the shipped SVD XT file for official)."""
    cfg = {k: v for k, v in json.loads((CONFIG_DIR / "vae_config.json").read_text()).items()
           if not k.startswith("_")}
    if preset == "tiny":
        cfg.update(block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=64)
    return cfg


DINO_PATCH = 14      # DINOv2 ViT-L/14's patch side
DINO_REGISTERS = 4   # its register tokens


def appearance_token_count(image_size: int) -> int:
    """Tokens DINO hands the projector: cls + registers + one per patch (224 -> 1 + 4 + 16 * 16 = 261)."""
    return 1 + DINO_REGISTERS + (image_size // DINO_PATCH) ** 2


def _builders(preset: str) -> dict[str, Callable[[], nn.Module]]:
    # Late: the networks pull in diffusers (seconds), which a ComfyUI start-up must not pay for.
    from .appearance import DinoWithIMAdapters, TokenProjector
    from .motion_encoder import ExpressionEncoder, HeadPoseEncoder
    from .motion_refiner import MotionRefiner
    from .pose_guider import PoseGuider
    from .unet import PortraitUNet

    d = PRESET_DIMS[preset]
    tokens = appearance_token_count(d.appearance_size)
    if preset == "official":
        return {
            "unet": lambda: PortraitUNet(**unet_config(preset), num_motion_tokens=d.motion_tokens),
            "dino": lambda: DinoWithIMAdapters(),
            "image_proj": lambda: TokenProjector(tokens, d.appearance_tokens),
            "motion_proj": lambda: MotionRefiner(),
            "expression": lambda: ExpressionEncoder(),
            "headpose": lambda: HeadPoseEncoder(),
            "pose_guider": lambda: PoseGuider(),
        }
    return {
        "unet": lambda: PortraitUNet(**unet_config(preset), num_motion_tokens=d.motion_tokens),
        "dino": lambda: DinoWithIMAdapters(width=32, depth=4, heads=2, pos_grid=5, adapter_blocks=(1, 3),
                                           adapter_dim=16, adapter_attn_dim=8, adapter_heads=2),
        "image_proj": lambda: TokenProjector(tokens, d.appearance_tokens),
        "motion_proj": lambda: MotionRefiner(in_dim=d.expression_dim, width=32, depth=2, heads=2,
                                             num_latents=d.motion_tokens, out_dim=d.motion_width),
        "expression": lambda: ExpressionEncoder(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1),
                                                out_dim=d.expression_dim),
        "headpose": lambda: HeadPoseEncoder(widths=(8, 8, 16, 16), depths=(1, 1, 1, 1), groups=4),
        "pose_guider": lambda: PoseGuider(channels=(4, 4, 4, 8), out_channels=32),
    }


def build_component(name: str, preset: str = "official", device=None) -> nn.Module:
    """A fresh (randomly initialised) network ``name`` of ``preset``, in eval mode."""
    if preset not in PRESETS:
        raise HPError(f"Unknown preset {preset!r}.", hint=f"Use one of {', '.join(PRESETS)}.")
    builders = _builders(preset)
    if name not in builders:
        raise HPError(f"Unknown component {name!r}.", hint=f"Use one of {', '.join(COMPONENTS)}.")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = builders[name]()
    return module.eval().requires_grad_(False)


def build_vae(preset: str = "official", device=None) -> nn.Module:
    """The SVD temporal VAE (diffusers AutoencoderKLTemporalDecoder) from the shipped config."""
    from diffusers import AutoencoderKLTemporalDecoder  # heavy: only when a VAE is built

    with torch.device(device) if device is not None else contextlib.nullcontext():
        vae = AutoencoderKLTemporalDecoder(**vae_config(preset))
    return vae.eval().requires_grad_(False)


def load_component(name: str, weights, preset: str = "official", dtype: torch.dtype | str | None = None,
                   device="cpu", source: str | None = None, fp8: bool = False) -> nn.Module:
    """Build ``name`` and load ``weights`` (a path or a state dict) strictly, then move to device/dtype
    (``fp8``: Linear/conv weights stored as fp8, computed in ``dtype``; hp_core.models.fp8).

    The module is built on the meta device first, so the full UNet is never allocated twice.
    """
    source = source or (str(weights) if not isinstance(weights, dict) else "the given state dict")
    state = read_state_dict(weights, component=name) if not isinstance(weights, dict) else weights
    module = build_component(name, preset, device="meta")
    load_strict(module, state, component=name, source=source)
    if isinstance(dtype, str):
        dtype = DTYPES[dtype]
    dtype = dtype or DEFAULT_DTYPES[name]
    if fp8:
        return store_fp8(cast(module, device=device), dtype).eval()
    return cast(module, device=device, dtype=dtype).eval()


def cast(module: nn.Module, device=None, dtype: torch.dtype | None = None) -> nn.Module:
    """Move/cast a module with torch's own ``to``: diffusers' override logs a spurious float32 warning
    on every dtype cast of a model that has no float32-only parts."""
    return nn.Module.to(module, device=device, dtype=dtype)


__all__ = ["cast", "COMPONENTS", "PRESETS", "PRESET_DIMS", "PresetDims", "DEFAULT_DTYPES", "DTYPES", "PRECISIONS",
           "precision_dtypes", "fp8_networks", "FP8_NETWORKS", "build_component",
           "build_vae", "load_component", "unet_config", "vae_config"]
