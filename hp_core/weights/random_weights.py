"""Random weights of a preset in the release's file layout, for tests and benchmarks (never the model)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from . import locations as L
from . import verification as V


def write_random_weights(out: str | os.PathLike, preset: str = "tiny", *, seed: int = 0, dtype: str = "auto",
                         log: Callable[[str], None] = print) -> list[Path]:
    """Random weights of ``preset`` in the official layout (hyportrait/<name>.pth, vae/), for tests and benchmarks.

    The .pth files are plain state dicts written with torch.save, exactly like the release; the VAE is a
    diffusers folder. ``dtype``: auto (official: the release's run precisions; tiny: fp32), fp32 or fp16.
    The folder is marked with random_weights.json so nobody mistakes it for the released model, and so
    verification checks its files against ``preset`` instead of the published hashes.
    """
    import torch

    from ..models import COMPONENTS, DEFAULT_DTYPES, build_component, build_vae

    out = Path(out)
    (out / "hyportrait").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    written = []
    for name in COMPONENTS:
        module = build_component(name, preset)
        want = {"fp32": torch.float32, "fp16": torch.float16}.get(
            dtype, DEFAULT_DTYPES[name] if preset == "official" else torch.float32)
        state = {k: (v.to(want) if v.is_floating_point() else v).contiguous() for k, v in module.state_dict().items()}
        del module
        path = out / "hyportrait" / f"{name}.pth"
        torch.save(state, path)
        del state
        written.append(path)
        log(f"  {path}")
    vae = build_vae(preset)
    vae_dtype = torch.float32 if dtype == "fp32" or (dtype == "auto" and preset == "tiny") else torch.float16
    vae.to(vae_dtype).save_pretrained(str(out / "vae"), safe_serialization=True,
                                      variant="fp16" if vae_dtype == torch.float16 else None)
    weights_file = out / "vae" / ("diffusion_pytorch_model.fp16.safetensors" if vae_dtype == torch.float16
                                  else "diffusion_pytorch_model.safetensors")
    written += [out / "vae" / "config.json", weights_file]
    log(f"  {weights_file}")
    (out / L.RANDOM_MARKER).write_text(json.dumps(
        {"preset": preset, "seed": seed, "dtype": dtype,
         "note": "random weights for tests and benchmarks; not the released HunyuanPortrait model"}, indent=1),
        encoding="utf-8")
    for entry_id in (*COMPONENTS, "svd_vae", "svd_vae_config"):
        # checked against the preset and pinned now, so status reads "ok"
        V.ensure_verified(entry_id, [out], origin=f"random {preset} seed {seed}")
    return written
