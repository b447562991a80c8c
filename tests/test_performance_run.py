"""Performances through the file-level run and the CLI: a saved performance animates exactly as its clip
does, one performance drives many portraits with the motion encoders run once, edits are baked into files,
and existing outputs are never replaced without --overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import portrait, write_clip
from hp_core import cli
from hp_core import pipeline as P
from hp_core import run as R
from hp_core import video as V
from hp_core.performance import load_performance
from hp_core.preprocess.image import read_image_file
from nodes_env import make_models_dir

FAST = ["--preset", "tiny", "--device", "cpu", "--size", "64", "--steps", "1", "--window", "8", "--overlap", "2"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf_run")
    make_models_dir(d / "models")
    Image.fromarray(portrait()).save(d / "face.png")
    Image.fromarray(portrait(64, 64, (20, 10, 50, 44))).save(d / "other.png")
    frames = np.stack([portrait(64, 64, (12 + t % 5, 14, 40 + t % 5, 46)) for t in range(12)])
    write_clip(d / "drive.mp4", frames)
    return d


def _args(env, *extra):
    return [*extra, "--models-dir", str(env / "models"), *FAST]


@pytest.fixture
def written(monkeypatch):
    """The uint8 frames handed to each output writer, by file name (before lossy encoding)."""
    frames: dict[str, list] = {}
    real = V.VideoWriter.write

    def keep(self, chunk):
        frames.setdefault(self.path.name, []).append(np.asarray(chunk).copy())
        return real(self, chunk)
    monkeypatch.setattr(V.VideoWriter, "write", keep)
    return frames


def test_animate_from_a_saved_performance_equals_animate_from_the_clip(env, tmp_path, written):
    perf = tmp_path / "perf.safetensors"
    assert cli.main(["motion", "extract", "--video", str(env / "drive.mp4"), "--out", str(perf), "--preset", "tiny",
                     "--device", "cpu", "--models-dir", str(env / "models")]) == 0
    saved = load_performance(perf)
    assert saved.frames == 12 and saved.fps == pytest.approx(10.0) and saved.preset == "tiny"
    assert len(saved.source_sha256) == 64
    # ArcFace off: its onnxruntime stand-in may differ in the last bit between two sessions, which has
    # nothing to do with where the motion comes from
    base = R.RunRequest(image=env / "face.png", out=tmp_path / "from_clip.mp4", video=env / "drive.mp4",
                        models_dirs=[env / "models"], preset="tiny", device="cpu", use_arcface=False,
                        settings=P.Settings(steps=1, height=64, width=64, window=8, overlap=2))
    R.run(base)
    R.run(P.replace(base, video=None, motion=perf, out=tmp_path / "from_file.mp4"))
    clip, file = np.concatenate(written["from_clip.mp4"]), np.concatenate(written["from_file.mp4"])
    assert clip.shape == (12, 64, 64, 3)
    np.testing.assert_array_equal(clip, file)  # frame for frame, bit for bit
    assert V.probe_video(tmp_path / "from_file.mp4").fps == pytest.approx(10.0)  # the performance's fps


def test_one_clip_drives_three_portraits_with_the_encoders_run_once(env, tmp_path, monkeypatch, capsys):
    calls = []
    real = R.encode_motion

    def counting(models, crops, *a, **k):
        calls.append(len(crops))
        return real(models, crops, *a, **k)
    monkeypatch.setattr(R, "encode_motion", counting)
    folder = tmp_path / "portraits"
    folder.mkdir()
    (folder / "b.png").write_bytes((env / "other.png").read_bytes())
    (folder / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(folder / "blank.png")  # no face in it
    out = tmp_path / "results"
    code = cli.main(_args(env, "animate", "--image", str(env / "face.png"), str(folder), "--video",
                          str(env / "drive.mp4"), "--out", str(out)))
    text = capsys.readouterr().out
    assert code == 1  # some portraits failed, and the exit code says so
    assert sum(calls) == 12  # the clip's 12 frames went through the motion encoders once, not per portrait
    assert sorted(p.name for p in out.iterdir()) == ["b.mp4", "face.mp4"]
    assert "2 of 4 portraits failed" in text and "broken.png" in text and "blank.png" in text
    for name in ("b.mp4", "face.mp4"):
        assert V.probe_video(out / name).frames_estimate in (12, None)


def test_an_existing_output_is_refused_without_overwrite(env, tmp_path, capsys):
    old = tmp_path / "o.mp4"
    old.write_bytes(b"an older result")
    args = _args(env, "animate", "--image", str(env / "face.png"), "--video", str(env / "drive.mp4"),
                 "--out", str(old), "--max-frames", "3")
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err and old.read_bytes() == b"an older result"
    assert cli.main(args + ["--overwrite"]) == 0 and old.read_bytes() != b"an older result"


def test_a_second_run_into_the_same_output_cannot_also_claim_success(tmp_path):
    """Both writers started while the name was free; the one that finishes second is refused."""
    from hp_core.errors import HPError
    target = tmp_path / "same.mp4"
    first, second = V.VideoWriter(target, 10.0), V.VideoWriter(target, 10.0)
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    first.write(frames)
    second.write(frames + 200)
    first.commit(overwrite=False)
    kept = target.read_bytes()
    with pytest.raises(HPError, match="appeared while this run was writing"):
        second.commit(overwrite=False)
    assert target.read_bytes() == kept and sorted(p.name for p in tmp_path.iterdir()) == ["same.mp4"]


def test_motion_edit_bakes_edits_into_a_new_file(env, tmp_path):
    perf = tmp_path / "perf.safetensors"
    base = ["--models-dir", str(env / "models"), "--device", "cpu"]
    assert cli.main(["motion", "extract", "--video", str(env / "drive.mp4"), "--out", str(perf), "--preset", "tiny",
                     *base]) == 0
    still = tmp_path / "still.safetensors"
    assert cli.main(["motion", "edit", "--motion", str(perf), "--image", str(env / "other.png"), "--pose-mode",
                     "still", "--expression-strength", "0", "--length", "20", "--loop", "pingpong", "--out",
                     str(still), *base]) == 0
    src, out = load_performance(perf), load_performance(still)
    assert out.frames == 20
    assert (out.rotation == out.rotation[0]).all()          # the head stays
    assert (out.expression == src.expression[0]).all()      # the expression is frozen on the first frame
    # the portrait's own rotation, from the same networks and crop rules as a driving frame
    from hp_core.preprocess import load_yolo_face, prepare_source
    models = P.load_models_from_dirs([env / "models"], preset="tiny", device="cpu", components=P.MOTION_NETWORKS,
                                     with_vae=False)
    source = prepare_source(read_image_file(env / "other.png"), load_yolo_face(env / "models" / "yoloface_v5m.pt"))
    own = P.encode_portrait_motion(models, source.pose_crop, source.motion_crop)
    np.testing.assert_allclose(out.rotation[0].numpy(), own.rotation.numpy(), rtol=0, atol=1e-4)
    # relative without the portrait is refused with the flag to add; an existing file is not replaced
    assert cli.main(["motion", "edit", "--motion", str(perf), "--pose-mode", "relative", "--out",
                     str(tmp_path / "rel.safetensors"), *base]) == 1
    assert not (tmp_path / "rel.safetensors").exists()
    assert cli.main(["motion", "edit", "--motion", str(perf), "--pose-smoothing", "2", "--out", str(still),
                     *base]) == 1
    assert load_performance(still).frames == 20


def test_a_damaged_performance_is_refused_before_any_work(env, tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    assert cli.main(_args(env, "animate", "--image", str(env / "face.png"), "--motion", str(bad),
                          "--out", str(tmp_path / "o.mp4"))) == 1
    err = capsys.readouterr().err
    assert "cannot be used as a performance" in err and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("flag,value", [("--noise-aug", ["nan"]), ("--appearance-cfg", ["2", "inf"]),
                                        ("--motion-cfg", ["nan", "2"]), ("--expression-strength", ["nan"]),
                                        ("--pose-smoothing", ["inf"])])
def test_non_finite_numbers_are_refused_with_the_flag_named(tmp_path, capsys, flag, value):
    code = cli.main(["animate", "--image", str(tmp_path / "x.png"), "--video", str(tmp_path / "y.mp4"),
                     "--out", str(tmp_path / "o.mp4"), flag, *value])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"error: {flag}") and "finite" in err
    assert not (tmp_path / "o.mp4").exists()


def test_a_vram_budget_streams_the_unet_and_changes_nothing_and_fp8_runs_end_to_end(env, tmp_path, written,
                                                                                     monkeypatch):
    import hp_core.models.streaming as S

    base = R.RunRequest(image=env / "face.png", out=tmp_path / "plain.mp4", video=env / "drive.mp4",
                        models_dirs=[env / "models"], preset="tiny", device="cpu", use_arcface=False, max_frames=4,
                        settings=P.Settings(steps=1, height=64, width=64, window=8, overlap=2))
    R.run(base)
    streamed = []
    real_attach = S.BlockStreamer.attach

    def spy(self, unet):
        streamed.append(self)
        return real_attach(self, unet)
    monkeypatch.setattr(S.BlockStreamer, "attach", spy)
    R.run(P.replace(base, out=tmp_path / "streamed.mp4", vram_budget=1e-4))  # about 100 KiB: most blocks stream
    assert streamed and streamed[0].plan.streamed and streamed[0].moves > 0
    np.testing.assert_array_equal(np.concatenate(written["plain.mp4"]), np.concatenate(written["streamed.mp4"]))
    assert cli.main(_args(env, "animate", "--image", str(env / "face.png"), "--video", str(env / "drive.mp4"),
                          "--out", str(tmp_path / "fp8.mp4"), "--max-frames", "4", "--dtype", "fp8")) == 0
    assert np.concatenate(written["fp8.mp4"]).shape == (4, 64, 64, 3)


def test_a_tilde_in_output_and_audio_paths_means_home(env, tmp_path, monkeypatch, written):
    """The checks and the writer see the same files: ~ is the home folder everywhere, never a folder named ~."""
    home = tmp_path / "home"
    (home / "v").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    (home / "voice.mp4").write_bytes((env / "drive.mp4").read_bytes())
    req = R.RunRequest(image=env / "face.png", out=Path("~/v/a.mp4"), video=env / "drive.mp4",
                       audio_file=Path("~/voice.mp4"), models_dirs=[env / "models"], preset="tiny", device="cpu",
                       use_arcface=False, max_frames=3, settings=P.Settings(steps=1, height=64, width=64, window=8,
                                                                                 overlap=2))
    R.run(req)
    assert (home / "v" / "a.mp4").is_file() and not (tmp_path / "~").exists()


def test_edits_that_the_clip_cannot_satisfy_and_max_frames_with_a_performance_are_refused_up_front(env, tmp_path):
    from hp_core.errors import HPError
    from hp_core.motion_edit import MotionEdit

    base = R.RunRequest(image=env / "face.png", out=tmp_path / "o.mp4", video=env / "drive.mp4",
                        models_dirs=[env / "models"], preset="tiny", device="cpu")
    with pytest.raises(HPError, match="past the performance"):
        R.preflight(P.replace(base, edit=MotionEdit(start=500)))
    with pytest.raises(HPError, match="--max-frames applies to a driving clip"):
        R.preflight(P.replace(base, video=None, motion=tmp_path / "p.safetensors", max_frames=3))
