"""Motion edits: the defaults change nothing bit for bit, the head-pose and expression arithmetic match hand
computations, smoothing keeps constant and linear signals and calms noise by the documented factor, fitting to
a length cuts, ping-pongs and crossfades as documented, and impossible settings are refused with HPError."""

import math

import pytest
import torch

from hp_core.errors import HPError
from hp_core.motion_edit import (MotionEdit, PortraitMotion, edit_performance, noise_variance_factor, smooth,
                                 timeline, wrap_degrees)
from hp_core.performance import Performance, from_parts

N, D = 4, 6


def _perf(rotation, expression=None, chunk=25, ids=None, seed=0) -> Performance:
    rotation = torch.as_tensor(rotation, dtype=torch.float32)
    frames = rotation.shape[0]
    g = torch.Generator().manual_seed(seed)
    if expression is None:
        expression = torch.randn(frames, N, D, generator=g)
    translation = torch.randn(frames, 3, generator=g)
    if ids is None:
        ids = [(c % 3, c % 5) for c in range(-(-frames // chunk))]
    return from_parts(expression, rotation, translation, ids, fps=25, chunk=chunk, preset="official")


def _random_perf(frames=40, seed=0, chunk=25) -> Performance:
    """Moderate random head motion (no jumps across +-180), random expressions."""
    g = torch.Generator().manual_seed(seed + 100)
    rotation = torch.cumsum(torch.randn(frames, 3, generator=g) * 3, 0)
    return _perf(rotation, chunk=chunk, seed=seed)


def _portrait(rotation=(5.0, -10.0, 170.0), seed=7):
    g = torch.Generator().manual_seed(seed)
    return PortraitMotion(torch.tensor(rotation, dtype=torch.float32), torch.randn(N, D, generator=g))


def _wrap(v: float) -> float:
    """Into -180..180 by hand (values already inside are kept, so 180 stays 180 and -180 stays -180)."""
    while v > 180:
        v -= 360
    while v < -180:
        v += 360
    return v


# ------------------------------------------------------------------------------------------- identity

def test_default_edit_is_bit_exact_identity_even_at_plus_minus_180():
    g = torch.Generator().manual_seed(1)
    frames = 30
    rotation = torch.rand(frames, 3, generator=g) * 360 - 180
    rotation[::3, 0] = 180 - torch.rand(10, generator=g) * 1e-3     # just inside +180
    rotation[1::3, 0] = -180 + torch.rand(10, generator=g) * 1e-3   # just inside -180
    rotation[4, 1], rotation[5, 1], rotation[6, 2], rotation[7, 2] = 180.0, -180.0, -180.0, 180.0
    perf = _perf(rotation, chunk=8)
    edit = MotionEdit()
    assert edit.is_identity and not edit.needs_portrait
    for portrait in (None, _portrait()):
        out = edit_performance(perf, edit, portrait)
        for name in ("expression", "rotation", "translation", "intensity_ids"):
            a, b = getattr(perf, name), getattr(out, name)
            assert torch.equal(a, b), name
            assert a.numpy().tobytes() == b.numpy().tobytes(), name
        assert (out.fps, out.chunk, out.preset) == (perf.fps, perf.chunk, perf.preset)


def test_explicit_default_values_are_identity():
    perf = _random_perf()
    edit = MotionEdit(pose_mode="absolute", pose_scale=(1.0, 1.0, 1.0), pose_offset=(0.0, 0.0, 0.0),
                      expression_strength=1.0, pose_smoothing=0.0, expression_smoothing=0.0, start=0, length=0,
                      loop="none")
    out = edit_performance(perf, edit)
    assert torch.equal(out.rotation, perf.rotation) and torch.equal(out.expression, perf.expression)


def test_edits_that_leave_the_pose_alone_keep_rotation_values():
    rotation = [[170.0, 0, 0], [-180.0, 0, 0], [-170.0, 0, 0], [180.0, 0, 0], [175.0, 0, 0]]
    perf = _perf(rotation)
    out = edit_performance(perf, MotionEdit(expression_strength=0.5))
    assert torch.equal(out.rotation, perf.rotation)
    out = edit_performance(perf, MotionEdit(start=1))
    assert torch.equal(out.rotation, perf.rotation[1:])


# ------------------------------------------------------------------------------------------- head pose

# Hand-made driving rotations: no frame-to-frame jump crosses +-180, so no unwrapping is involved.
D_ROT = [[10.0, 20.0, 30.0],
         [12.0, 18.0, 35.0],
         [20.0, 0.0, 40.0],
         [100.0, 50.0, 10.0],
         [-60.0, -60.0, 170.0]]
SCALE = (2.0, 0.5, 0.0)
OFFSET = (10.0, -5.0, 3.0)
PORTRAIT = (5.0, -10.0, 170.0)


def _hand(kind):
    out = []
    d0 = D_ROT[0]
    for d in D_ROT:
        row = []
        for a in range(3):
            if kind == "absolute":
                v = d0[a] + SCALE[a] * (d[a] - d0[a]) + OFFSET[a]
            elif kind == "relative":
                v = PORTRAIT[a] + SCALE[a] * (d[a] - d0[a]) + OFFSET[a]
            else:
                v = PORTRAIT[a] + OFFSET[a]
            row.append(_wrap(v))
        out.append(row)
    return torch.tensor(out, dtype=torch.float32)


@pytest.mark.parametrize("mode", ["absolute", "relative", "still"])
def test_pose_arithmetic_matches_hand_computation(mode):
    perf = _perf(D_ROT)
    out = edit_performance(perf, MotionEdit(pose_mode=mode, pose_scale=SCALE, pose_offset=OFFSET),
                           _portrait(PORTRAIT))
    expected = _hand(mode)
    torch.testing.assert_close(out.rotation, expected, atol=1e-5, rtol=0)
    assert float(out.rotation.abs().max()) <= 180
    # the pose edit leaves expression and translation as they are
    assert torch.equal(out.expression, perf.expression)
    assert torch.equal(out.translation, perf.translation)


def test_pose_results_are_wrapped_into_range():
    # absolute, angle 0: 10 + 2 * (100 - 10) + 10 = 200 -> -160; 10 + 2 * (-60 - 10) + 10 = -120 (inside)
    perf = _perf(D_ROT)
    out = edit_performance(perf, MotionEdit(pose_scale=SCALE, pose_offset=OFFSET))
    assert out.rotation[3, 0].item() == pytest.approx(-160.0)
    assert out.rotation[4, 0].item() == pytest.approx(-120.0)
    # relative, angle 2 with scale 1 and offset +15: 170 + (35 - 30) + 15 = 190 -> -170
    out = edit_performance(perf, MotionEdit(pose_mode="relative", pose_offset=(0.0, 0.0, 15.0)),
                           _portrait(PORTRAIT))
    assert out.rotation[1, 2].item() == pytest.approx(-170.0)
    # still: 170 + 15 = 185 -> -175 on every frame
    out = edit_performance(perf, MotionEdit(pose_mode="still", pose_offset=(0.0, 0.0, 15.0)), _portrait(PORTRAIT))
    assert torch.allclose(out.rotation[:, 2], torch.full((5,), -175.0))
    assert torch.allclose(out.rotation[:, 0], torch.full((5,), 5.0))


def test_still_mode_holds_the_portrait_pose_on_every_frame():
    perf = _random_perf(frames=12)
    out = edit_performance(perf, MotionEdit(pose_mode="still"), _portrait((1.0, 2.0, 3.0)))
    assert torch.equal(out.rotation, torch.tensor([[1.0, 2.0, 3.0]]).expand(12, 3))


def test_scaling_a_turn_through_180_halves_the_real_motion():
    # yaw turns 170 -> 180 -> -170: a 20 degree turn through the back; halving it gives 170 -> 175 -> 180,
    # not the 340 degree swing the raw numbers suggest.
    perf = _perf([[170.0, 0, 0], [180.0, 0, 0], [-170.0, 0, 0]])
    out = edit_performance(perf, MotionEdit(pose_scale=(0.5, 1.0, 1.0)))
    got = [_wrap(v) for v in out.rotation[:, 0].tolist()]
    assert got[0] == pytest.approx(170.0) and got[1] == pytest.approx(175.0)
    assert abs(got[2]) == pytest.approx(180.0)


def test_wrap_degrees_by_hand():
    x = torch.tensor([190.0, -190.0, 180.0, -180.0, 370.0, -370.0, 179.5, -179.5, 0.0, 725.0])
    expected = torch.tensor([_wrap(v) for v in x.tolist()])
    assert torch.equal(wrap_degrees(x), expected)


# ------------------------------------------------------------------------------------------- expression

def test_expression_strength_zero_freezes_on_the_first_frame():
    perf = _random_perf(frames=20)
    out = edit_performance(perf, MotionEdit(expression_strength=0.0))
    assert torch.equal(out.expression, perf.expression[:1].expand(20, N, D))
    assert torch.equal(out.rotation, perf.rotation)


def test_expression_strength_one_changes_nothing():
    perf = _random_perf(frames=20)
    # a pose edit forces the arithmetic path; expression must still come through bit for bit
    out = edit_performance(perf, MotionEdit(expression_strength=1.0, pose_offset=(1.0, 0.0, 0.0)))
    assert torch.equal(out.expression, perf.expression)


@pytest.mark.parametrize("strength, frames", [(0.5, 20), (1.5, 10)])  # softened, and exaggerated above one
def test_expression_strength_scales_the_change_from_the_first_frame(strength, frames):
    perf = _random_perf(frames=frames)
    e = perf.expression.double()
    expected = (e[:1] + strength * (e - e[:1])).float()
    out = edit_performance(perf, MotionEdit(expression_strength=strength))
    torch.testing.assert_close(out.expression, expected, atol=1e-6, rtol=0)
    # and it really did something
    assert not torch.allclose(out.expression, perf.expression)


def test_relative_expression_starts_from_the_portrait():
    perf = _random_perf(frames=15)
    portrait = _portrait()
    e = perf.expression.double()
    expected = (portrait.expression.double()[None] + (e - e[:1])).float()
    out = edit_performance(perf, MotionEdit(expression_mode="relative"), portrait)
    torch.testing.assert_close(out.expression, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.expression[0], portrait.expression, atol=1e-6, rtol=0)


@pytest.mark.parametrize("edit", [MotionEdit(pose_mode="relative"), MotionEdit(pose_mode="still"),
                                  MotionEdit(expression_mode="relative")])
def test_relative_and_still_need_a_portrait(edit):
    assert edit.needs_portrait
    with pytest.raises(HPError):
        edit_performance(_random_perf(), edit, None)


# ------------------------------------------------------------------------------------------- smoothing

@pytest.mark.parametrize("sigma", [0.5, 2.0, 4.0, 30.0])
@pytest.mark.parametrize("frames", [2, 7, 40])
def test_smoothing_keeps_constant_and_linear_signals(sigma, frames):
    t = torch.arange(frames, dtype=torch.float32)
    x = torch.stack([torch.full((frames,), 3.25), 0.37 * t - 2.0, -0.11 * t + 5.0], dim=1)    # (F, 3)
    y = smooth(x, sigma)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y, x, atol=1e-5, rtol=0)

    x3 = (0.2 * t - 1.0)[:, None, None] + torch.arange(N * D, dtype=torch.float32).reshape(1, N, D)
    torch.testing.assert_close(smooth(x3, sigma), x3, atol=1e-5, rtol=0)


@pytest.mark.parametrize("sigma", [2.0, 4.0])
def test_smoothing_white_noise_keeps_the_documented_variance(sigma):
    # A unit-area Gaussian of width sigma keeps sum(w^2) ~ integral of g^2 = 1 / (2 sqrt(pi) sigma) of the
    # variance of white noise.
    factor = 1.0 / (2.0 * math.sqrt(math.pi) * sigma)
    g = torch.Generator().manual_seed(123)
    x = torch.randn(20000, 2, generator=g, dtype=torch.float64)
    y = smooth(x, sigma)
    margin = 100
    ratio = (y[margin:-margin].var(dim=0) / x[margin:-margin].var(dim=0))
    for r in ratio.tolist():
        assert abs(r / factor - 1) < 0.10, (r, factor)
    assert abs(noise_variance_factor(sigma) / factor - 1) < 0.02


def test_smoothing_a_step_is_symmetric_and_does_not_lag():
    x = torch.zeros(100, 1)
    x[50:] = 1.0
    y = smooth(x, 4.0)[:, 0]
    for k in range(50):
        assert abs(y[49 - k].item() + y[50 + k].item() - 1.0) < 1e-6, k
    assert 0.1 < y[49].item() < 0.5 < y[50].item() < 0.9        # smoothed, centred on 49.5
    assert abs(y[0].item()) < 1e-6 and abs(y[99].item() - 1) < 1e-6


def test_smoothing_zero_returns_the_input():
    x = torch.randn(10, 3)
    assert torch.equal(smooth(x, 0.0), x)
    perf = _random_perf(frames=30)
    out = edit_performance(perf, MotionEdit(pose_smoothing=2.0))
    # pose smoothing leaves expressions alone; the pose does get calmer
    assert torch.equal(out.expression, perf.expression)
    assert not torch.allclose(out.rotation, perf.rotation)
    jitter = lambda r: float((r[2:] - 2 * r[1:-1] + r[:-2]).abs().mean())       # noqa: E731
    assert jitter(out.rotation) < 0.5 * jitter(perf.rotation)


def test_expression_smoothing_keeps_a_linear_expression_and_leaves_the_pose():
    frames = 25
    t = torch.arange(frames, dtype=torch.float32)
    expression = (0.1 * t)[:, None, None] + torch.linspace(-1, 1, N * D).reshape(1, N, D)
    perf = _perf(torch.cumsum(torch.ones(frames, 3), 0), expression=expression)
    out = edit_performance(perf, MotionEdit(expression_smoothing=3.0))
    torch.testing.assert_close(out.expression, expression, atol=1e-5, rtol=0)
    assert torch.equal(out.rotation, perf.rotation)


# ------------------------------------------------------------------------------------------- length

def test_start_and_length_cut_exact_frames():
    perf = _random_perf(frames=12)
    out = edit_performance(perf, MotionEdit(start=3, length=5))
    assert out.frames == 5
    assert torch.equal(out.expression, perf.expression[3:8])
    assert torch.equal(out.rotation, perf.rotation[3:8])
    assert torch.equal(out.translation, perf.translation[3:8])
    # length 0 = every frame from start
    out = edit_performance(perf, MotionEdit(start=4))
    assert out.frames == 8 and torch.equal(out.expression, perf.expression[4:])


@pytest.mark.parametrize("start,length", [(0, 13), (3, 10), (11, 2)])
def test_length_past_the_end_without_loop_is_refused(start, length):
    with pytest.raises(HPError):
        edit_performance(_random_perf(frames=12), MotionEdit(start=start, length=length))


def test_pingpong_plays_back_and_forth():
    perf = _random_perf(frames=5)
    out = edit_performance(perf, MotionEdit(length=12, loop="pingpong"))
    src = [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert out.frames == 12
    assert torch.equal(out.rotation, perf.rotation[src])
    assert torch.equal(out.expression, perf.expression[src])
    a, b, w = timeline(5, MotionEdit(length=12, loop="pingpong"))
    assert a.tolist() == src and b.tolist() == src and not w.any()


def test_pingpong_from_a_start_frame():
    perf = _random_perf(frames=10)
    out = edit_performance(perf, MotionEdit(start=6, length=9, loop="pingpong"))
    src = [6, 7, 8, 9, 8, 7, 6, 7, 8]
    assert torch.equal(out.rotation, perf.rotation[src])


def test_repeat_crossfades_the_seam():
    frames, length = 20, 50
    ramp = torch.arange(frames, dtype=torch.float32)
    rotation = torch.stack([ramp, torch.zeros(frames), torch.zeros(frames)], 1)
    # each source frame marks its own slot, so an output frame's expression reads out its mixing weights
    expression = torch.zeros(frames, N, D)
    expression.view(frames, -1)[torch.arange(frames), torch.arange(frames)] = 1.0
    perf = _perf(rotation, expression=expression)
    out = edit_performance(perf, MotionEdit(length=length, loop="repeat"))
    assert out.frames == length

    weights = out.expression.reshape(length, -1)[:, :frames].double()
    assert float(out.expression.reshape(length, -1)[:, frames:].abs().max()) == 0.0
    assert float(weights.min()) >= -1e-7                               # convex: no negative weights ...
    torch.testing.assert_close(weights.sum(1), torch.ones(length, dtype=torch.float64), atol=1e-6, rtol=0)
    # ... and the rotation is mixed with the same weights as the expression
    torch.testing.assert_close(out.rotation[:, 0].double(), weights @ ramp.double(), atol=1e-4, rtol=0)

    # the first pass plays the start of the clip untouched
    assert torch.equal(out.rotation[:10], rotation[:10])

    y = out.rotation[:, 0]
    span = float(ramp[-1] - ramp[0])
    plain = torch.tensor([float(i % frames) for i in range(length)])
    assert float((plain[1:] - plain[:-1]).abs().max()) == span                 # a plain repeat jumps the span
    assert float((y[1:] - y[:-1]).abs().max()) < 0.5 * span                   # the crossfade does not
    assert float(y.min()) >= 0 and float(y.max()) <= frames - 1


def test_intensity_ids_follow_each_output_chunk_first_frame():
    ids = [(0, 10), (1, 11), (2, 12), (3, 13)]
    perf = _perf(torch.cumsum(torch.ones(20, 3), 0), chunk=5, ids=ids)
    # cut: output frames 0 and 5 are source frames 7 and 12 -> chunks 1 and 2
    out = edit_performance(perf, MotionEdit(start=7, length=10))
    assert out.intensity_ids.tolist() == [[1, 11], [2, 12]]
    assert out.intensity_ids.dtype == torch.int32 and out.chunk == 5
    # pingpong of frames 10..19 to 25: output frames 0 5 10 15 20 are source 10 15 18 13 12 -> chunks 2 3 3 2 2
    out = edit_performance(perf, MotionEdit(start=10, length=25, loop="pingpong"))
    assert out.intensity_ids.tolist() == [[2, 12], [3, 13], [3, 13], [2, 12], [2, 12]]
    assert out.problem() is None


# ------------------------------------------------------------------------------------------- refusals

NAN = float("nan")


@pytest.mark.parametrize("edit", [
    MotionEdit(expression_strength=NAN),
    MotionEdit(expression_strength=float("inf")),
    MotionEdit(pose_smoothing=-1.0),
    MotionEdit(pose_smoothing=NAN),
    MotionEdit(expression_smoothing=-1.0),
    MotionEdit(expression_smoothing=NAN),
    MotionEdit(pose_smoothing=31.0),
    MotionEdit(pose_mode="sideways"),
    MotionEdit(expression_mode="mirror"),
    MotionEdit(loop="bounce"),
    MotionEdit(pose_scale=(1.0, NAN, 1.0)),
    MotionEdit(pose_offset=(0.0, 0.0)),
    MotionEdit(start=-1),
    MotionEdit(length=-3),
    MotionEdit(start=12),
    MotionEdit(start=40),
    MotionEdit(start=12, loop="repeat", length=20),
], ids=lambda e: repr(e)[:70])
def test_impossible_settings_are_refused(edit):
    with pytest.raises(HPError):
        edit_performance(_random_perf(frames=12), edit, _portrait())
