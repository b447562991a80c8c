"""The SVD temporal VAE's file formats: whatever form the user has it in, read into diffusers' layout.

Accepted: the diffusers folder of stabilityai/stable-video-diffusion-img2vid-xt (``vae/config.json`` +
``diffusion_pytorch_model(.fp16).safetensors``), a single VAE file in diffusers layout, or the original
Stability (SGM) layout: a full single-file SVD checkpoint (keys under ``first_stage_model.``, e.g. ComfyUI's
models/checkpoints/svd_xt.safetensors) or a VAE-only file (``encoder.down.0.block.0...``,
``decoder.mid.block_1.mix_factor``). SGM keys are renamed to diffusers ``AutoencoderKLTemporalDecoder``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError, safe_open

from .checkpoint import read_state_dict
from .errors import HPError
from .identify import SGM_PREFIX, vae_layout

# The full SVD checkpoint also carries a plain AutoencoderKL copy of the encoder for the conditioning
# frame; its quant_conv is the one a diffusers VAE has and the SGM first stage lacks.
SGM_COND_QUANT = "conditioner.embedders.3.encoder.quant_conv."
WEIGHT_NAMES = ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.bin")


def _resnet_tail(tail: str) -> str:
    return tail.replace("nin_shortcut.", "conv_shortcut.")


_TIME_STACK = {"in_layers.0.": "norm1.", "in_layers.2.": "conv1.", "out_layers.0.": "norm2.",
               "out_layers.3.": "conv2."}
_ATTN = {"norm.": "group_norm.", "q.": "to_q.", "k.": "to_k.", "v.": "to_v.", "proj_out.": "to_out.0."}


def _video_resnet(prefix: str, tail: str) -> str:
    """SGM VideoResBlock -> diffusers SpatioTemporalResBlock."""
    if tail == "mix_factor":
        return f"{prefix}.time_mixer.mix_factor"
    if tail.startswith("time_stack."):
        rest = tail[len("time_stack."):]
        for old, new in _TIME_STACK.items():
            if rest.startswith(old):
                return f"{prefix}.temporal_res_block.{new}{rest[len(old):]}"
        raise KeyError(tail)
    return f"{prefix}.spatial_res_block.{_resnet_tail(tail)}"


def _attn(prefix: str, tail: str) -> str:
    for old, new in _ATTN.items():
        if tail.startswith(old):
            return f"{prefix}.{new}{tail[len(old):]}"
    raise KeyError(tail)


def _sgm_key(key: str, levels: int) -> str:
    """The diffusers name of one SGM VAE key (without the first_stage_model. prefix)."""
    m = re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.resnets.{m[2]}.{_resnet_tail(m[3])}"
    m = re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(.+)", key)
    if m:
        return f"encoder.down_blocks.{m[1]}.downsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.mid\.block_([12])\.(.+)", key)
    if m:
        prefix = f"{m[1]}.mid_block.resnets.{int(m[2]) - 1}"
        return f"{prefix}.{_resnet_tail(m[3])}" if m[1] == "encoder" else _video_resnet(prefix, m[3])
    m = re.fullmatch(r"(encoder|decoder)\.mid\.attn_1\.(.+)", key)
    if m:
        return _attn(f"{m[1]}.mid_block.attentions.0", m[2])
    # SGM numbers decoder levels from the full-resolution end; diffusers from the latent end.
    m = re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(.+)", key)
    if m:
        return _video_resnet(f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets.{m[2]}", m[3])
    m = re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(.+)", key)
    if m:
        return f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0.conv.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.norm_out\.(.+)", key)
    if m:
        return f"{m[1]}.conv_norm_out.{m[2]}"
    m = re.fullmatch(r"decoder\.conv_out\.time_mix_conv\.(.+)", key)
    if m:
        return f"decoder.time_conv_out.{m[1]}"
    if re.fullmatch(r"(encoder|decoder)\.conv_(in|out)\.(weight|bias)", key) or key.startswith("quant_conv."):
        return key
    raise KeyError(key)


def convert_sgm_vae_to_diffusers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an SGM (Stability) SVD VAE state dict to diffusers AutoencoderKLTemporalDecoder keys.

    ``state`` may be a whole SVD checkpoint (VAE keys under ``first_stage_model.``; the rest is ignored)
    or a bare VAE. 1x1-conv attention weights (C, C, 1, 1) become linear (C, C). The SGM first stage
    has no quant_conv: the checkpoint's conditioning-encoder copy is used when present, else identity
    (which is exactly what the SGM encoder computes).
    """
    layout = vae_layout(state.keys())
    if layout not in ("sgm", "sgm_checkpoint"):
        raise HPError("This file does not hold an SVD temporal VAE in the original (SGM) layout.",
                      hint="Use the SVD XT vae folder, an SVD checkpoint, or an SVD VAE file.")
    prefix = SGM_PREFIX if layout == "sgm_checkpoint" else ""
    vae = {k[len(prefix):]: v for k, v in state.items()
           if k.startswith(prefix) and k[len(prefix):].split(".")[0] in ("encoder", "decoder", "quant_conv")}
    levels = 1 + max(int(m[1]) for k in vae if (m := re.match(r"encoder\.down\.(\d+)\.", k)))
    out, unknown = {}, []
    for key, value in vae.items():
        try:
            new = _sgm_key(key, levels)
        except KeyError:
            unknown.append(key)
            continue
        if ".attentions.0.to_" in new and new.endswith(".weight") and value.ndim == 4:
            value = value[:, :, 0, 0]
        out[new] = value
    if unknown:
        raise HPError(f"Unrecognised SVD VAE keys ({len(unknown)}, e.g. {', '.join(sorted(unknown)[:3])}).",
                      hint="The file is not a Stable Video Diffusion VAE this pack understands.")
    if "quant_conv.weight" not in out:
        cond = {k[len(SGM_COND_QUANT):]: v for k, v in state.items() if k.startswith(SGM_COND_QUANT)}
        if "weight" in cond and "bias" in cond:
            out["quant_conv.weight"], out["quant_conv.bias"] = cond["weight"], cond["bias"]
        else:
            ch = out["encoder.conv_out.weight"].shape[0]
            ref = out["encoder.conv_out.weight"]
            out["quant_conv.weight"] = torch.eye(ch, dtype=ref.dtype).reshape(ch, ch, 1, 1)
            out["quant_conv.bias"] = torch.zeros(ch, dtype=ref.dtype)
    return out


def _read_vae_keys_only(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file that can belong to a VAE (skips a checkpoint's UNet and encoders)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            wanted = [k for k in keys if k.startswith(("encoder.", "decoder.", "quant_conv.", SGM_PREFIX,
                                                       SGM_COND_QUANT))]
            return {k: f.get_tensor(k) for k in wanted}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise HPError(f"The VAE file {path} could not be read: it looks truncated or corrupted ({err}).",
                      hint="Delete it and download it again.") from err


def find_weights_in_folder(folder: Path) -> Path | None:
    """The weights file of a diffusers VAE folder, preferring the fp16 safetensors."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_vae_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """diffusers-layout VAE state dict from a diffusers folder, a VAE file or a single-file SVD checkpoint."""
    path = Path(path)
    if path.is_dir():
        weights = find_weights_in_folder(path)
        if weights is None:
            raise HPError(f"{path} has no VAE weights ({' / '.join(WEIGHT_NAMES[:2])}).",
                          hint="Put the SVD XT vae files there, or pass a single-file SVD VAE or checkpoint.")
        path = weights
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise HPError(f"The VAE file {path} does not exist.")
        state = _read_vae_keys_only(path)
    else:
        state = read_state_dict(path, component="vae")
    layout = vae_layout(state.keys())
    if layout == "diffusers":
        return {k: v for k, v in state.items() if k.split(".")[0] in ("encoder", "decoder", "quant_conv")}
    if layout in ("sgm", "sgm_checkpoint"):
        return convert_sgm_vae_to_diffusers(state)
    if any(k.endswith("decoder.mid.block_1.conv1.weight") or k == "decoder.mid_block.resnets.0.conv1.weight"
           for k in state):
        raise HPError(f"{path} is an image VAE (no temporal decoder), not the Stable Video Diffusion VAE.",
                      hint="Use the SVD XT VAE (stabilityai/stable-video-diffusion-img2vid-xt, vae/).")
    raise HPError(f"{path} does not contain a Stable Video Diffusion VAE.",
                  hint="Pick the SVD XT vae folder, an SVD VAE file, or a single-file SVD checkpoint.")


def vae_config_for(path: str | os.PathLike | None, fallback: str | os.PathLike) -> dict:
    """diffusers config: the VAE folder's config.json (or the one beside a VAE file), else ``fallback`` (the
    shipped SVD XT config.json, which the weights side knows the place of)."""
    candidates = []
    if path is not None:
        path = Path(path)
        candidates.append((path if path.is_dir() else path.parent) / "config.json")
    candidates.append(Path(fallback))
    for cfg in candidates:
        try:
            data = json.loads(cfg.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("_class_name") == "AutoencoderKLTemporalDecoder":
            return {k: v for k, v in data.items() if not k.startswith("_")}
    raise HPError("No SVD VAE config found.", hint="Reinstall the node pack (hp_core/configs/vae_config.json).")


def infer_vae_config(state: Mapping[str, torch.Tensor], base: dict) -> dict:
    """``base`` with the sizes the weights actually have (so any width of SVD-style VAE loads)."""
    levels = 1 + max(int(m[1]) for k in state if (m := re.match(r"encoder\.down_blocks\.(\d+)\.", k)))
    widths = [state[f"encoder.down_blocks.{i}.resnets.0.conv1.weight"].shape[0] for i in range(levels)]
    per_block = 1 + max(int(m[1]) for k in state if (m := re.match(r"encoder\.down_blocks\.0\.resnets\.(\d+)\.", k)))
    cfg = dict(base)
    cfg.update(block_out_channels=widths, layers_per_block=per_block,
               down_block_types=["DownEncoderBlock2D"] * levels,
               in_channels=state["encoder.conv_in.weight"].shape[1],
               out_channels=state["decoder.conv_out.weight"].shape[0],
               latent_channels=state["decoder.conv_in.weight"].shape[1])
    return cfg


__all__ = ["convert_sgm_vae_to_diffusers", "read_vae_state_dict", "vae_config_for",
           "find_weights_in_folder", "infer_vae_config"]
