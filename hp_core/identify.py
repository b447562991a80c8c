"""Which network a weights file is, answered in one place: for the loader's key errors, ``weights verify``,
the VAE readers and the ComfyUI dropdowns.

Everything here reads key names only (a safetensors header, or any list of keys such as a ``.pth``'s
pickle index), never a tensor, so it is cheap enough to run on every file of a models folder.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable

# Per network: a key only its official checkpoint has, and the top-level key groups any file of it has
# (the second answers for renamed or re-saved copies that lost the exact key).
NETWORK_KEYS = {
    "unet": ("down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.0.weight",
             {"down_blocks", "mid_block", "up_blocks"}),
    "dino": ("register_tokens", {"patch_embed", "blocks"}),
    "motion_proj": ("connector.latents", {"connector"}),
    "expression": ("resnet50.conv1.weight", {"resnet50"}),
    "headpose": ("head_pose_net.conv1.weight", {"head_pose_net"}),
    "pose_guider": ("blocks.0.weight", {"conv_in", "blocks", "conv_out"}),
}
IMAGE_PROJ_KEYS = {"weight", "bias"}  # image_proj is a single projection layer
VAE_GROUPS = {"encoder", "decoder"}
# Parts of a file name (or its folder's) that say which file it is.
NAME_HINTS = {"pose_guider": ("pose_guider", "poseguider"), "image_proj": ("image_proj",),
              "motion_proj": ("motion_proj",), "headpose": ("headpose", "head_pose"),
              "expression": ("expression",), "dino": ("dino",), "unet": ("unet",), "vae": ("vae",),
              "face_detector": ("yoloface", "yolov5", "scrfd", "det_10g")}

SGM_PREFIX = "first_stage_model."  # a whole single-file SVD checkpoint keeps its VAE under this
_TEMPORAL_MIX = {"diffusers": "decoder.mid_block.resnets.0.time_mixer.mix_factor",
                 "sgm_checkpoint": SGM_PREFIX + "decoder.mid.block_1.mix_factor",
                 "sgm": "decoder.mid.block_1.mix_factor"}
HEADER_LIMIT = 100_000_000  # safetensors refuses larger headers itself


def vae_layout(keys: Iterable[str]) -> str | None:
    """The layout of an SVD temporal VAE's keys: 'diffusers', 'sgm' (bare Stability keys) or
    'sgm_checkpoint' (a whole SVD checkpoint, keys under first_stage_model.), or None when the keys hold
    no temporal decoder."""
    keys = set(keys)
    return next((layout for layout, key in _TEMPORAL_MIX.items() if key in keys), None)


def network_of_keys(keys: Iterable[str]) -> str | None:
    """Which network ('unet', 'dino', ..., 'image_proj', 'vae') a state dict's keys belong to, or None."""
    keys = set(keys)
    if keys == IMAGE_PROJ_KEYS:
        return "image_proj"
    for network, (key, _) in NETWORK_KEYS.items():
        if key in keys:
            return network
    if vae_layout(keys):
        return "vae"
    groups = {k.split(".")[0] for k in keys}
    for network, (_, needed) in NETWORK_KEYS.items():
        if needed <= groups:
            return network
    return "vae" if VAE_GROUPS <= groups else None


def network_of_name(name: str) -> str | None:
    """Which network a file's name (or, failing that, a folder on its path) says it is, or None."""
    lowered = str(name).lower().replace("\\", "/")
    base = lowered.rsplit("/", 1)[-1]
    for network, hints in NAME_HINTS.items():
        if any(h in base for h in hints):
            return network
    return next((n for n, hints in NAME_HINTS.items() if any(f"{h}/" in lowered for h in hints)), None)


def safetensors_header(path: str | Path) -> tuple[dict, int]:
    """A .safetensors file's header (name -> dtype, shape, offsets; plus ``__metadata__``) and its length in
    bytes. Raises ValueError when the file is too short for the header it announces, or the header too large."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError("the header is cut short")
        (n,) = struct.unpack("<Q", head)
        if n > HEADER_LIMIT:
            raise ValueError(f"it announces a header of {n} bytes, more than safetensors allows")
        if n > path.stat().st_size - 8:
            raise ValueError("the header is cut short")
        return json.loads(f.read(n)), n


def network_of_file(path: str | Path) -> str | None:
    """Which network a .safetensors file holds, from its header alone; None when it cannot be told."""
    try:
        header, _ = safetensors_header(path)
    except (OSError, ValueError, struct.error):
        return None
    return network_of_keys(k for k in header if k != "__metadata__")


__all__ = ["IMAGE_PROJ_KEYS", "NAME_HINTS", "NETWORK_KEYS", "SGM_PREFIX", "network_of_file", "network_of_keys",
           "network_of_name", "safetensors_header", "vae_layout"]
