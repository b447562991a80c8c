"""Every call from the nodes into hp_core that opens files: weights, VAE, face detector, ArcFace, DWPose.

One module, so a change in hp_core's loading API touches one place. Opened detectors/recognisers are
kept in small keyed caches (file identity + device), so a second run does not reopen them.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

import torch

from hp_core import weights as W
from hp_core.errors import HPError

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
    """The manifest file ``entry_id`` from the pack's model folders, or one HPError saying how to get it."""
    dirs = bridge.search_dirs()
    path = W.resolve(entry_id, dirs)
    if path is None:
        raise HPError(f"The {what} file is missing.\n" + W.missing_message([W.get_entry(entry_id)], dirs))
    return path


# ------------------------------------------------------------------------------------------ weights

def manifest_path(name: str) -> str:
    """The manifest's local path of a network or file id (the loader's default choice)."""
    return W.get_entry(name).local_path


def resolve_choices(choices: dict[str, str]) -> dict[str, Path]:
    """Dropdown choices {manifest id: file name} -> files, or one HPError naming every missing file.

    The manifest's own name also finds its alternative names (e.g. the non-fp16 VAE); any other name must
    be a file in one of the pack's model folders."""
    dirs = bridge.search_dirs()
    found, missing, unknown = {}, [], []
    for entry_id, choice in choices.items():
        entry = W.get_entry(entry_id)
        if choice in (entry.local_path, *entry.alt_local_paths):
            path = W.resolve(entry_id, dirs)
            if path is None:
                missing.append(entry)
            else:
                found[entry_id] = path
        else:
            path = bridge.model_file_path(choice)
            if path is None:
                unknown.append(f"{choice!r} (chosen for {entry_id}; the official file is {entry.local_path})")
            else:
                found[entry_id] = path
    if missing or unknown:
        lines = [W.missing_message(missing, dirs)] if missing else []
        if unknown:
            lines.append(f"Not in any {W.FOLDER_NAME} model folder ({', '.join(str(d) for d in dirs)}): "
                         + "; ".join(unknown) + ". Pick files the dropdowns list, or get the official ones with "
                         "`python -m hp_core weights download` (see the README, Weights).")
        raise HPError("\n".join(lines))
    return found


def read_weights(name: str, path: Path) -> dict[str, torch.Tensor]:
    """State dict of a network file: verified and cached by hp_core.weights when it is the manifest's
    file, read directly (weights only) otherwise."""
    from hp_core.checkpoint import read_state_dict

    dirs = bridge.search_dirs()
    if W.resolve(name, dirs) == path and path.suffix in (".pth", ".safetensors"):
        return W.load_checkpoint(name, dirs)
    return read_state_dict(path, component=name)


def load_network(name: str, path: Path, preset: str, dtype: torch.dtype) -> torch.nn.Module:
    """One network built for ``preset`` with the file's weights, strictly, on the CPU in ``dtype``."""
    from hp_core.models import load_component

    state = read_weights(name, path)
    try:
        return load_component(name, state, preset=preset, dtype=dtype, device="cpu", source=str(path))
    except HPError as err:
        marker = W.is_random_dir(_models_root(path))
        if marker and marker.get("preset") not in (None, preset):
            raise HPError(f"{err} The folder holds random '{marker.get('preset')}' weights.",
                          hint=f"Set the loader's preset to '{marker.get('preset')}'.") from err
        raise


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
    from hp_core.svd_vae import load_vae as _load

    return _load([], path, device="cpu", dtype=dtype)


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
            from hp_core.preprocess import load_yolo_face
            return load_yolo_face(path, device)
        from hp_core.preprocess import load_scrfd
        return load_scrfd(path, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("detector", kind, str(device)) + file_key(path), make)


def _scrfd_path() -> Path:
    """SCRFD from the pack's folder, else from ComfyUI's models/insightface (buffalo_l or antelopev2)."""
    from hp_core.preprocess import find_scrfd

    if W.resolve("scrfd", bridge.search_dirs()) is None:
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
        from hp_core.preprocess import load_arcface
        return load_arcface(path, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("arcface", str(device)) + file_key(path), make)


def dwpose():
    """The DWPose estimator (yolox_l.onnx + dw-ll_ucoco_384.onnx), cached."""
    det = require_entry("dwpose_det", "DWPose person detector (dwpose/yolox_l.onnx)")
    pose = require_entry("dwpose_pose", "DWPose keypoint model (dwpose/dw-ll_ucoco_384.onnx)")
    device = bridge.torch_device()

    def make():
        from hp_core.preprocess import load_dwpose
        return load_dwpose(det, pose, _onnx_providers(device))

    return _PREPROCESS_CACHE.get(("dwpose", str(device)) + file_key(det) + file_key(pose), make)


def prepare(source: Any, frames: Any, detector, *, face_index: int | None, max_frames: int | None,
            smoothing: int, driving_face_index: int | None, edge_mode: str,
            progress: Callable[[int, int], None] | None):
    """hp_core's preprocessing of a source image + driving frames (PreparedInputs)."""
    from hp_core.preprocess import prepare_inputs

    return prepare_inputs(source, frames, detector, face_index=face_index, max_frames=max_frames,
                          smoothing=smoothing if smoothing > 1 else False,
                          driving_face_index=driving_face_index, edge_mode=edge_mode, progress=progress)


def clear_caches() -> None:
    """Forget opened detectors and recognisers (tests; a user never needs it)."""
    _PREPROCESS_CACHE.clear()


__all__ = ["DETECTORS", "arcface", "clear_caches", "dwpose", "face_detector", "file_key", "load_network",
           "load_vae", "manifest_path", "prepare", "read_weights", "require_entry", "resolve_choices"]
