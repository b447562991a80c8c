"""Every call from the nodes into hp_core that opens files: weights, VAE, face detector, ArcFace, DWPose.

One module, so a change in hp_core's loading API touches one place. Opened detectors/recognisers are
kept in small keyed caches (file identity + device), so a second run does not reopen them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from hp_core import weights
from hp_core.checkpoint import read_state_dict
from hp_core.errors import HPError
from hp_core.models import load_component
from hp_core.preprocess import find_scrfd, load_arcface, load_dwpose, load_scrfd, load_yolo_face
from hp_core.weights import vae as weights_vae

from . import bridge

DETECTORS = {"yolo": "yoloface", "scrfd": "scrfd"}  # widget value -> manifest id


class _Cache:
    """A tiny LRU keyed by file identity, so replaced files are reopened and memory stays bounded."""

    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()


_PREPROCESS_CACHE = _Cache(4)
bridge.ON_OOM.append(_PREPROCESS_CACHE.clear)  # detectors / ONNX sessions hold device memory of their own


def file_key(path: Path) -> tuple:
    """(path, size, mtime): changes when the file is replaced."""
    st = Path(path).stat()
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


def require_entry(entry_id: str, what: str) -> Path:
    """The manifest file ``entry_id`` from the pack's model folders, checked, or one HPError saying how to get
    it (missing) or what is wrong with it (damaged or not the right file)."""
    dirs = bridge.search_dirs()
    found = weights.check_files([entry_id], dirs, preset=None)
    if not found.ok:
        raise HPError(f"The {what} file cannot be used.\n" + weights.problems_message(found.missing, found.bad, dirs))
    return found.paths[entry_id]


# ------------------------------------------------------------------------------------------ weights

def manifest_path(name: str) -> str:
    """The manifest's local path of a network or file id (the loader's default choice)."""
    return weights.get_entry(name).local_path


# Files every graph of the release also needs (the appearance and motion nodes open them); their problems
# join the loader's message when there are any, but they do not stop the loader on their own.
ALSO_NEEDED = ("arcface", "yoloface")


def resolve_choices(choices: dict[str, str], *, preset: str | None = None, vae: Path | None = None) -> dict[str, Path]:
    """Dropdown choices {manifest id: file name} -> files, each checked for ``preset`` (presence, size/hash,
    structure), or ONE HPError naming every missing, unusable or unknown file (ArcFace and the face detector
    included), before anything is loaded.

    The manifest's own name also finds the file where users already have it (e.g. the non-fp16 VAE, the
    release's pretrained_weights/ layout); any other name must be a file in one of the pack's model
    folders. ``vae``: a VAE from ComfyUI's models/vae, checked instead of 'svd_vae'."""
    dirs = bridge.search_dirs()
    default_ids = [i for i, c in choices.items()
                   if c in (weights.get_entry(i).local_path, *weights.get_entry(i).alt_local_paths)]
    found = weights.check_files(default_ids + (["svd_vae"] if vae is not None else []), dirs, vae=vae, preset=preset)
    unknown = []
    for entry_id, choice in choices.items():
        if entry_id in default_ids:
            continue
        entry = weights.get_entry(entry_id)
        path = bridge.model_file_path(choice)
        if path is None:
            unknown.append(f"{choice!r} (chosen for {entry_id}; the official file is {entry.local_path})")
            continue
        why = (weights.check_explicit_vae(path) if entry_id == "svd_vae"
               else weights.check_component(entry, path, preset or "official"))
        if why:
            found.bad.append((entry, path.resolve(), why))
        else:
            found.paths[entry_id] = path
    if found.ok and not unknown:
        return found.paths
    extra = weights.check_files(ALSO_NEEDED, dirs, preset=preset)
    lines = [weights.problems_message(found.missing + extra.missing, found.bad + extra.bad, dirs)] \
        if found.missing or found.bad else []
    presets = {str(m.get("preset")) for m in map(weights.is_random_dir, dirs) if m} - {str(preset)}
    if found.bad and presets:
        lines.append(f"The model folder holds random '{sorted(presets)[0]}' weights: set the loader's preset to "
                     f"'{sorted(presets)[0]}'.")
    if unknown:
        lines.append(f"Not in any {weights.FOLDER_NAME} model folder ({', '.join(str(d.resolve()) for d in dirs)}): "
                     + "; ".join(unknown) + ". Pick files the dropdowns list, or get the official ones with "
                     "`python -m hp_core weights download` (see the README, Weights).")
    raise HPError("\n".join(lines))


def load_network(name: str, path: Path, preset: str, dtype: torch.dtype, fp8: bool = False) -> torch.nn.Module:
    """One network built for ``preset`` with the file's weights, strictly, on the CPU in ``dtype`` (``fp8``:
    Linear/conv weights stored as fp8, computed in ``dtype``). The manifest's file is read through hp_core's
    verified cache and pinned only after the strict load."""

    dirs = bridge.search_dirs()
    ckpt = None
    if weights.resolve(name, dirs) == path and path.suffix in (".pth", ".safetensors"):
        ckpt = weights.read_checkpoint(name, dirs, preset=preset)
        state = ckpt.state
    else:
        state = read_state_dict(path, component=name)
    try:
        module = load_component(name, state, preset=preset, dtype=dtype, device="cpu", source=str(path), fp8=fp8)
    except HPError as err:
        marker = weights.is_random_dir(_models_root(path))
        if marker and marker.get("preset") not in (None, preset):
            raise HPError(f"{err} The folder holds random '{marker.get('preset')}' weights.",
                          hint=f"Set the loader's preset to '{marker.get('preset')}'.") from err
        raise
    if ckpt is not None:
        weights.confirm_checkpoint(ckpt)
    return module


def _models_root(path: Path) -> Path:
    for base in bridge.search_dirs():
        try:
            path.resolve().relative_to(base.resolve())
            return base
        except ValueError:
            continue
    return path.parent


def load_vae(path: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The SVD temporal VAE from a diffusers folder/file or a single-file SVD checkpoint, on the CPU."""

    return weights_vae.load_vae([], path, device="cpu", dtype=dtype)


# -------------------------------------------------------------------------------------- preprocessing

def _onnx_providers(device: torch.device) -> list[str] | None:
    return ["CPUExecutionProvider"] if device.type == "cpu" else None  # None: hp_core picks CUDA when it can


def face_detector(kind: str):
    """The face detector widget value ('yolo' or 'scrfd') -> an opened FaceDetector (cached)."""
    if kind not in DETECTORS:
        raise HPError(f"Unknown face detector {kind!r}.", hint=f"Choose one of {', '.join(DETECTORS)}.")
    path = _scrfd_path() if kind == "scrfd" else require_entry(DETECTORS[kind], "face detector (YOLOv5-face)")
    device = bridge.torch_device()

    def make():
        if kind == "yolo":
            return load_yolo_face(path, device)
        return load_scrfd(path, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("detector", kind, str(device)) + file_key(path), make)


def _scrfd_path() -> Path:
    """SCRFD from the pack's folder, else from ComfyUI's models/insightface (buffalo_l or antelopev2)."""

    if weights.resolve("scrfd", bridge.search_dirs()) is None:
        found = find_scrfd(bridge.insightface_dirs())
        if found is not None:
            return found
    return require_entry("scrfd", "face detector (SCRFD det_10g.onnx; also looked for in ComfyUI's "
                                  "models/insightface/models/buffalo_l or antelopev2)")


def arcface():
    """The ArcFace recogniser (arcface.onnx), cached."""
    path = require_entry("arcface", "ArcFace (arcface.onnx)")
    device = bridge.torch_device()

    def make():
        return load_arcface(path, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("arcface", str(device)) + file_key(path), make)


def dwpose():
    """The DWPose estimator (yolox_l.onnx + dw-ll_ucoco_384.onnx), cached."""
    det = require_entry("dwpose_det", "DWPose person detector (dwpose/yolox_l.onnx)")
    pose = require_entry("dwpose_pose", "DWPose keypoint model (dwpose/dw-ll_ucoco_384.onnx)")
    device = bridge.torch_device()

    def make():
        return load_dwpose(det, pose, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("dwpose", str(device)) + file_key(det) + file_key(pose), make)


__all__ = ["DETECTORS", "arcface", "dwpose", "face_detector", "file_key", "load_network",
           "load_vae", "manifest_path", "require_entry", "resolve_choices"]
