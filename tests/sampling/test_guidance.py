"""Three-branch guidance, guidance ramps and the release's padding of motion tokens and frames."""

import pytest
import torch

from hp_core.errors import HPError
from hp_core.sampling import combine, guidance_ramp, pad_frames, pad_motion, unpad


def test_combine_by_hand():
    u, a, f = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 1.0]), torch.tensor([5.0, -1.0])
    # 1 + 2*(2-1) + 3*(5-2) = 12 ; 0 + 2*(1-0) + 3*(-1-1) = -4
    assert combine(u, a, f, 2.0, 3.0).tolist() == [12.0, -4.0]
    # g1 = g2 = 1 returns the full branch; g1 = g2 = 0 the unconditional one
    assert combine(u, a, f, 1.0, 1.0).tolist() == f.tolist()
    assert combine(u, a, f, 0.0, 0.0).tolist() == u.tolist()
    assert combine(u, a, f, torch.tensor(1.0), 0.0).tolist() == a.tolist()


def test_guidance_ramp_is_linspace():
    assert guidance_ramp(1.0, 3.0, 5) == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert guidance_ramp(2.0, 2.0, 25) == [2.0] * 25
    assert guidance_ramp(1.5, 4.0, 1) == [1.5]
    # fp16 rounding as the release applies it to the latents' dtype
    vals = guidance_ramp(1.0, 1.1, 4, dtype=torch.float16)
    assert vals == [float(torch.tensor(1.0 + k * 0.1 / 3).half()) for k in range(4)]


def test_pad_motion_ramps_by_hand():
    # 3 frames, 1 token, 2 channels; frame k holds (k+1) * [1, -2]
    tokens = torch.stack([torch.tensor([[1.0, -2.0]]) * (k + 1) for k in range(3)])
    out = pad_motion(tokens, pad=4)
    assert out.shape == (3 + 8, 1, 2)
    first, last = tokens[0], tokens[-1]
    for i in range(4):
        torch.testing.assert_close(out[i], first * (i / 4))  # 0, 1/4, 2/4, 3/4 of frame 0
        torch.testing.assert_close(out[7 + i], last * (1 - i / 4))  # 1, 3/4, 2/4, 1/4 of the last frame
    torch.testing.assert_close(out[4:7], tokens)
    assert out[0].abs().sum() == 0 and torch.equal(out[7], last)


def test_pad_motion_release_size_and_other_axis():
    tokens = torch.randn(25, 64, 8)
    out = pad_motion(tokens, pad=15)
    assert out.shape == (55, 64, 8)
    torch.testing.assert_close(out[14], tokens[0] * (14 / 15))
    torch.testing.assert_close(out[-1], tokens[-1] * (1 / 15))
    batched = pad_motion(tokens.unsqueeze(0), pad=15, dim=1)
    torch.testing.assert_close(batched[0], out)
    assert torch.equal(pad_motion(tokens, pad=0), tokens)


def test_pad_frames_repeats_frame_zero_on_both_sides():
    frames = torch.arange(4.0).reshape(4, 1, 1, 1) + 1  # frames 1, 2, 3, 4
    out = pad_frames(frames, pad=2)
    assert out.flatten().tolist() == [1, 1, 1, 2, 3, 4, 1, 1]
    video = torch.arange(3.0).reshape(1, 1, 3, 1, 1)  # B C F H W
    assert pad_frames(video, pad=1, dim=2).flatten().tolist() == [0, 0, 1, 2, 0]


def test_unpad_inverts_padding():
    frames = torch.randn(6, 2)
    assert torch.equal(unpad(pad_frames(frames, 15), 15), frames)
    assert torch.equal(unpad(frames, 0), frames)
    with pytest.raises(HPError):
        unpad(frames, 4)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_padding_raises(bad):
    with pytest.raises(HPError):
        pad_motion(torch.zeros(2, 1, 1), pad=bad)
    with pytest.raises(HPError):
        pad_frames(torch.zeros(2, 1), pad=bad)
