"""The first hour with the CLI: no onnxruntime provider error on a CPU-only machine, an offline download that
answers at once, a random-weights folder that animates on its own (its preset read from the folder), a CPU
run that says how long it will take, device advice that fits the PyTorch build, and help for every flag."""

from __future__ import annotations

import argparse
import json
import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hp_core import cli
from hp_core import weights as W
from hp_core.errors import HPError
from hp_core.preprocess import onnx_session as OS
from hp_core.weights import hub as H
from hp_core.weights import random_weights as RW

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour of a machine without a GPU")


# ------------------------------------------------------------------------------- 3. onnxruntime on a CPU

@NO_GPU
def test_cpu_only_machine_asks_onnxruntime_for_the_cpu_only(tmp_path, capfd):
    providers, warning = OS.onnx_providers()
    assert providers == [OS.CPU] and warning is None
    # onnxruntime-gpu lists CUDA on any machine: without a GPU it is still not asked for
    assert OS.onnx_providers(available=[OS.CUDA, OS.CPU], cuda_present=False) == ([OS.CPU], None)
    model = RW.write_stand_in_arcface(tmp_path / "arcface.onnx")
    capfd.readouterr()
    for asked in (None, [OS.CUDA, OS.CPU]):  # chosen here, or CUDA named by the caller
        session = OS.open_session(model, asked, what="ArcFace")
        assert session.get_providers() == [OS.CPU]
        session.run(None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""


def test_a_gpu_machine_still_gets_cuda():
    assert OS.onnx_providers(available=[OS.CUDA, OS.CPU], cuda_present=True) == ([OS.CUDA, OS.CPU], None)


# ------------------------------------------------------------------------------- 4. offline download

def _refused_endpoint() -> str:
    """A local address where nothing listens: connecting is refused at once (no real network)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def unreachable_hub(monkeypatch):
    """The real huggingface_hub download, pointed at an endpoint that refuses connections; records every call
    and every retry pause huggingface_hub would take."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    real = huggingface_hub.hf_hub_download
    endpoint = _refused_endpoint()
    seen = {"calls": 0, "sleeps": []}

    def download(**kwargs):
        seen["calls"] += 1
        return real(endpoint=endpoint, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(_http.time, "sleep", lambda s: seen["sleeps"].append(s))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    return seen


def test_offline_download_ends_after_one_attempt_with_one_message(tmp_path, unreachable_hub, capsys, caplog):
    caplog.set_level(logging.WARNING)
    models = tmp_path / "models"
    start = time.monotonic()
    assert cli.main(["weights", "download", "--models-dir", str(models)]) == 1
    elapsed = time.monotonic() - start
    captured = capsys.readouterr()
    assert elapsed < 5, elapsed
    assert unreachable_hub["calls"] == 1 and unreachable_hub["sleeps"] == []  # no retries, no other file tried
    assert captured.err.count("No connection to the Hugging Face Hub") == 1
    assert "nothing was downloaded" in captured.err and "hyportrait/unet.pth" in captured.err
    assert "Retrying" not in captured.err + captured.out + caplog.text
    assert "thrown while requesting" not in captured.err + caplog.text
    assert not models.exists()  # the folder this call made is gone again


def test_offline_download_never_calls_the_hub_again_once_it_failed(tmp_path, unreachable_hub):
    with pytest.raises(HPError, match="No connection") as err:
        W.download([tmp_path / "m"], ids=["pose_guider", "dino"], log=lambda s: None)
    assert unreachable_hub["calls"] == 1 and "hyportrait/dino.pth" in str(err.value)


def test_once_the_hub_answered_connection_errors_get_huggingface_hubs_retries():
    guard = H._FailFast()
    record = logging.LogRecord("huggingface_hub.utils._http", logging.WARNING, __file__, 1,
                               "'refused' thrown while requesting HEAD https://huggingface.co/x", None, None)
    try:
        raise ConnectionRefusedError("refused")
    except ConnectionRefusedError:
        with pytest.raises(H.NoConnection, match="huggingface.co"):
            guard.filter(record)
        guard.active = False
        assert guard.filter(record) is True
    guard.active = True
    try:  # an error on an open connection (a read timeout) is retried even before the first answer
        raise TimeoutError("read timed out")
    except TimeoutError:
        assert guard.filter(record) is True


# --------------------------------------------------------------------- 5. a random folder animates alone

@pytest.fixture(scope="module")
def random_folder(tmp_path_factory):
    """`make-random-weights --preset tiny` through the CLI, a synthetic portrait and a driving clip."""
    from PIL import Image

    from fakes import driving_frames, portrait, write_clip

    d = tmp_path_factory.mktemp("first_hour")
    assert cli.main(["make-random-weights", "--preset", "tiny", "--out", str(d / "models")]) == 0
    Image.fromarray(portrait()).save(d / "face.png")
    write_clip(d / "drive.mp4", driving_frames(6), crf=8)
    return d


def test_make_random_weights_writes_marked_stand_ins(random_folder, capsys):
    models = random_folder / "models"
    marker = json.loads((models / W.RANDOM_MARKER).read_text())
    assert marker["preset"] == "tiny" and set(marker["stand_ins"]) == {"yoloface_v5m.pt", "arcface.onnx"}
    assert all(W.verify(i, [models]).ok for i in ("yoloface", "arcface"))
    assert cli.main(["weights", "status", "--models-dir", str(models)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line and " " in line}
    assert "(stand-in)" in lines["yoloface"] and "(stand-in)" in lines["arcface"]
    assert "(stand-in)" not in lines["unet"] and " ok " in lines["yoloface"]


def test_the_arcface_stand_in_is_the_model_onnx_builds(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((3, 512)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["data"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("MatMul", ["m", "w"], ["emb"])]
    graph = helper.make_graph(nodes, "arcface_fake",
                              [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 112, 112])],
                              [helper.make_tensor_value_info("emb", TensorProto.FLOAT, [1, 512])],
                              [numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    assert RW.write_stand_in_arcface(tmp_path / "a.onnx").read_bytes() == model.SerializeToString()


def test_a_random_folder_animates_with_no_other_file_and_its_own_preset(random_folder, tmp_path, capsys):
    d = random_folder
    code = cli.main(["animate", "--models-dir", str(d / "models"), "--image", str(d / "face.png"),
                     "--video", str(d / "drive.mp4"), "--out", str(tmp_path / "z.mp4"), "--size", "64",
                     "--steps", "1"])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "z.mp4").stat().st_size > 0


def test_the_preset_comes_from_the_folder_and_a_wrong_one_says_what_to_pass(random_folder, tmp_path, capsys):
    d = random_folder
    base = ["animate", "--image", str(d / "face.png"), "--video", str(d / "drive.mp4"), "--out",
            str(tmp_path / "o.mp4"), "--size", "64", "--steps", "1"]
    parser = cli.build_parser()
    assert parser.parse_args(base + ["--models-dir", str(d / "models")]).preset == "tiny"
    assert parser.parse_args(base + ["--models-dir", str(tmp_path / "empty")]).preset == "official"
    assert parser.parse_args(base + ["--models-dir", str(d / "models"), "--preset", "official"]).preset == "official"
    extract = ["motion", "extract", "--video", "v.mp4", "--out", "p.safetensors", "--models-dir", str(d / "models")]
    assert parser.parse_args(extract).preset == "tiny"
    assert parser.parse_args(["weights", "verify", "--models-dir", str(d / "models")]).preset is None
    assert cli.main(base + ["--models-dir", str(d / "models"), "--preset", "official"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Run with --preset tiny (or leave --preset out")
    assert len(err.strip().splitlines()) <= 3  # the action first, then one line of detail
    assert not (tmp_path / "o.mp4").exists()


# ---------------------------------------------------------------------- 7. CPU time, devices, help texts

def _request(**settings):
    from hp_core.pipeline import Settings
    from hp_core.run import RunRequest
    return RunRequest(image=Path("face.png"), out=Path("o.mp4"), video=Path("drive.mp4"),
                      settings=Settings(**settings), preset="official")


def test_a_full_size_cpu_run_says_how_long_and_how_to_be_quick():
    from hp_core.run import cpu_time_note

    cpu = torch.device("cpu")
    note = cpu_time_note(_request(), cpu, 125, flops=1e12)
    # 125 frames + 2 x 15 padding = 155 in windows of 25 sharing 3: 8 windows x 25 steps x 3 branches
    assert "600 UNet evaluations" in note and "8 windows" in note and "at 512x512" in note
    seconds = 600 * 25 * 1.14e12 / 1e12
    assert f"about {seconds / 3600:.0f} hours on this CPU" in note
    assert "--size 256 --steps 10" in note and "GPU" in note
    quick = cpu_time_note(_request(height=256, width=256, steps=10), cpu, 125, flops=1e12)
    assert "240 UNet evaluations" in quick and "--size 256" not in quick
    assert cpu_time_note(_request(), torch.device("cuda"), 125, flops=1e12) is None
    tiny = _request()
    tiny.preset = "tiny"
    assert cpu_time_note(tiny, cpu, 125, flops=1e12) is None


def test_preflight_of_a_cpu_run_logs_the_estimate_up_front(random_folder, tmp_path, monkeypatch, caplog):
    from hp_core import run as R

    monkeypatch.setattr(R, "weight_files", lambda request, dirs: {})  # the official files are not needed here
    monkeypatch.setattr(R, "_cpu_flops", lambda seconds=0.1: 1e12)
    request = _request()
    request.image, request.video, request.out = random_folder / "face.png", random_folder / "drive.mp4", tmp_path / "o.mp4"
    request.device = "cpu"
    with caplog.at_level(logging.WARNING, logger="hp_core.run"):
        R.preflight(request)
    assert "note: this run uses the CPU: 6 frames" in caplog.text and "on this CPU" in caplog.text


@pytest.mark.parametrize("cuda_build, advice", [("12.4", "check the NVIDIA driver"), (None, "Install a CUDA build")])
def test_cuda_without_a_gpu_gets_advice_for_this_pytorch(monkeypatch, cuda_build, advice):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", cuda_build)
    with pytest.raises(HPError) as err:
        cli._check_device("cuda")
    assert advice in str(err.value)
    if cuda_build:
        assert "PyTorch has CUDA but sees no GPU" in str(err.value) and "CUDA_VISIBLE_DEVICES" in str(err.value)


def _parsers(parser: argparse.ArgumentParser, path=("python -m hp_core",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def test_every_flag_of_every_command_has_help():
    missing = [" ".join(path) + " " + "/".join(action.option_strings or [action.dest])
               for path, parser in _parsers(cli.build_parser()) for action in parser._actions
               if not (action.help or "").strip() or action.help == argparse.SUPPRESS]
    assert missing == []


@pytest.mark.parametrize("argv", [["--help"], ["animate", "--help"]])
def test_help_ends_with_examples(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 0
    text = capsys.readouterr().out
    tail = text[text.index("examples:"):]
    assert "python -m hp_core animate --image face.jpg --video drive.mp4 --out" in tail
    assert "--size 256 --steps 10" in tail
