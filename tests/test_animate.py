"""End to end on the tiny preset: a source image and synthetic driving frames in, animated frames out."""

import numpy as np
import pytest
import torch

from fakes import driving_frames, portrait, write_fake_arcface, write_fake_yolo
from hp_core import pipeline as P
from hp_core.preprocess import load_arcface, load_yolo_face
from inmemory import animate, conditions_from_prepared, prepare_inputs


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    d = tmp_path_factory.mktemp("tools")
    return load_yolo_face(write_fake_yolo(d / "yolo.pt"), device="cpu"), load_arcface(write_fake_arcface(d / "a.onnx"))


def test_animate_source_and_driving_frames_to_frames(tools, tiny_models):
    detector, arcface = tools
    models = tiny_models
    prepared = prepare_inputs(portrait(), driving_frames(6), detector, arcface=arcface)
    assert prepared.frames_without_face == 1
    assert np.isclose(np.linalg.norm(prepared.identity), 1.0, atol=1e-4)
    settings = P.Settings(steps=2, height=64, width=64, window=8, overlap=2, pad=2, decode_chunk=4)
    stages = []
    result = animate(models, prepared, settings, progress=lambda i, n, stage: stages.append(stage))
    assert result.frames.shape == (6, 64, 64, 3)
    assert result.frames.dtype == torch.float32
    assert 0.0 <= float(result.frames.min()) and float(result.frames.max()) <= 1.0
    assert result.latents.shape == (6, 4, 8, 8)
    x1, y1, x2, y2 = result.crop_bbox
    assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240 and (x2 - x1) == (y2 - y1)
    assert stages.index("denoise") < stages.index("decode")
    # the motion path saw one intensity pair per 25-frame chunk
    assert len(result.motion.ids) == 1


def test_intensity_override_changes_motion_tokens(tools, tiny_models):
    detector, _ = tools
    models = tiny_models
    prepared = prepare_inputs(portrait(), driving_frames(3), detector)
    settings = P.Settings(height=64, width=64, pad=1)
    a, _, ma = conditions_from_prepared(models, prepared, settings)
    b, _, mb = conditions_from_prepared(models, prepared, settings, intensity=(0, 127))
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
