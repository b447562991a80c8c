"""ComfyUI internals are touched in one helper (bridge.ComfyInternals), which names the ComfyUI version it
was tested against and falls back to public calls when an internal is missing."""

from __future__ import annotations

import ast
import sys
import tomllib
import types
from pathlib import Path


from nodes import bridge, comfy_sampler

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_bridge_imports_comfyui_or_edits_its_model_list():
    offenders = []
    for path in sorted((ROOT / "nodes").glob("*.py")):
        if path.name == "bridge.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: import {n}" for n in names
                          if n.split(".")[0] in ("comfy", "folder_paths", "latent_preview", "server")]
            if isinstance(node, ast.Attribute) and node.attr == "current_loaded_models":
                offenders.append(f"{path.name}: current_loaded_models")
    assert offenders == []
    # the version the internals were checked against is the one the pack says it needs
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["comfy"]["requires-comfyui"] == f">={bridge.ComfyInternals.TESTED_WITH}"


class _Loaded:
    def __init__(self, model):
        self.model = model

    def model_unload(self):
        return True


def test_unload_removes_only_our_entry(monkeypatch):
    ours, theirs = object(), object()
    mm = types.SimpleNamespace(current_loaded_models=[_Loaded(theirs), _Loaded(ours)])
    monkeypatch.setattr(bridge, "_mm", mm)
    assert bridge.ComfyInternals.unload(ours) is True
    assert [lm.model for lm in mm.current_loaded_models] == [theirs]
    assert bridge.ComfyInternals.unload(ours) is False  # not loaded any more: nothing to do


def test_unload_falls_back_to_the_public_detach(monkeypatch):
    monkeypatch.setattr(bridge, "_mm", types.SimpleNamespace())  # a ComfyUI without the internal list
    detached = []
    patcher = types.SimpleNamespace(detach=lambda: detached.append(True))
    assert bridge.ComfyInternals.unload(patcher) is True and detached == [True]


def test_model_sampling_falls_back_when_comfy_lacks_the_classes(monkeypatch):
    comfy = types.ModuleType("comfy")
    ms = types.ModuleType("comfy.model_sampling")  # no ModelSamplingContinuousEDM / V_PREDICTION
    comfy.model_sampling = ms
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_sampling", ms)
    assert bridge.ComfyInternals.svd_model_sampling(0.002, 700.0) is None
    assert isinstance(comfy_sampler.model_sampling(), comfy_sampler._PlainEDMSampling)


def test_model_sampling_uses_comfyui_classes_when_present(monkeypatch):
    comfy = types.ModuleType("comfy")
    ms = types.ModuleType("comfy.model_sampling")

    class ModelSamplingContinuousEDM:
        def __init__(self, config):
            self.sigma_min = config.sampling_settings["sigma_min"]
            self.sigma_max = config.sampling_settings["sigma_max"]

    class V_PREDICTION:
        pass

    ms.ModelSamplingContinuousEDM, ms.V_PREDICTION = ModelSamplingContinuousEDM, V_PREDICTION
    comfy.model_sampling = ms
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_sampling", ms)
    sampling = comfy_sampler.model_sampling()
    assert isinstance(sampling, ModelSamplingContinuousEDM) and isinstance(sampling, V_PREDICTION)
    assert (sampling.sigma_min, sampling.sigma_max) == (0.002, 700.0)
