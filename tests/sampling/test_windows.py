"""Context windows: the release's per-step index construction, coverage, wrap-around and shift progression."""

import pytest
import torch

from hp_core.errors import HPError
from hp_core.sampling import merge_windows, validate_windows, window_indices, window_shift


def release_schedule(length, window, overlap, shift_offset, steps):
    """Straightforward re-derivation of the release loop: a running shift, added after every step, mod window."""
    out = []
    shift = 0
    for _ in range(steps):
        step_windows = []
        start = 0
        while start < length:
            first = start - shift
            step_windows.append([(first + j) % length for j in range(window)])
            start += window - overlap
        out.append(step_windows)
        shift = (shift + shift_offset) % window
    return out


@pytest.mark.parametrize("length", [1, 7, 24, 25, 26, 47, 55, 70, 121])
@pytest.mark.parametrize("window,overlap,shift", [(25, 3, 3), (16, 4, 5), (8, 0, 0)])
def test_matches_the_release_loop_for_every_step(length, window, overlap, shift):
    expected = release_schedule(length, window, overlap, shift, 25)
    for step in range(25):
        assert window_indices(length, window, overlap, step, shift) == expected[step]


def test_release_settings_on_a_padded_25_frame_clip_by_hand():
    # 25 driving frames + 2 * 15 padding = 55 frames; stride 22 -> starts 0, 22, 44.
    step0 = window_indices(55, 25, 3, 0, 3)
    assert step0 == [list(range(0, 25)), list(range(22, 47)), list(range(44, 55)) + list(range(0, 14))]
    # step 1: everything moves back by 3, the first window wraps to the end
    step1 = window_indices(55, 25, 3, 1, 3)
    assert step1[0] == [52, 53, 54] + list(range(0, 22))
    assert step1[1] == list(range(19, 44))
    assert step1[2] == list(range(41, 55)) + list(range(0, 11))


def test_shift_grows_by_three_and_wraps_at_the_window():
    assert [window_shift(i, 25, 3) for i in range(10)] == [0, 3, 6, 9, 12, 15, 18, 21, 24, 2]
    for step in range(30):
        first = window_indices(100, 25, 3, step, 3)[0][0]
        assert first == (-window_shift(step, 25, 3)) % 100


@pytest.mark.parametrize("length", [3, 24, 25, 26, 55, 56, 99, 300])
def test_every_frame_is_covered_every_step(length):
    for step in range(25):
        wins = window_indices(length, 25, 3, step, 3)
        assert all(len(w) == 25 for w in wins)
        assert set(i for w in wins for i in w) == set(range(length))
        assert len(wins) == -(-length // 22)


def test_short_sequences_wrap_onto_themselves_like_the_release():
    wins = window_indices(10, 25, 3, 0, 3)
    assert wins == [list(range(10)) + list(range(10)) + list(range(5))]
    wins = window_indices(10, 25, 3, 1, 3)  # shift 3: starts at -3 = frame 7
    assert wins[0][:5] == [7, 8, 9, 0, 1]


@pytest.mark.parametrize(
    "args", [(55, 25, 25, 0, 3), (55, 25, 30, 0, 3), (55, -1, 3, 0, 3), (55, 25, -1, 0, 3), (55, 25, 3, -1, 3),
             (55, 25, 3, 0, -3), (0, 25, 3, 0, 3), (55, 0, 0, 0, 0), (55, 25.5, 3, 0, 3)]
)
def test_invalid_settings_raise(args):
    with pytest.raises(HPError):
        window_indices(*args)


def test_validate_windows_accepts_release_settings_and_rejects_overlap_at_window():
    validate_windows(55, 25, 3, 3)
    with pytest.raises(HPError, match="overlap"):
        validate_windows(55, 4, 4, 0)


def test_merge_windows_averages_per_frame_including_duplicates():
    length = 5
    wins = [[0, 1, 2], [2, 3, 4], [4, 0, 0]]
    outs = [torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[10.0, 20.0, 30.0]]), torch.tensor([[5.0, 6.0, 7.0]])]
    got = merge_windows([o.reshape(1, 3, 1) for o in outs], wins, length, dim=1)
    # frame 0: (1 + 6 + 7) / 3; frame 2: (3 + 10) / 2; frame 4: (30 + 5) / 2
    expected = torch.tensor([14 / 3, 2.0, 6.5, 20.0, 17.5]).reshape(1, 5, 1)
    torch.testing.assert_close(got, expected)


def test_merge_windows_on_release_windows_is_identity_for_consistent_outputs():
    latents = torch.randn(1, 55, 2, 3, 3)
    wins = window_indices(55, 25, 3, 4, 3)
    outs = [latents[:, w] for w in wins]
    torch.testing.assert_close(merge_windows(outs, wins, 55, dim=1), latents)
    with pytest.raises(HPError):
        merge_windows(outs[:2], wins, 55, dim=1)
    with pytest.raises(HPError):
        merge_windows(outs[:1], wins[:1], 55, dim=1)  # frames 25..54 uncovered
