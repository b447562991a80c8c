"""Where the files are: the models folders searched, and the layouts a file is found in.

A file is looked for, in every models folder in turn, under the names users already have:

1. the pack's own layout, ``local_path`` (``hyportrait/unet.pth``, ``vae/...``, ``arcface.onnx``);
2. the repository's own layout, ``filename`` at the folder root: what
   ``huggingface-cli download tencent/HunyuanPortrait --local-dir X`` leaves in ``X`` (``X/unet.pth``);
3. the manifest's ``alt_local_paths`` (other files that can fill the role, e.g. the fp32 SVD VAE);
4. each of these inside a ``pretrained_weights/`` folder, the layout the release's README produces
   (``pretrained_weights/hyportrait/*.pth``, ``pretrained_weights/arcface.onnx``, ...), for a models
   folder that holds a copy of the release's folder. Pointing ``--models-dir`` (or extra_model_paths.yaml)
   at ``pretrained_weights`` itself is layout 1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

from . import manifest as M

ENV_MODELS_DIR = "HP_MODELS_DIR"
DEFAULT_MODELS_DIR = Path("models") / M.FOLDER_NAME
RELEASE_DIR = "pretrained_weights"
RANDOM_MARKER = "random_weights.json"


def default_search_dirs(models_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Model folders outside ComfyUI: --models-dir, else $HP_MODELS_DIR (os.pathsep-separated), else the default."""
    if models_dir:
        dirs = [models_dir] if isinstance(models_dir, (str, os.PathLike)) else list(models_dir)
    elif os.environ.get(ENV_MODELS_DIR):
        dirs = [d for d in os.environ[ENV_MODELS_DIR].split(os.pathsep) if d]
    else:
        dirs = [DEFAULT_MODELS_DIR]
    return [Path(d).expanduser() for d in dirs]


def as_dirs(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """A folder or a list of folders as a list of Paths."""
    if isinstance(search_dirs, (str, os.PathLike)):
        search_dirs = [search_dirs]
    return [Path(d).expanduser() for d in search_dirs]


def candidates(entry: M.WeightEntry) -> list[tuple[str, bool]]:
    """(relative path, is the published file itself) in search order, for one models folder.

    The published file's size and hash apply to the first kind only; alt_local_paths name other files.
    """
    own = [(entry.local_path, True)]
    if entry.filename != entry.local_path:
        own.append((entry.filename, True))
    own += [(p, False) for p in entry.alt_local_paths]
    return own + [(f"{RELEASE_DIR}/{p}", same) for p, same in own]


def locate(entry: M.WeightEntry, search_dirs) -> tuple[Path, Path, bool] | None:
    """(models folder, file, is the published file) of the first copy found, in search order."""
    for base in as_dirs(search_dirs):
        for rel, same in candidates(entry):
            path = base / rel
            if path.is_file():
                return base, path, same
    return None


def resolve(entry_id: str, search_dirs) -> Path | None:
    """Path of the file ``entry_id`` in the first search folder that has it (or the pack's bundled copy)."""
    entry = M.get_entry(entry_id)
    found = locate(entry, search_dirs)
    if found:
        return found[1]
    if entry.bundled and (M.CONFIG_DIR / entry.bundled).is_file():
        return M.CONFIG_DIR / entry.bundled
    return None


def is_random_dir(base: str | os.PathLike) -> dict | None:
    """The marker of a folder written by make-random-weights ({"preset": ...}), or None."""
    marker = Path(base) / RANDOM_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {"preset": "unknown"}
    except (OSError, ValueError):
        return {"preset": "unknown"}
