"""Paste-back: the release's soft edge mask, blending, boxes partly outside, user masks, output size."""

import numpy as np
import pytest

from hp_core.errors import HPError
from hp_core.preprocess.paste_back import iter_paste_back, paste_back, soft_mask


def test_soft_mask_values_by_hand():
    m = soft_mask(100, 50)            # ramps of int(10) columns and int(5) rows
    assert m.shape == (50, 100) and m.dtype == np.float32
    assert m[25, 50] == 1.0
    assert m[25, 0] == 0.0 and m[25, 99] == 0.0 and m[0, 50] == 0.0 and m[49, 50] == 0.0
    assert m[25, 1] == pytest.approx(1 / 9)        # linspace(0, 1, 10)
    assert m[25, 9] == pytest.approx(1.0) and m[25, 10] == 1.0
    assert m[25, 98] == pytest.approx(1 / 9)       # linspace(1, 0, 10)
    assert m[1, 50] == pytest.approx(0.25)         # linspace(0, 1, 5)
    assert m[1, 1] == pytest.approx(0.25 / 9)      # ramps multiply in the corners
    assert soft_mask(5, 5)[2, 2] == 1.0 and soft_mask(5, 5)[0, 0] == 1.0   # under 10 px: no ramp


def test_paste_back_blends_with_soft_edges():
    source = np.full((300, 400, 3), 100, np.uint8)
    generated = np.full((512, 512, 3), 255, np.uint8)
    out = paste_back(source, generated, (100, 50, 200, 150))
    assert out.shape == source.shape and out.dtype == np.uint8
    assert out[100, 150].tolist() == [255] * 3               # box centre: generated
    assert out[100, 100].tolist() == [100] * 3               # box edge: mask 0 -> source
    assert out[10, 10].tolist() == [100] * 3                 # outside the box: untouched
    m = 1 / 9                                                # second column of the box
    expected = int((1.0 * m + (100 / 255) * (1 - m)) * 255)
    assert abs(int(out[100, 101, 0]) - expected) <= 1
    assert (source == 100).all()                             # the input is not modified


def test_paste_back_box_partly_outside():
    source = np.full((120, 160, 3), 0, np.uint8)
    generated = np.full((512, 512, 3), 200, np.uint8)
    out = paste_back(source, generated, (-50, -50, 50, 50))
    assert out.shape == (120, 160, 3)
    assert out[0, 0, 0] == 200 and out[30, 30, 0] == 200     # box (50..80, 50..80): inside the ramp-free part
    # image (45, 45) is box (95, 95): both ramps at linspace(1, 0, 10)[5] = 4/9
    assert abs(int(out[45, 45, 0]) - int(200 / 255 * (4 / 9) ** 2 * 255)) <= 1
    assert out[60, 60, 0] == 0
    far = paste_back(source, generated, (500, 500, 600, 600))
    assert (far == 0).all()


def test_user_mask_replaces_soft_mask():
    source = np.full((100, 100, 3), 10, np.uint8)
    generated = np.full((512, 512, 3), 250, np.uint8)
    full = paste_back(source, generated, (20, 20, 80, 80), mask=np.ones((100, 100), np.float32))
    assert (full[20:80, 20:80] == 250).all() and (full[:20] == 10).all()
    none = paste_back(source, generated, (20, 20, 80, 80), mask=np.zeros((512, 512), np.float32))
    assert (none == 10).all()
    half = np.zeros((512, 512), np.float32)
    half[:, 256:] = 1.0                                      # crop-space mask: right half only
    out = paste_back(source, generated, (20, 20, 80, 80), mask=half)
    assert out[50, 25, 0] == 10 and out[50, 75, 0] == 250


def test_float_frames_and_iteration():
    source = np.zeros((64, 64, 3), np.uint8)
    frames = [np.full((512, 512, 3), 1.0, np.float32), np.full((512, 512, 3), 0.5, np.float32)]
    outs = list(iter_paste_back(source, frames, (0, 0, 64, 64)))
    assert len(outs) == 2 and outs[0].shape == (64, 64, 3)
    assert outs[0][32, 32, 0] == 255 and outs[1][32, 32, 0] == 127     # truncation, as the release
    per_frame = list(iter_paste_back(source, frames, (0, 0, 64, 64), mask=[np.zeros((64, 64)), np.ones((64, 64))]))
    assert per_frame[0].max() == 0 and per_frame[1][0, 0, 0] == 127


def test_bad_inputs():
    with pytest.raises(HPError):
        paste_back(np.zeros((10, 10), np.uint8), np.zeros((512, 512, 3), np.uint8), (0, 0, 5, 5))
    with pytest.raises(HPError):
        paste_back(np.zeros((10, 10, 3), np.uint8), np.zeros((512, 512, 3), np.uint8), (5, 5, 5, 9))
