"""Loading the SVD temporal VAE: locate it (the user's folder/file, else the manifest's svd_vae in the models
folders), verify it, build it from its weights and pin the manifest's file once it loaded strictly.

The file formats themselves (layouts, key renaming, reading the weights) are ``hp_core.svd_vae``'s; this
module is the weights side that uses them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..checkpoint import load_strict
from ..errors import HPError
from ..models import cast
from ..svd_vae import infer_vae_config, read_vae_state_dict, vae_config_for
from . import manifest
from .verification import VerifyResult, confirm, ensure_verified


def _locate(search_dirs, vae: str | os.PathLike | None) -> tuple[Path, VerifyResult | None]:
    """(path, verification result or None for a VAE the user named); the manifest's VAE is verified, not pinned."""
    if vae is not None:
        vae = Path(vae).expanduser()
        if not vae.exists():
            raise HPError(f"The VAE path {vae.resolve()} does not exist.", hint="Pass an SVD VAE folder or file.")
        return vae, None
    res = ensure_verified("svd_vae", search_dirs, pin=False)
    return res.path, res


def load_vae(search_dirs, vae: str | os.PathLike | None = None, *, device="cpu",
             dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """AutoencoderKLTemporalDecoder with the SVD weights (strictly checked), in eval mode: ``vae`` (file or
    folder) when given, else the manifest's svd_vae in ``search_dirs``. The manifest's VAE file is pinned in
    the lock only after this strict load succeeded."""
    from diffusers import AutoencoderKLTemporalDecoder  # heavy/optional: diffusers only when a VAE is built

    source, verified = _locate(search_dirs, vae)
    state = read_vae_state_dict(source)
    try:
        config = infer_vae_config(state, vae_config_for(source, manifest.SHIPPED_VAE_CONFIG))
    except (KeyError, ValueError) as err:
        raise HPError(f"{source} is missing parts of the SVD VAE ({err}).",
                      hint="Use the complete SVD XT VAE.") from err
    with torch.device("meta"):
        model = AutoencoderKLTemporalDecoder(**config)
    load_strict(model, state, component="vae", source=str(source))
    if verified is not None:
        confirm(verified)
    return cast(model, device=device, dtype=dtype).eval().requires_grad_(False)


__all__ = ["load_vae"]
