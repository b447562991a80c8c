"""The SCRFD detector is also found in ComfyUI's models/insightface folder (buffalo_l's det_10g.onnx or
antelopev2's scrfd_10g_bnkps.onnx), which the bridge registers next to what other packs registered."""

from __future__ import annotations

import types

import numpy as np
import pytest

from fakes import write_constant_onnx

from hp_core.errors import HPError
from hp_core.preprocess import find_scrfd
from nodes import bridge, core


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"onnx")
    return path


def test_find_scrfd_in_insightface_roots(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert find_scrfd([a, b]) is None
    nested = _touch(b / "models" / "antelopev2" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    assert find_scrfd([a, b]) == nested
    buffalo = _touch(b / "models" / "buffalo_l" / "det_10g.onnx")
    assert find_scrfd([a, b]) == buffalo  # buffalo_l first
    first = _touch(a / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    assert find_scrfd([a, b]) == first  # folders in ComfyUI's order


def test_bridge_registers_comfyui_insightface_folder(monkeypatch):
    registry = {}
    fp = types.SimpleNamespace(models_dir="/comfy/models", folder_names_and_paths=registry,
                               add_model_folder_path=lambda name, path, is_default=False:
                               registry.setdefault(name, ([], set()))[0].append(path),
                               get_folder_paths=lambda name: list(registry[name][0]))
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_fp", fp)
    assert [p.as_posix() for p in bridge.insightface_dirs()] == ["/comfy/models/insightface"]
    registry["insightface"] = (["/nas/insightface"], set())  # another pack or the yaml registered it
    assert [p.as_posix() for p in bridge.insightface_dirs()] == ["/nas/insightface"]
    monkeypatch.setattr(bridge, "COMFY", False)
    assert bridge.insightface_dirs() == []


def test_face_detector_path_falls_back_to_insightface_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HP_MODELS_DIR", str(tmp_path / "hp"))
    monkeypatch.setattr(bridge, "insightface_dirs", lambda: [tmp_path / "insightface"])
    with pytest.raises(HPError, match="models/insightface"):
        core._scrfd_path()
    found = _touch(tmp_path / "insightface" / "models" / "buffalo_l" / "det_10g.onnx")
    assert core._scrfd_path() == found
    # the pack's own file is checked for structure (SCRFD: one 1x3xHxW input, 9 outputs), so its stand-in
    # has the real file's layout: scores, boxes and 5-point landmarks for strides 8, 16 and 32
    outputs = [np.zeros((n, k), np.float32) for k in (1, 4, 10) for n in (8, 4, 2)]
    own = write_constant_onnx(tmp_path / "hp" / "insightface" / "models" / "buffalo_l" / "det_10g.onnx",
                              "input.1", [1, 3, "height", "width"], outputs)
    assert core._scrfd_path() == own  # the pack's own folder comes first
