"""Command line: weights commands, random weights in the official layout, animate's checks and call site.

The call site is exercised with a stand-in pipeline module (exact options, writing, audio), and once end
to end with the real pipeline on tiny random weights and the stand-in detector/recogniser of fakes.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import load_checkpoint
from hp_core import cli
from hp_core import weights as W

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_NAMES = ["unet", "dino", "image_proj", "motion_proj", "expression", "headpose", "pose_guider"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hp_core", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def ffprobe_text(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def decoded_frames(path: Path) -> int:
    out = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
                         capture_output=True, text=True).stderr
    return int(re.findall(r"frame=\s*(\d+)", out)[-1])


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    from PIL import Image
    Image.new("RGB", (40, 48), (120, 80, 60)).save(d / "face.png")
    subprocess.run([FFMPEG, "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25/2",
                    "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000", "-t", "1.2",
                    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(d / "drive.mp4")], check=True)
    models = d / "models"
    for name in OFFICIAL_NAMES:
        (models / "hyportrait").mkdir(parents=True, exist_ok=True)
        (models / "hyportrait" / f"{name}.pth").write_bytes(b"placeholder")
    (models / "vae").mkdir()
    (models / "vae" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"placeholder")
    return d


# ------------------------------------------------------------------------------------------ weights

def test_weights_status_and_verify(tmp_path, capsys):
    from hp_core.models import build_component
    torch.save({"w": torch.ones(2)}, tmp_path / "x.pth")  # loads with torch, but is no pose guider
    (tmp_path / "hyportrait").mkdir()
    (tmp_path / "x.pth").rename(tmp_path / "hyportrait" / "pose_guider.pth")
    assert cli.main(["weights", "status", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pose_guider\s+unverified\s+required", out, re.M)
    assert re.search(r"^unet\s+missing\s+required", out, re.M)
    assert re.search(r"^scrfd\s+missing\s+optional", out, re.M)
    assert "weights download" in out
    assert cli.main(["weights", "verify", "--models-dir", str(tmp_path)]) == 1  # required files missing
    assert cli.main(["weights", "verify", "--models-dir", str(tmp_path), "--only", "pose_guider"]) == 1
    assert "BAD" in capsys.readouterr().out and W.read_lock(tmp_path)["files"] == {}
    torch.save(build_component("pose_guider", "official").state_dict(), tmp_path / "hyportrait" / "pose_guider.pth")
    assert cli.main(["weights", "verify", "--models-dir", str(tmp_path), "--only", "pose_guider"]) == 0
    assert "hyportrait/pose_guider.pth" in W.read_lock(tmp_path)["files"]
    (tmp_path / "hyportrait" / "pose_guider.pth").write_bytes(b"changed")
    assert cli.main(["weights", "verify", "--models-dir", str(tmp_path), "--only", "pose_guider"]) == 1
    assert "BAD" in capsys.readouterr().out


def test_download_errors_end_in_one_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["weights", "download", "--models-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Offline mode") and "Traceback" not in err


def test_download_with_own_vae_skips_the_gated_repo(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    calls = []

    def fake(**kw):
        calls.append(kw["repo_id"])
        raise ConnectionError("offline in tests")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False, raising=False)
    bogus = tmp_path / "not_a_vae.safetensors"
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(bogus))
    assert cli.main(["weights", "download", "--models-dir", str(tmp_path / "m"), "--vae", str(bogus)]) == 1
    assert "does not contain a Stable Video Diffusion VAE" in capsys.readouterr().err and calls == []
    assert cli.main(["weights", "download", "--models-dir", str(tmp_path / "m"), "--only", "svd_vae"]) == 1
    assert calls == ["stabilityai/stable-video-diffusion-img2vid-xt"]


# ------------------------------------------------------------------------------------ random weights

def test_make_random_weights_tiny_uses_the_real_loading_path(tmp_path, capsys):
    from hp_core.models import build_component, load_component
    from hp_core.weights.vae import load_vae

    assert cli.main(["make-random-weights", "--preset", "tiny", "--out", str(tmp_path)]) == 0
    assert (tmp_path / W.RANDOM_MARKER).is_file()
    for name in OFFICIAL_NAMES:
        state = torch.load(tmp_path / "hyportrait" / f"{name}.pth", weights_only=True)
        expected = build_component(name, "tiny").state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    sd = load_checkpoint("pose_guider", [tmp_path])
    module = load_component("pose_guider", sd, preset="tiny", dtype=torch.float32)
    assert all(torch.equal(module.state_dict()[k], sd[k]) for k in sd)
    vae = load_vae([tmp_path])
    assert list(vae.config.block_out_channels) == [32, 32, 32, 32]
    assert all(r.state == "ok" for r in W.status([tmp_path]) if r.id in OFFICIAL_NAMES)


# ------------------------------------------------------------------------------------------ animate

def test_bad_arguments_exit_nonzero_without_traceback(inputs, tmp_path):
    proc = run_cli("animate", "--image", str(inputs / "face.png"))
    assert proc.returncode == 2 and "error:" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("animate", "--image", str(tmp_path / "missing.png"), "--video", str(inputs / "drive.mp4"),
                   "--out", str(tmp_path / "o.mp4"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: The image file") and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, match", [
    (["--overlap", "25"], "--overlap"),
    (["--steps", "0"], "--steps"),
    (["--out-suffix"], None),
    (["--max-frames", "0"], "--max-frames"),
    (["--appearance-cfg", "-1", "2"], "appearance-cfg"),
    (["--size", "100"], "--size"),
    (["--device", "gpu0"], "--device"),
])
def test_value_checks(inputs, tmp_path, capsys, extra, match):
    args = ["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
            "--out", str(tmp_path / "o.mp4"), "--models-dir", str(inputs / "models")]
    if match is None:  # unknown flag: argparse's one-line error, exit 2
        with pytest.raises(SystemExit) as exc:
            cli.main(args + extra)
        assert exc.value.code == 2
        return
    assert cli.main(args + extra) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and match in err


def test_not_an_mp4_and_unreadable_video(inputs, tmp_path, capsys):
    base = ["animate", "--image", str(inputs / "face.png"), "--models-dir", str(inputs / "models")]
    assert cli.main(base + ["--video", str(inputs / "drive.mp4"), "--out", str(tmp_path / "o.avi")]) == 1
    assert ".mp4" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"\x00garbage" * 50)
    assert cli.main(base + ["--video", str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "o.mp4")]) == 1
    assert "could not be read as a video" in capsys.readouterr().err


def test_missing_weights_are_listed_before_any_work(inputs, tmp_path, capsys):
    assert cli.main(["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
                     "--out", str(tmp_path / "o.mp4"), "--models-dir", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err
    assert "hyportrait/unet.pth" in err and "vae/diffusion_pytorch_model.fp16.safetensors" in err


def fake_run(monkeypatch, fn):
    from hp_core import run as R
    monkeypatch.setattr(R, "run", fn)


def test_animate_call_site_builds_the_typed_request(inputs, tmp_path, monkeypatch, capsys):
    from hp_core.run import RunResult
    seen = {}

    def run(request, progress):
        seen["request"] = request
        progress(1, 3, "denoise")
        progress(3, 3, "denoise")
        return RunResult(request.out, request.paste_back, 15, 12.5, warnings=["2 of 15 driving frames had no face"])

    fake_run(monkeypatch, run)
    out, full = tmp_path / "res" / "crop.mp4", tmp_path / "res" / "full.mp4"
    code = cli.main(["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
                     "--out", str(out), "--paste-back", str(full), "--models-dir", str(inputs / "models"),
                     "--appearance-cfg", "1.5", "2.5", "--motion-cfg", "2", "3", "--steps", "7", "--seed", "11",
                     "--window", "16", "--overlap", "4", "--shift", "2", "--max-frames", "40", "--preset", "tiny",
                     "--sampler", "dpmpp_2m", "--scheduler", "exponential", "--device", "cpu", "--dtype", "fp32"])
    assert code == 0, capsys.readouterr().err
    req = seen["request"]
    s = req.settings
    assert s.appearance_cfg == (1.5, 2.5) and s.motion_cfg == (2.0, 3.0)
    assert (s.steps, s.seed, s.window, s.overlap, s.shift) == (7, 11, 16, 4, 2)
    assert (req.max_frames, req.preset, req.device, req.precision) == (40, "tiny", "cpu", "fp32")
    assert (s.height, s.width) == (512, 512)
    assert (s.sampler, s.schedule) == ("dpmpp_2m", "exponential")
    assert req.image == inputs / "face.png" and req.video == inputs / "drive.mp4"
    assert req.out == out and req.paste_back == full and req.audio is True
    assert req.models_dirs == [inputs / "models"] and req.vae is None
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and f"wrote {full}" in text and "note: 2 of 15" in text


def test_run_errors_are_one_message(inputs, tmp_path, monkeypatch, capsys):
    from hp_core.errors import HPError
    args = ["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
            "--out", str(tmp_path / "o.mp4"), "--models-dir", str(inputs / "models")]

    def no_face(request, progress):
        raise HPError("No face was found in the source image.", hint="Use a portrait.")
    fake_run(monkeypatch, no_face)
    assert cli.main(args) == 1
    assert capsys.readouterr().err == "error: No face was found in the source image. Use a portrait.\n"


def test_animate_end_to_end_on_tiny_random_weights(tmp_path, capsys):
    from PIL import Image

    from fakes import driving_frames, portrait, write_clip, write_fake_arcface, write_fake_yolo

    models = tmp_path / "models"
    W.write_random_weights(models, "tiny", log=lambda s: None)
    write_fake_yolo(models / "yoloface_v5m.pt")
    write_fake_arcface(models / "arcface.onnx")
    Image.fromarray(portrait()).save(tmp_path / "face.png")
    frames = driving_frames(6)
    drive = tmp_path / "drive.mp4"
    write_clip(drive, frames, tone_hz=500, tone_seconds=1.0, crf=8)
    out, full = tmp_path / "crop.mp4", tmp_path / "full.mp4"
    code = cli.main(["animate", "--image", str(tmp_path / "face.png"), "--video", str(drive), "--out", str(out),
                     "--paste-back", str(full), "--models-dir", str(models), "--preset", "tiny", "--size", "64",
                     "--steps", "2", "--window", "8", "--overlap", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    for path, size in ((out, "64x64"), (full, "320x240")):
        text = ffprobe_text(path)
        assert decoded_frames(path) == 6 and size in text
        assert re.search(r"Video: .*? 10 fps", text) and "Audio:" in text


def test_gpu_out_of_memory_is_one_message(inputs, tmp_path, monkeypatch, capsys):
    def oom(request, progress):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    fake_run(monkeypatch, oom)
    assert cli.main(["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
                     "--out", str(tmp_path / "o.mp4"), "--models-dir", str(inputs / "models")]) == 1
    assert capsys.readouterr().err.startswith("error: the GPU ran out of memory")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda(inputs, tmp_path, capsys):
    assert cli.main(["animate", "--image", str(inputs / "face.png"), "--video", str(inputs / "drive.mp4"),
                     "--out", str(tmp_path / "o.mp4"), "--models-dir", str(inputs / "models"), "--device", "cuda"]) == 1
    assert "no CUDA GPU" in capsys.readouterr().err
