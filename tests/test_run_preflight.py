"""Nothing lost, nothing killed: outputs never overwrite inputs, bad settings and files fail before the face
detector runs, interrupted runs leave nothing behind, huge windows are clamped, 16-bit greys stay grey,
and the sampler node refuses impossible widgets at queue time.

Clips are made with imageio-ffmpeg's ffmpeg in the tests; weights are tiny random ones with the stand-in
detector and recogniser of fakes.py.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import portrait, write_clip, write_fake_arcface, write_fake_yolo
from hp_core import cli
from inmemory import conditions_from_prepared, prepare_inputs
from hp_core import preprocess as PP
from nodes_env import make_models_dir


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_clip(path: Path, frames: int = 4, audio: bool = True) -> Path:
    """A 64x64 clip whose red face drifts, with or without a sine tone."""
    data = np.stack([portrait(64, 64, (16 + t, 14, 44 + t, 46)) for t in range(frames)])
    return write_clip(path, data, tone_hz=400 if audio else None)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    make_models_dir(d / "models")
    Image.fromarray(portrait()).save(d / "face.png")
    make_clip(d / "drive_audio.mp4", audio=True)
    make_clip(d / "drive_silent.mp4", audio=False)
    return d


def base_args(env: Path, video: Path, out: Path, *extra: str) -> list[str]:
    return ["animate", "--image", str(env / "face.png"), "--video", str(video), "--out", str(out),
            "--models-dir", str(env / "models"), "--preset", "tiny", "--size", "64", "--steps", "1",
            "--window", "8", "--overlap", "2", "--device", "cpu", *extra]


@pytest.fixture
def detector_calls(monkeypatch):
    """Counts face-detector loads and detections (the first heavy step of a run)."""
    calls = []
    real = PP.load_yolo_face

    def counting(*a, **k):
        calls.append("load")
        det = real(*a, **k)
        detect = det.detect
        det.detect = lambda img: (calls.append("detect"), detect(img))[1]
        return det
    monkeypatch.setattr(PP, "load_yolo_face", counting)
    return calls


# ------------------------------------------------------------------------------------- inputs are sacred

@pytest.mark.parametrize("audio", [True, False])
@pytest.mark.parametrize("flag", ["--out", "--paste-back"])
@pytest.mark.parametrize("via_symlink", [False, True])
def test_output_that_is_an_input_is_refused_and_the_input_kept(env, tmp_path, capsys, detector_calls, audio, flag,
                                                              via_symlink):
    clip = make_clip(tmp_path / "clip.mp4", audio=audio)
    before = sha(clip)
    target = clip
    if via_symlink:
        target = tmp_path / "link" / "alias.mp4"
        target.parent.mkdir()
        target.symlink_to(clip)
    out = target if flag == "--out" else tmp_path / "crop.mp4"
    extra = ["--paste-back", str(target)] if flag == "--paste-back" else []
    code = cli.main(base_args(env, clip, out, *extra, *([] if audio else ["--no-audio"])))
    err = capsys.readouterr().err
    assert code != 0
    assert f"{flag} {target}" in err and f"--video {clip}" in err, err
    assert sha(clip) == before and detector_calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"] + (["link"] if via_symlink else [])


def test_output_that_is_the_image_or_the_other_output_is_refused(env, tmp_path, capsys):
    image = tmp_path / "face.mp4"  # an image that happens to carry an .mp4 name
    image.write_bytes((env / "face.png").read_bytes())
    before = sha(image)
    args = base_args(env, env / "drive_silent.mp4", image)
    args[args.index("--image") + 1] = str(image)
    assert cli.main(args) == 1
    assert f"--out {image} is the input --image" in capsys.readouterr().err and sha(image) == before
    same = tmp_path / "o.mp4"
    assert cli.main(base_args(env, env / "drive_silent.mp4", same, "--paste-back", str(same))) == 1
    assert "--out and --paste-back name the same file" in capsys.readouterr().err


@pytest.mark.parametrize("stage", ["decode", "paste"])
def test_interrupted_run_leaves_no_output_and_no_temporary_file(env, tmp_path, monkeypatch, capsys, stage):
    from hp_core import run as R

    clip = tmp_path / "in.mp4"
    clip.write_bytes((env / "drive_audio.mp4").read_bytes())
    before = sha(clip)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    old = out_dir / "crop.mp4"
    old.write_bytes(b"an older result")
    seen = []
    if stage == "decode":
        def decode(*a, **k):  # interrupted while decoding
            seen.append(1)
            raise KeyboardInterrupt
            yield  # pragma: no cover
        monkeypatch.setattr(R, "iter_decoded", decode)
    else:
        def paste(*a, **k):
            seen.append(1)
            raise KeyboardInterrupt
            yield  # pragma: no cover
        monkeypatch.setattr(PP, "iter_paste_back", paste)
    args = base_args(env, clip, old, "--paste-back", str(out_dir / "full.mp4"), "--overwrite")
    args[args.index("--window") + 1] = "4"
    args[args.index("--overlap") + 1] = "1"
    assert cli.main(args + ["--max-frames", "4"]) == 130
    assert "interrupted" in capsys.readouterr().err and seen
    assert sorted(p.name for p in out_dir.iterdir()) == ["crop.mp4"]  # no full.mp4, no .partial file
    assert old.read_bytes() == b"an older result" and sha(clip) == before


# ------------------------------------------------------------------------------------------- fail fast

def damaged_models(env: Path, tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    for item in (env / "models").iterdir():
        target = models / item.name
        if item.is_dir():
            subprocess.run(["cp", "-a", str(item), str(target)], check=True)
        else:
            target.write_bytes(item.read_bytes())
    vae = next((models / "vae").glob("diffusion_pytorch_model*.safetensors"))
    data = bytearray(vae.read_bytes())
    vae.write_bytes(bytes(data[: len(data) - 1000]))  # cut short, as an interrupted download
    return models


@pytest.mark.parametrize("case", ["scheduler", "vae", "unwritable", "seed", "sampler"])
def test_problems_known_up_front_fail_before_the_face_detector(env, tmp_path, capsys, detector_calls, case):
    out = tmp_path / "o.mp4"
    args = base_args(env, env / "drive_silent.mp4", out)
    # an unknown choice is refused by the argument parser itself (exit 2), naming the choices
    expect = {"scheduler": "--scheduler: invalid choice: 'warp' (choose from 'karras'",
              "sampler": "--sampler: invalid choice: 'nope' (choose from 'euler'",
              "seed": "--seed: seed must lie in 0..18446744073709551615",
              "vae": "vae/diffusion_pytorch_model", "unwritable": "Cannot write --out"}[case]
    if case == "scheduler":
        args += ["--scheduler", "warp"]
    elif case == "sampler":
        args += ["--sampler", "nope"]
    elif case == "seed":
        args += ["--seed", str(2**64)]
    elif case == "vae":
        args[args.index("--models-dir") + 1] = str(damaged_models(env, tmp_path))
    else:
        blocker = tmp_path / "blocker"
        blocker.write_text("a file where the output folder should be")
        args[args.index("--out") + 1] = str(blocker / "o.mp4")
    try:
        code = cli.main(args)
    except SystemExit as stop:
        code = stop.code
    err = capsys.readouterr().err
    assert code == (2 if case in ("scheduler", "sampler") else 1) and expect in err and "Traceback" not in err, err
    assert detector_calls == [] and not out.exists()


def test_largest_seed_runs_and_differs_from_seed_zero():
    from hp_core import pipeline as P

    assert P.Settings(seed=2**64 - 1).problems() == []
    assert P.Settings(seed=-1).problems()[0][0] == ("seed",)
    a = P.initial_noise(P.Settings(seed=2**64 - 1), 2, (2, 2))
    b = P.initial_noise(P.Settings(seed=0), 2, (2, 2))
    assert not torch.equal(a, b)


# ------------------------------------------------------------------------------------ runaway windows

def test_huge_window_is_clamped_to_the_padded_length(caplog, tiny_models):
    from fakes import driving_frames
    from hp_core import pipeline as P
    from hp_core.preprocess import load_arcface, load_yolo_face

    d = Path(__import__("tempfile").mkdtemp())
    det = load_yolo_face(write_fake_yolo(d / "y.pt"), device="cpu")
    prepared = prepare_inputs(portrait(), driving_frames(4), det, arcface=load_arcface(write_fake_arcface(d / "a.onnx")))
    models = tiny_models
    base = P.Settings(steps=1, height=64, width=64, pad=2, overlap=2)
    cond, ref, _ = conditions_from_prepared(models, prepared, base)
    length = 4 + 2 * 2
    calls = []
    hook = models.unet.register_forward_pre_hook(lambda m, a, k: calls.append(a[0].shape[1]), with_kwargs=True)
    with caplog.at_level("WARNING", logger="hp_core"):
        huge = P.sample_latents(models, cond, ref, P.replace(base, window=100000))
    assert "longer than the padded sequence" in caplog.text
    assert calls and max(calls) == length  # no UNet call saw more frames than the sequence has
    hook.remove()
    exact = P.sample_latents(models, cond, ref, P.replace(base, window=length))
    torch.testing.assert_close(huge, exact, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- one image reader

def test_sixteen_bit_grey_portrait_keeps_its_grey_levels_through_the_run(env, tmp_path, monkeypatch):
    from hp_core import run as R

    levels = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    Image.fromarray(levels).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    seen = {}

    def stop(source, *a, **k):  # what the run hands to the face step
        seen["source"] = source
        raise KeyboardInterrupt
    monkeypatch.setattr(PP, "prepare_source", stop)
    req = cli.animate_request(cli.build_parser().parse_args(
        base_args(env, env / "drive_silent.mp4", tmp_path / "o.mp4")))
    req.image = tmp_path / "grey16.png"
    with pytest.raises(KeyboardInterrupt):
        R.run(req)
    expected = (levels.astype(np.int64) * 255 + 32767) // 65535  # 16 -> 8 bits, rounded
    got = seen["source"]
    assert got.shape == (48, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got[..., 0], expected)
    np.testing.assert_array_equal(got[..., 0], got[..., 2])
    assert 120 <= got[0, 32, 0] <= 135  # mid-grey, not white


@pytest.mark.parametrize("mode", ["I;16B", "I", "F", "LA", "P", "CMYK", "exif"])
def test_every_image_mode_is_read_right(tmp_path, mode):
    grey = np.array([[0, 100, 200]], np.uint8)
    path = tmp_path / "img.tif"
    want = np.repeat(grey[..., None], 3, axis=2)
    if mode == "I;16B":
        Image.frombytes("I;16B", (3, 1), (grey.astype(">u2") * 257).tobytes()).save(path)
    elif mode == "I":
        Image.fromarray(grey.astype(np.int32) * 257, "I").save(path)
    elif mode == "F":
        Image.fromarray(grey.astype(np.float32) / 255, "F").save(path)
    elif mode == "LA":
        path = tmp_path / "img.png"
        Image.fromarray(np.stack([grey, np.array([[255, 255, 0]], np.uint8)], -1), "LA").save(path)
        want[0, 2] = 255  # transparent: the white background
    elif mode == "P":
        path = tmp_path / "img.png"
        pal = Image.fromarray(np.array([[0, 1, 2]], np.uint8), "P")
        pal.putpalette([0, 0, 0, 100, 100, 100, 9, 9, 9] + [0] * 759)
        pal.save(path, transparency=2)
        want[0, 2] = 255
    elif mode == "CMYK":
        cmyk = np.stack([np.zeros_like(grey)] * 3 + [255 - grey], -1)
        Image.fromarray(cmyk, "CMYK").save(path)
    else:
        path = tmp_path / "rot.png"
        img = Image.fromarray(np.repeat(np.array([[0, 100, 200]], np.uint8)[..., None], 3, axis=2))
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 CW to display
        img.save(path, exif=exif.tobytes())
        want = np.rot90(want, k=-1)
    got = PP.read_image_file(path)
    np.testing.assert_array_equal(got, want)


# -------------------------------------------------------------------------------- ComfyUI VALIDATE_INPUTS

def test_sampler_node_refuses_impossible_widgets_at_queue_time():
    from nodes.sampler import HunyuanPortraitSampler as S

    assert S.VALIDATE_INPUTS(steps=25, denoise=1.0, seed=1, context_window=25, context_overlap=3, shift=3,
                             padding=15) is True
    msg = S.VALIDATE_INPUTS(context_window=8, context_overlap=8)
    assert isinstance(msg, str) and "overlap (8) must be smaller than the window (8)" in msg
    assert "leaves no step" in S.VALIDATE_INPUTS(steps=2, denoise=0.3)
    assert "above its maximum" in S.VALIDATE_INPUTS(context_window=500)
    # a linked (not yet known) input never makes a false alarm
    assert S.VALIDATE_INPUTS(context_window=None, context_overlap=20) is True
    assert S.VALIDATE_INPUTS(steps=None, denoise=0.05) is True
