"""Intensity bucket ids from driving landmarks, against values worked out by hand."""

import numpy as np

from hp_core.preprocess.intensity import chunk_intensity, intensity_ids

# left eye, right eye, nose, left mouth, right mouth
F0 = np.array([[0, 0], [10, 0], [5, 5], [1, 10], [9, 10]], float)
# head moved by (2, 0), mouth opened by 2 px
F1 = np.array([[2, 0], [12, 0], [7, 5], [3, 12], [11, 12]], float)


def test_hand_computed_track():
    # centred on the nose, frame 0 spans (-5,-5)..(5,5): scale sqrt(200) = 14.1421
    # expression: mouth points sit 1 px from their mean in both frames, 3 points 0 px -> mean 0.4
    #   int(0.4 / 14.1421 * 1024) = int(28.96) = 28
    # head: raw nose (5,5), (7,5) -> 1 px from the mean -> int(1 / 14.1421 * 256) = int(18.10) = 18
    assert chunk_intensity(np.stack([F0, F1])) == (18, 28)


def test_head_id_uses_raw_nose_not_centred():
    moved = F0 + np.array([3, 4])   # pure translation: expression 0, nose 2.5 px from its mean
    # int(2.5 / 14.1421 * 256) = int(45.25) = 45
    assert chunk_intensity(np.stack([F0, moved])) == (45, 0)


def test_clamped_to_127():
    far = F0 + np.array([100, 0])    # head: 50 / 14.14 * 256 = 905 -> 127
    assert chunk_intensity(np.stack([F0, far])) == (127, 0)
    wild = F0.copy()
    wild[3] += (0, 40)
    # left mouth moves 40 px: 20 px from its mean in both frames, mean over 10 points 4 px
    # -> 4 / 14.1421 * 1024 = 289 -> 127; the nose does not move -> head 0
    assert chunk_intensity(np.stack([F0, wild])) == (0, 127)


def test_scale_comes_from_first_frame():
    big = F0 * 2                     # first frame twice as large: scale 28.28; same motion halves the ids
    moved = big + np.array([2, 0])
    # head: 1 px / 28.2843 * 256 = 9.05 -> 9
    assert chunk_intensity(np.stack([big, moved])) == (9, 0)


def test_chunks_of_25():
    track = np.stack([F0] * 25 + [F0, F1])
    assert intensity_ids(track) == [(0, 0), (18, 28)]
    assert intensity_ids(track, chunk=26) == [(0, 0), (0, 0)]   # the second chunk is F1 alone


def test_degenerate_face_gives_zero():
    assert chunk_intensity(np.zeros((3, 5, 2))) == (0, 0)
