"""Before any work: every file a run needs, checked at once, with one message for every problem."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import HPError
from ..models import COMPONENTS
from ..identify import vae_layout
from ..svd_vae import find_weights_in_folder
from . import locations
from . import manifest
from . import structure
from . import verification
from .messages import problems_message


def needed_ids(*, use_arcface: bool = True, detector: str | None = "yoloface", vae: bool = True,
               networks=COMPONENTS) -> list[str]:
    """Manifest ids a run needs: the networks (default all seven), the SVD VAE, ArcFace when used, the face
    detector."""
    ids = list(networks) + (["svd_vae"] if vae else [])
    return ids + (["arcface"] if use_arcface else []) + ([detector] if detector else [])


def check_explicit_vae(vae: str | os.PathLike) -> str | None:
    """Why a VAE the user named (a folder, VAE file or SVD checkpoint) cannot be used, read cheaply; or None."""
    vae = Path(vae).expanduser()
    if not vae.exists():
        return "it does not exist"
    weights = find_weights_in_folder(vae) if vae.is_dir() else vae
    if weights is None:
        return "the folder holds no diffusion_pytorch_model(.fp16).safetensors"
    if weights.suffix == ".safetensors":
        try:
            keys = structure.checkpoint_index(weights).keys()
        except (ValueError, OSError, KeyError) as err:
            return f"its header cannot be read ({err})"
        if vae_layout(keys) is None:
            return "it does not contain a Stable Video Diffusion VAE (no temporal decoder)"
    return None


@dataclass
class Readiness:
    """Outcome of checking the files of a run: usable paths, missing entries, unusable (entry, path, why)."""

    paths: dict[str, Path] = field(default_factory=dict)
    missing: list[manifest.WeightEntry] = field(default_factory=list)
    bad: list[tuple[manifest.WeightEntry, Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every file is usable."""
        return not (self.missing or self.bad)


def check_files(ids: Iterable[str], search_dirs, *, vae: str | os.PathLike | None = None,
                preset: str | None = "official") -> Readiness:
    """Check every file in ``ids`` (present, size/hash, structure for ``preset``) without raising or pinning.

    ``vae`` (a folder or file the user gave) stands in for 'svd_vae' and is checked cheaply instead.
    ``preset=None`` checks each folder against its own random-weights marker (else 'official').
    """
    dirs = locations.as_dirs(search_dirs)
    out = Readiness()
    for entry_id in dict.fromkeys(ids):
        entry = manifest.get_entry(entry_id)
        if entry_id == "svd_vae" and vae is not None:
            given = Path(vae).expanduser()
            why = check_explicit_vae(given)
            if why:
                out.bad.append((entry, given.resolve(), f"the VAE given instead of {entry.local_path}: {why}"))
            else:
                out.paths[entry_id] = given
            continue
        res = verification.verify(entry_id, dirs, preset=preset, pin=False)
        if res.state == "missing":
            out.missing.append(entry)
        elif not res.ok:
            out.bad.append((entry, res.path.resolve(), res.reason))
        else:
            out.paths[entry_id] = res.path
    return out


def preflight(ids: Iterable[str], search_dirs, *, vae: str | os.PathLike | None = None,
              preset: str | None = "official") -> dict[str, Path]:
    """Paths of every file in ``ids``, each checked (see check_files), or ONE HPError listing every missing
    and every unusable file, raised before any work. Nothing is pinned here: loading pins."""
    found = check_files(ids, search_dirs, vae=vae, preset=preset)
    if not found.ok:
        # Files of another preset (e.g. random tiny weights) get the short message that leads with --preset.
        raise HPError(problems_message(found.missing, found.bad, search_dirs))
    return found.paths
