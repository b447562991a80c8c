"""End to end on the tiny preset: a source image and synthetic driving frames in, animated frames out."""

import numpy as np
import pytest
import torch

from fakes import driving_frames, portrait, write_fake_arcface, write_fake_yolo
from hp_core import pipeline as P
from hp_core.preprocess import load_arcface, load_yolo_face, prepare_inputs


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    d = tmp_path_factory.mktemp("tools")
    return load_yolo_face(write_fake_yolo(d / "yolo.pt"), device="cpu"), load_arcface(write_fake_arcface(d / "a.onnx"))


def test_animate_source_and_driving_frames_to_frames(tools):
    detector, arcface = tools
    models = P.random_models("tiny", seed=0)
    prepared = prepare_inputs(portrait(), driving_frames(6), detector, arcface=arcface)
    assert prepared.frames_without_face == 1
    assert np.isclose(np.linalg.norm(prepared.identity), 1.0, atol=1e-4)
    settings = P.Settings(steps=2, height=64, width=64, window=8, overlap=2, pad=2, decode_chunk=4)
    stages = []
    result = P.animate(models, prepared, settings, progress=lambda i, n, stage: stages.append(stage))
    assert result.frames.shape == (6, 64, 64, 3)
    assert result.frames.dtype == torch.float32
    assert 0.0 <= float(result.frames.min()) and float(result.frames.max()) <= 1.0
    assert result.latents.shape == (6, 4, 8, 8)
    x1, y1, x2, y2 = result.crop_bbox
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240 and (x2 - x1) == (y2 - y1)
    assert stages.index("conditions") < stages.index("denoise") < stages.index("decode")
    # the motion path saw one intensity pair per 25-frame chunk
    assert len(result.motion.ids) == 1


def test_intensity_override_changes_motion_tokens(tools):
    detector, _ = tools
    models = P.random_models("tiny", seed=0)
    prepared = prepare_inputs(portrait(), driving_frames(3), detector)
    settings = P.Settings(height=64, width=64, pad=1)
    a, _, ma = P.conditions_from_prepared(models, prepared, settings)
    b, _, mb = P.conditions_from_prepared(models, prepared, settings, intensity=(0, 127))
    assert mb.ids == [(0, 127)]
    assert not torch.allclose(a.motion, b.motion)
    # the appearance and reference do not depend on the intensity
    torch.testing.assert_close(a.appearance, b.appearance)


def test_pose_condition_resizes_uint8_skeletons():
    skel = np.zeros((2, 512, 512, 3), np.uint8)
    skel[:, 200:312, 250:262] = 255
    pose = P.pose_condition(skel, (64, 64))
    assert pose.shape == (2, 3, 64, 64) and pose.dtype == torch.uint8
    assert pose[0, :, 32, 31].min() > 100 and pose[0, :, 5, 5].max() == 0
    assert P.pose_condition(None, (64, 64)) is None


def test_too_long_video_is_refused_before_decoding(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from hp_core import weights as W
    monkeypatch.setattr(W, "preflight", lambda *a, **k: {})  # the weights check (run first) is not tested here

    from hp_core.errors import HPError

    # 1080p: 6 MB a frame; an 8 GiB budget holds 1380 frames (about 46 s at 30 fps)
    assert P.decoded_frame_budget(SimpleNamespace(width=1920, height=1080)) == 8 * 1024 ** 3 // (1920 * 1080 * 3)
    import subprocess

    from hp_core.video import ffmpeg_exe
    clip = tmp_path / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10",
                    "-t", "3", "-pix_fmt", "yuv420p", str(clip)], check=True)
    from PIL import Image
    Image.fromarray(portrait()).save(tmp_path / "face.png")
    import imageio_ffmpeg
    decoded = []
    real_read = imageio_ffmpeg.read_frames

    def counting_read(*args, **kwargs):
        decoded.append(1)
        return real_read(*args, **kwargs)

    monkeypatch.setattr(imageio_ffmpeg, "read_frames", counting_read)
    # the early check's own words: the estimated length and the limit, before a frame is decoded
    early = r"has about 30 frames \(3\.0 s at 10 fps\), more than the limit of 10"
    with pytest.raises(HPError, match=early) as err:
        P.animate_files(image=tmp_path / "face.png", video=clip, search_dirs=[tmp_path], frame_limit=10)
    assert "--max-frames" in str(err.value) and not decoded
