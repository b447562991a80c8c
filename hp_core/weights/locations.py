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
import sys
from pathlib import Path
from typing import Iterable, Sequence

from . import manifest

ENV_MODELS_DIR = "HP_MODELS_DIR"
_PACKAGE_DIR = Path(os.path.abspath(__file__)).parent.parent  # hp_core; abspath keeps a custom_nodes link


def comfyui_models_dir(package_dir: str | os.PathLike = _PACKAGE_DIR) -> Path | None:
    """``<ComfyUI>/models/hunyuan_portrait`` when this hp_core is the one of a pack in ComfyUI's custom_nodes
    (``<base>/custom_nodes/<pack>/hp_core``; ComfyUI's models folder is ``<base>/models``), else None.

    The path as imported is tried first (a pack linked into custom_nodes), then the real one.
    """
    for pack in (Path(os.path.abspath(package_dir)).parent, Path(os.path.realpath(package_dir)).parent):
        if pack.parent.name == "custom_nodes":
            return pack.parent.parent / "models" / manifest.FOLDER_NAME
    return None


def user_models_dir() -> Path:
    """The per-user models folder: %LOCALAPPDATA%\\hunyuan_portrait\\models on Windows,
    ~/Library/Application Support/hunyuan_portrait/models on macOS, else
    $XDG_DATA_HOME/hunyuan_portrait/models (~/.local/share/hunyuan_portrait/models)."""
    home = Path.home()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else home / ".local" / "share"
    return base / manifest.FOLDER_NAME / "models"


def default_models_dir() -> Path:
    """The models folder used without --models-dir and $HP_MODELS_DIR, the same from every working folder:
    ComfyUI's ``models/hunyuan_portrait`` for the pack in custom_nodes (where the nodes look), else the
    per-user folder (user_models_dir)."""
    return comfyui_models_dir() or user_models_dir()


DEFAULT_MODELS_DIR = default_models_dir()
RELEASE_DIR = "pretrained_weights"
RANDOM_MARKER = "random_weights.json"


def default_search_dirs(models_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Model folders outside ComfyUI: --models-dir, else $HP_MODELS_DIR (os.pathsep-separated), else the default
    (default_models_dir: not relative to the working folder)."""
    if models_dir:
        dirs = [models_dir] if isinstance(models_dir, (str, os.PathLike)) else list(models_dir)
    elif os.environ.get(ENV_MODELS_DIR):
        dirs = [d for d in os.environ[ENV_MODELS_DIR].split(os.pathsep) if d]
    else:
        dirs = [default_models_dir()]
    return [Path(d).expanduser() for d in dirs]


def as_dirs(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """A folder or a list of folders as a list of Paths."""
    if isinstance(search_dirs, (str, os.PathLike)):
        search_dirs = [search_dirs]
    return [Path(d).expanduser() for d in search_dirs]


def candidates(entry: manifest.WeightEntry) -> list[tuple[str, bool]]:
    """(relative path, is the published file itself) in search order, for one models folder.

    The published file's size and hash apply to the first kind only; alt_local_paths name other files.
    """
    own = [(entry.local_path, True)]
    if entry.filename != entry.local_path:
        own.append((entry.filename, True))
    own += [(p, False) for p in entry.alt_local_paths]
    return own + [(f"{RELEASE_DIR}/{p}", same) for p, same in own]


def locate(entry: manifest.WeightEntry, search_dirs) -> tuple[Path, Path, bool] | None:
    """(models folder, file, is the published file) of the first copy found, in search order."""
    for base in as_dirs(search_dirs):
        for rel, same in candidates(entry):
            path = base / rel
            if path.is_file():
                return base, path, same
    return None


def resolve(entry_id: str, search_dirs) -> Path | None:
    """Path of the file ``entry_id`` in the first search folder that has it (or the pack's bundled copy)."""
    entry = manifest.get_entry(entry_id)
    found = locate(entry, search_dirs)
    if found:
        return found[1]
    if entry.bundled and (manifest.CONFIG_DIR / entry.bundled).is_file():
        return manifest.CONFIG_DIR / entry.bundled
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


def stand_ins(base: str | os.PathLike) -> dict[str, str]:
    """{relative path: what it is} of the stand-in files (face detector, ArcFace) a random folder's marker
    lists; empty for any other folder."""
    marker = is_random_dir(base) or {}
    listed = marker.get("stand_ins") or {}
    if isinstance(listed, list):
        listed = {rel: "stand-in" for rel in listed}
    return {str(k): str(v) for k, v in listed.items()} if isinstance(listed, dict) else {}


def is_stand_in(path: str | os.PathLike) -> bool:
    """True when ``path`` is a stand-in written by make-random-weights (listed by the marker of its folder
    or of a folder above it)."""
    path = Path(path)
    for base in list(path.parents)[:3]:
        if is_random_dir(base) is not None:
            return path.relative_to(base).as_posix() in stand_ins(base)
    return False


def marked_preset(search_dirs) -> str | None:
    """The preset recorded by the random-weights marker of the folder that holds the networks (the first
    UNet found), or None for released weights (or none found)."""
    found = locate(manifest.get_entry("unet"), search_dirs)
    if found is None:
        return None
    base, path, _ = found
    home = base / RELEASE_DIR if path.relative_to(base).as_posix().startswith(RELEASE_DIR + "/") else base
    marker = is_random_dir(home)
    preset = marker.get("preset") if marker else None
    return str(preset) if preset not in (None, "unknown") else None


def folder_preset(search_dirs) -> str:
    """The preset a run uses when none is given: the networks' folder's random-weights marker, else
    'official'."""
    return marked_preset(search_dirs) or "official"
