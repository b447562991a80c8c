"""The typed file-level run (hp_core.run): streaming gives the same numbers as the in-memory stages, the
decoded frames stream to the writer unchanged, and the one precision table and settings rules are shared."""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import torch
from PIL import Image

from fakes import portrait, write_clip
from helpers import read_video
from inmemory import animate, conditions_from_prepared, prepare_inputs
from hp_core import pipeline as P
from hp_core import run as R
from hp_core import video as V
from hp_core.preprocess.image import read_image_file
from nodes_env import make_models_dir

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    make_models_dir(d / "models")
    Image.fromarray(portrait()).save(d / "face.png")
    frames = np.stack([portrait(64, 64, (12 + t % 9, 14, 40 + t % 9, 46)) for t in range(30)])
    write_clip(d / "drive.mp4", frames, tone_hz=400)
    return d


def test_streamed_run_equals_the_in_memory_stages(env, tmp_path, monkeypatch):
    """30 frames = two motion chunks of 25: the streamed motion path gives the latents of prepare_inputs +
    animate on the whole decoded clip; the file has every frame, the clip's fps and (asked) no audio."""
    from hp_core.preprocess import load_arcface, load_yolo_face

    settings = P.Settings(steps=1, height=64, width=64, window=8, overlap=2, pad=3)
    req = R.RunRequest(image=env / "face.png", video=env / "drive.mp4", out=tmp_path / "o.mp4",
                       models_dirs=[env / "models"], settings=settings, preset="tiny", device="cpu", audio=False)
    seen = {}
    real, real_sample = R.write_outputs, R.sample_latents

    def capture(request, models, latents, *a, **k):
        seen["latents"] = latents.clone()
        return real(request, models, latents, *a, **k)

    def capture_conditions(models, conditions, *a, **k):
        seen["motion"] = conditions.motion.clone()
        return real_sample(models, conditions, *a, **k)
    monkeypatch.setattr(R, "write_outputs", capture)
    monkeypatch.setattr(R, "sample_latents", capture_conditions)
    stages = []
    result = R.run(req, progress=lambda done, total, stage: stages.append(stage))
    order = list(dict.fromkeys(stages))
    assert order == ["faces", "motion", "conditions", "denoise", "decode"], order  # what the bar shows, in turn

    models = P.load_models_from_dirs([env / "models"], preset="tiny", device="cpu",
                                     dtypes={n: torch.float32 for n in (*P.COMPONENTS, "vae")})
    det = load_yolo_face(env / "models" / "yoloface_v5m.pt", device="cpu")
    prepared = prepare_inputs(read_image_file(env / "face.png"), read_video(env / "drive.mp4").frames,
                              det, arcface=load_arcface(env / "models" / "arcface.onnx"))
    cond, _, _ = conditions_from_prepared(models, prepared, settings)
    torch.testing.assert_close(seen["motion"], cond.motion, rtol=0, atol=0)  # the streamed part: exact
    # the ArcFace stand-in runs in onnxruntime, whose threaded reductions may differ in the last bit
    # between sessions; that reaches the latents at ~1e-4
    expected = animate(models, prepared, settings).padded_latents  # the run decodes the padded sequence
    torch.testing.assert_close(seen["latents"], expected, rtol=0, atol=2e-3)

    assert result.frames == 30 and result.out == tmp_path / "o.mp4" and result.fps == 10
    text = subprocess.run([FFMPEG, "-hide_banner", "-i", str(result.out), "-map", "0:v:0", "-f", "null", "-"],
                          capture_output=True, text=True).stderr
    assert int(re.findall(r"frame=\s*(\d+)", text)[-1]) == 30
    assert re.search(r"Video: .*? 10 fps", text) and "Audio:" not in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.mp4"]


class Recorder:
    """Stands in for VideoWriter: keeps what it is given, commits nothing."""

    made: list["Recorder"] = []

    def __init__(self, path, fps, **kw):
        self.path, self.frames, self.state = path, [], "open"
        Recorder.made.append(self)

    def write(self, frames):
        self.frames.append(np.array(frames))

    def finish(self):
        self.state = "finished"

    def commit(self, overwrite=True):
        self.state = "committed"

    def abort(self):
        self.state = "aborted"


def test_decoded_frames_stream_to_the_writer_unchanged(monkeypatch, tmp_path, tiny_models):
    """11 output frames with 2 padding frames each side (not a multiple of the decode chunk of 8): the
    streamed chunks, counted from padded frame 0 as the release does, equal one decode over everything,
    truncated to uint8 as the release writes frames; the paste-back writer gets each frame pasted."""
    from hp_core.preprocess import paste_back

    torch.manual_seed(0)
    models = tiny_models
    padded = torch.randn(2 + 11 + 2, 4, 8, 8) * 0.5
    source = np.full((40, 50, 3), 90, np.uint8)
    plan = R.Plan(source, V.VideoInfo(64, 64, 10.0, 1.1, False), {}, [], torch.device("cpu"), {})
    req = R.RunRequest(image=tmp_path / "i.png", video=tmp_path / "v.mp4", out=tmp_path / "o.mp4",
                       paste_back=tmp_path / "p.mp4", settings=P.Settings(pad=2))
    Recorder.made = []
    monkeypatch.setattr(R, "VideoWriter", Recorder)
    R.write_outputs(req, models, padded, (5, 2, 37, 34), source, plan.fps, req.out, req.paste_back)
    crop, full = Recorder.made
    whole = (P.decode_latents(models, padded, 8, pad=2).numpy() * 255).astype(np.uint8)
    assert [len(f) for f in crop.frames] == [6, 5]  # padded chunks [0, 8) and [8, 15), padding cut
    np.testing.assert_array_equal(np.concatenate(crop.frames), whole)
    np.testing.assert_array_equal(np.concatenate(full.frames)[10], paste_back(source, whole[10], (5, 2, 37, 34)))
    assert crop.state == full.state == "committed"


def test_outputs_appear_both_or_neither_when_the_second_name_is_taken_meanwhile(monkeypatch, tmp_path, tiny_models):
    """--out and --paste-back are claimed one after the other; if the second name appeared meanwhile (another
    run), the first file this run just made goes too, and the other run's file stays."""
    from hp_core.errors import HPError

    models = tiny_models
    padded = torch.randn(1 + 3 + 1, 4, 8, 8) * 0.5
    source = np.full((64, 64, 3), 90, np.uint8)
    req = R.RunRequest(image=tmp_path / "i.png", video=tmp_path / "v.mp4", out=tmp_path / "o.mp4",
                       paste_back=tmp_path / "p.mp4", settings=P.Settings(pad=1))
    real_finish = V.VideoWriter.finish

    def finish_then_race(self):  # another run takes the paste-back name while this one finishes
        real_finish(self)
        if self.path.name == "p.mp4":
            self.path.write_bytes(b"the other run's result")
    monkeypatch.setattr(V.VideoWriter, "finish", finish_then_race)
    with pytest.raises(HPError, match="appeared while this run was writing"):
        R.write_outputs(req, models, padded, (0, 0, 64, 64), source, 10.0, req.out, req.paste_back)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.mp4"]
    assert (tmp_path / "p.mp4").read_bytes() == b"the other run's result"


def test_one_precision_table_for_library_cli_and_nodes():
    from hp_core import cli
    from hp_core.models import DEFAULT_DTYPES, PRECISIONS, precision_dtypes
    from nodes import loader

    f16, f32, bf16 = torch.float16, torch.float32, torch.bfloat16
    release = {"unet": f16, "dino": f16, "image_proj": f16, "pose_guider": f16,  # the release's precisions
               "motion_proj": f32, "expression": f32, "headpose": f32, "vae": f32}
    cuda = torch.device("cuda")
    assert precision_dtypes("auto", cuda) == release == DEFAULT_DTYPES
    assert precision_dtypes("bf16", cuda) == {**release, "unet": bf16, "dino": bf16, "image_proj": bf16,
                                              "pose_guider": bf16, "vae": bf16}
    assert set(precision_dtypes("auto", "cpu").values()) == {f32}
    assert loader.precision_dtypes("fp16", cuda) == precision_dtypes("fp16", cuda)
    parser = cli.build_parser()
    animate = parser._subparsers._group_actions[0].choices["animate"]
    dtype_flag = next(a for a in animate._actions if a.dest == "dtype")
    assert tuple(dtype_flag.choices) == PRECISIONS
    assert loader.HunyuanPortraitModelLoader.INPUT_TYPES()["required"]["precision"][0] == list(PRECISIONS)


def test_settings_rules_name_their_fields_and_the_cli_its_flags(capsys, tmp_path):
    from hp_core import cli

    assert [f for f, _ in P.Settings(steps=0, window=4, overlap=4, schedule="x").problems()] == [
        ("steps",), ("schedule",), ("window", "overlap", "shift")]
    assert P.Settings().problems() == []
    Image.new("RGB", (8, 8)).save(tmp_path / "f.png")
    code = cli.main(["animate", "--image", str(tmp_path / "f.png"), "--video", str(tmp_path / "v.mp4"),
                     "--out", str(tmp_path / "o.mp4"), "--steps", "0"])
    assert code == 1 and capsys.readouterr().err.startswith("error: --steps: steps must be a whole number >= 1")
