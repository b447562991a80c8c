"""Verified means loadable; every weight problem at once, before any work; the layouts users already have."""

from __future__ import annotations

import json
import shutil
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes import write_fake_arcface, write_fake_yolo
from hp_core import cli
from hp_core import weights as W
from hp_core.errors import HPError
from hp_core.models import COMPONENTS
from test_weights import official_pth


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    W.write_random_weights(root, "tiny", seed=0, log=lambda *_: None)
    write_fake_yolo(root / "yoloface_v5m.pt")
    write_fake_arcface(root / "arcface.onnx")
    return root


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / W.LOCK_NAME).unlink(missing_ok=True)
    return dst


# ---------------------------------------------------------------------------------- verified = loadable

def test_verify_rejects_a_component_copied_over_another_without_a_lock(tiny_dir, tmp_path):
    models = copy_of(tiny_dir, tmp_path / "m")
    shutil.copy(models / "hyportrait" / "dino.pth", models / "hyportrait" / "image_proj.pth")
    res = W.verify("image_proj", [models])
    assert res.state == "bad" and "looks like dino.pth" in res.reason
    assert "hyportrait/image_proj.pth" not in W.read_lock(models)["files"]
    # The CLI says BAD and what the file is instead; the real files of the folder stay ok.
    lines = []
    code = cli._cmd_weights(cli.build_parser().parse_args(
        ["weights", "verify", "--models-dir", str(models), "--only", "image_proj", "dino"]), out=lines.append)
    assert code == 1
    assert any("BAD" in line and "looks like dino.pth" in line for line in lines)
    assert any(line.startswith("dino") and "ok" in line for line in lines)


def test_official_layout_file_copied_over_another_is_rejected(tmp_path):
    (tmp_path / "hyportrait").mkdir()
    (tmp_path / "hyportrait" / "expression.pth").write_bytes(official_pth("headpose"))
    res = W.verify("expression", [tmp_path])
    assert res.state == "bad" and "looks like headpose.pth" in res.reason and "not the right file" in res.message
    assert W.read_lock(tmp_path)["files"] == {}
    (tmp_path / "hyportrait" / "expression.pth").write_bytes(official_pth("expression"))
    assert W.verify("expression", [tmp_path]).ok


def test_verify_checks_a_random_folder_against_its_own_preset(tiny_dir, tmp_path):
    models = copy_of(tiny_dir, tmp_path / "m")
    assert all(W.verify(n, [models]).ok for n in (*COMPONENTS, "svd_vae", "arcface", "yoloface"))
    res = W.verify("pose_guider", [models], preset="official", full=True)
    assert res.state == "bad" and "'tiny' preset" in res.reason


def test_onnx_and_detector_structure(tmp_path):
    bad = tmp_path / "arcface.onnx"
    from fakes import write_constant_onnx
    write_constant_onnx(bad, "input.1", [1, 3, 112, 112], [[[0.0] * 512]])
    (tmp_path / W.RANDOM_MARKER).write_text('{"preset": "tiny"}')  # no published hash: structure decides
    res = W.verify("arcface", [tmp_path])
    assert res.state == "bad" and "'data'" in res.reason
    write_fake_arcface(bad)
    assert W.verify("arcface", [tmp_path]).ok
    (tmp_path / "yoloface_v5m.pt").write_bytes(official_pth("image_proj"))
    res = W.verify("yoloface", [tmp_path])
    assert res.state == "bad" and "TorchScript" in res.reason


# ------------------------------------------------------------------------------------ pins after load

def test_loading_pins_only_after_a_successful_strict_load(tiny_dir, tmp_path, monkeypatch):
    from hp_core import models as models_mod
    from hp_core import pipeline
    models = copy_of(tiny_dir, tmp_path / "m")
    real = models_mod.load_component

    def failing(name, *a, **k):
        if name == "motion_proj":
            raise HPError("motion_proj does not fit")
        return real(name, *a, **k)
    monkeypatch.setattr(pipeline, "load_component", failing)
    with pytest.raises(HPError, match="does not fit"):
        pipeline.load_models_from_dirs([models], preset="tiny", device="cpu")
    assert W.read_lock(models)["files"] == {}
    assert not (models / W.CACHE_SUBDIR).exists()
    monkeypatch.setattr(pipeline, "load_component", real)
    pipeline.load_models_from_dirs([models], preset="tiny", device="cpu")
    pinned = W.read_lock(models)["files"]
    assert {f"hyportrait/{n}.pth" for n in COMPONENTS} | {"vae/diffusion_pytorch_model.safetensors"} <= set(pinned)
    assert all(pinned[f"hyportrait/{n}.pth"]["preset"] == "tiny" for n in COMPONENTS)


def test_a_wrong_preset_load_pins_nothing(tiny_dir, tmp_path):
    from hp_core import pipeline
    models = copy_of(tiny_dir, tmp_path / "m")
    with pytest.raises(HPError) as err:
        pipeline.load_models_from_dirs([models], preset="official", device="cpu")
    assert "'tiny' preset" in str(err.value)
    assert W.read_lock(models)["files"] == {}


# ------------------------------------------------------------------------------- every problem at once

def test_preflight_lists_every_missing_and_bad_file_in_one_message(tiny_dir, tmp_path):
    models = copy_of(tiny_dir, tmp_path / "m")
    (models / "hyportrait" / "unet.pth").unlink()
    shutil.copy(models / "hyportrait" / "dino.pth", models / "hyportrait" / "image_proj.pth")
    (models / "arcface.onnx").write_bytes(b"not onnx at all")
    (models / "yoloface_v5m.pt").unlink()
    shutil.rmtree(models / "vae")
    with pytest.raises(HPError) as err:
        W.preflight(W.needed_ids(), [models], preset="tiny")
    text = str(err.value)
    for what in ("hyportrait/unet.pth", "yoloface_v5m.pt", "vae/diffusion_pytorch_model.fp16.safetensors"):
        assert what in text  # missing
    assert "image_proj" in text and "looks like dino.pth" in text  # bad
    assert "arcface" in text and "not an ONNX model" in text
    assert str(models.resolve()) in text
    assert "HF_TOKEN" in text and "--token" in text and "--vae" in text and "models/vae" in text
    assert W.read_lock(models)["files"] == {}


def test_a_run_reports_every_weight_problem_before_any_work(tiny_dir, tmp_path, monkeypatch):
    from hp_core import run as R
    from hp_core.pipeline import Settings
    models = copy_of(tiny_dir, tmp_path / "m")
    (models / "arcface.onnx").unlink()
    (models / "yoloface_v5m.pt").unlink()
    shutil.copy(models / "hyportrait" / "headpose.pth", models / "hyportrait" / "expression.pth")
    monkeypatch.setattr(R.preprocess, "read_image_file", lambda path: np.zeros((8, 8, 3), np.uint8))  # no real inputs:
    monkeypatch.setattr(R, "probe_video", lambda path: None)  # only the weights are checked here
    detector_loads = []
    monkeypatch.setattr(R.preprocess, "load_yolo_face", lambda *a, **k: detector_loads.append(a))
    request = R.RunRequest(image=tmp_path / "face.png", video=tmp_path / "drive.mp4", out=tmp_path / "out.mp4",
                           models_dirs=[models], settings=Settings(), preset="tiny", device="cpu")
    with pytest.raises(HPError) as err:
        R.run(request)
    text = str(err.value)
    assert "arcface.onnx" in text and "yoloface_v5m.pt" in text and "looks like headpose.pth" in text
    assert not detector_loads  # refused before the face detector was even loaded


def test_loader_node_reports_every_problem_at_once(tiny_dir, tmp_path, monkeypatch):
    from nodes import core, loader
    models = copy_of(tiny_dir, tmp_path / "m")
    monkeypatch.setenv("HP_MODELS_DIR", str(models))
    monkeypatch.setattr(loader, "_LOADED", OrderedDict())
    (models / "hyportrait" / "pose_guider.pth").unlink()
    shutil.copy(models / "hyportrait" / "dino.pth", models / "hyportrait" / "unet.pth")
    (models / "arcface.onnx").unlink()
    values = {n: core.manifest_path(n) for n in COMPONENTS}
    values.update(vae=core.manifest_path("svd_vae"), preset="tiny", precision="auto", keep_on_gpu="all")
    with pytest.raises(HPError) as err:
        loader.HunyuanPortraitModelLoader().load(**values)
    text = str(err.value)
    assert "hyportrait/pose_guider.pth" in text and "looks like dino.pth" in text and "arcface.onnx" in text
    assert W.read_lock(models)["files"] == {}


# ------------------------------------------------------------------------- layouts users already have

@pytest.fixture
def hub_calls(monkeypatch):
    """Every download the code asks the Hub for (none is served): the list stays empty when nothing is fetched."""
    import huggingface_hub
    calls = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda **k: calls.append(k))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return calls


def _release_files(root: Path, tiny_dir: Path, pth_dir: str) -> None:
    for n in COMPONENTS:
        (root / pth_dir).mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_dir / "hyportrait" / f"{n}.pth", root / pth_dir / f"{n}.pth")


def test_release_pretrained_weights_folder_is_used_without_download(tiny_dir, tmp_path, hub_calls):
    calls = hub_calls
    # As the release's README leaves it: pretrained_weights/{hyportrait/*.pth, arcface.onnx, yoloface_v5m.pt, vae/}
    pw = tmp_path / "pretrained_weights"
    _release_files(pw, tiny_dir, "hyportrait")
    for name in ("arcface.onnx", "yoloface_v5m.pt"):
        shutil.copy(tiny_dir / name, pw / name)
    shutil.copytree(tiny_dir / "vae", pw / "vae")
    (pw / "unet").mkdir()
    (pw / "unet" / "config.json").write_text("{}")
    (pw / W.RANDOM_MARKER).write_text(json.dumps({"preset": "tiny"}))  # tiny stand-ins, not the release bytes
    assert W.download([pw], log=lambda s: None) == []  # --models-dir pretrained_weights
    for models_dir in (pw, tmp_path):  # ... or the folder that holds it
        found = W.preflight(W.needed_ids(), [models_dir], preset="tiny")
        assert found["unet"] == pw / "hyportrait" / "unet.pth" and found["arcface"] == pw / "arcface.onnx"
    assert calls == []
    assert W.resolve("dino", [tmp_path]) == pw / "hyportrait" / "dino.pth"
    assert W.resolve("svd_vae", [tmp_path]) == pw / "vae" / "diffusion_pytorch_model.safetensors"
    assert W.resolve("yoloface", [tmp_path]) == pw / "yoloface_v5m.pt"


def test_local_dir_root_layout_is_used_without_download(tiny_dir, tmp_path, hub_calls):
    calls = hub_calls
    # `huggingface-cli download tencent/HunyuanPortrait --local-dir X`: the seven files at X's root
    x = tmp_path / "X"
    _release_files(x, tiny_dir, ".")
    (x / W.RANDOM_MARKER).write_text(json.dumps({"preset": "tiny"}))
    assert W.download([x], ids=list(COMPONENTS), log=lambda s: None) == []
    assert calls == []
    assert W.preflight(list(COMPONENTS), [x], preset="tiny") == {n: x / f"{n}.pth" for n in COMPONENTS}
    from hp_core.pipeline import load_models_from_dirs
    models = load_models_from_dirs([x], preset="tiny", device="cpu", vae=tiny_dir / "vae")
    saved = torch.load(x / "pose_guider.pth", weights_only=True)["conv_out.bias"]
    assert torch.equal(models.pose_guider.state_dict()["conv_out.bias"], saved.to(models.pose_guider.conv_out.bias.dtype))
