"""Sampling pipeline on the tiny preset: release numerics, determinism, cancellation, bad settings."""

import pytest
import torch

from hp_core import pipeline as P
from hp_core.errors import HPError
from hp_core.sampling.samplers import Cancelled, sample

from release_reference import release_loop


def _conditions(tiny_models, frames, settings, pose=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = tiny_models.dims
    app = P.encode_appearance(tiny_models, torch.randn(1, 3, d.appearance_size, d.appearance_size, generator=g),
                              torch.randn(512, generator=g))
    chunks = -(-frames // settings.motion_chunk)
    motion = P.encode_motion(tiny_models, torch.rand(frames, 3, 64, 64, generator=g),
                             torch.rand(frames, 3, 64, 64, generator=g), [(5 + i, 9 + i) for i in range(chunks)],
                             chunk=settings.motion_chunk)
    ref, cond = P.encode_reference(tiny_models, torch.rand(1, 3, settings.height, settings.width, generator=g) * 2 - 1)
    pose_img = torch.rand(frames, 3, settings.height, settings.width, generator=g) if pose else None
    return P.build_conditions(app, motion.tokens, cond, pose_img, settings), ref


@pytest.mark.parametrize("frames,pose", [(30, False), (12, True)])
def test_official_settings_match_release_loop(tiny_models, frames, pose):
    settings = P.Settings(steps=4, height=64, width=64, appearance_cfg=(1.5, 2.5), motion_cfg=(2.0, 3.0))
    cond, ref = _conditions(tiny_models, frames, settings, pose=pose)
    noise = P.initial_noise(settings, cond.length, tuple(ref.shape[-2:]))
    with torch.no_grad():
        ours = P.sample_latents(tiny_models, cond, ref, settings, noise=noise)
        want = release_loop(tiny_models, cond, ref, settings, noise)
    assert ours.shape == (frames, 4, 8, 8)
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-4)


def test_same_seed_same_output_and_explicit_noise(tiny_models):
    settings = P.Settings(steps=2, height=64, width=64, window=6, overlap=2, pad=2, seed=11)
    cond, ref = _conditions(tiny_models, 5, settings)
    a = P.sample_latents(tiny_models, cond, ref, settings)
    b = P.sample_latents(tiny_models, cond, ref, settings)
    c = P.sample_latents(tiny_models, cond, ref, P.replace(settings, seed=12))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    noise = P.initial_noise(P.replace(settings, seed=12), cond.length, (8, 8))
    d = P.sample_latents(tiny_models, cond, ref, settings, noise=noise)
    torch.testing.assert_close(d, c, rtol=0, atol=0)
    with pytest.raises(HPError, match="noise"):
        P.sample_latents(tiny_models, cond, ref, settings, noise=noise[:, :3])


class GaussianDenoiser:
    """The exact denoiser of data x0 ~ N(mu, 1) per element: D(x, sigma) = (x + sigma^2 mu) / (1 + sigma^2)."""

    def __init__(self, mu):
        self.mu = mu
        self.evaluations = self.unet_calls = 0  # PortraitDenoiser's counters, which sample_latents reports

    def __call__(self, x, sigma, **_):
        self.evaluations += 1
        self.unet_calls += 1
        s2 = float(sigma.flatten()[0]) ** 2
        return (x + s2 * self.mu) / (1 + s2)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "lcm"])
def test_every_sampler_runs_the_pipeline(tiny_models, sampler, monkeypatch):
    settings = P.Settings(steps=3, height=64, width=64, window=4, overlap=1, pad=1, sampler=sampler,
                          schedule="exponential", seed=5)
    cond, ref = _conditions(tiny_models, 3, settings)
    gauss = GaussianDenoiser(torch.linspace(-1, 1, 5 * 4 * 8 * 8).reshape(1, 5, 4, 8, 8))
    monkeypatch.setattr(P, "PortraitDenoiser", lambda *a, **k: gauss)  # the UNet replaced by an exact denoiser
    out = P.sample_latents(tiny_models, cond, ref, settings)
    euler = P.sample_latents(tiny_models, cond, ref, P.replace(settings, sampler="euler"))
    # what the named sampler does from the seeded start (noise: seed; the sampler's own noise: seed + 1)
    sig = settings.sigma_schedule().float()
    x0 = ref.unsqueeze(1) + sig[0] * P.initial_noise(settings, 5, (8, 8))
    want = sample(sampler, gauss, x0, sig, generator=torch.Generator().manual_seed(6))[0, 1:4]
    torch.testing.assert_close(out, want)
    assert (out - euler).abs().max() > 1e-3  # a trajectory other than Euler's: the setting was used


def test_one_frame_one_step_and_short_videos(tiny_models):
    settings = P.Settings(steps=1, height=64, width=64, pad=0)
    cond, ref = _conditions(tiny_models, 1, settings)
    out = P.sample_latents(tiny_models, cond, ref, settings)
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()
    settings = P.Settings(steps=2, height=64, width=64, pad=2)  # 5 frames + padding < window 25: wraps
    cond, ref = _conditions(tiny_models, 5, settings)
    out = P.sample_latents(tiny_models, cond, ref, settings)
    assert out.shape == (5, 4, 8, 8) and torch.isfinite(out).all()


def test_cancel_between_steps_then_next_run_works(tiny_models):
    settings = P.Settings(steps=3, height=64, width=64, window=6, overlap=2, pad=2)
    cond, ref = _conditions(tiny_models, 4, settings)
    before = P.sample_latents(tiny_models, cond, ref, settings)  # a run before any cancel
    done, unet_calls = [], []
    handle = tiny_models.unet.register_forward_pre_hook(lambda *a: unet_calls.append(1))
    try:
        with pytest.raises(Cancelled) as err:  # cancel pressed once the first step has finished
            P.sample_latents(tiny_models, cond, ref, settings, progress=lambda i, n: done.append(i),
                             should_cancel=lambda: bool(done))
        cancelled_calls = len(unet_calls)
        P.sample_latents(tiny_models, cond, ref, P.replace(settings, steps=1))
    finally:
        handle.remove()
    assert err.value.step == 1 and err.value.total == 3 and done == [1]  # it stopped before step 2 of 3
    assert cancelled_calls == len(unet_calls) - cancelled_calls  # exactly one step's UNet calls ran
    after = P.sample_latents(tiny_models, cond, ref, settings)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # the cancel left nothing behind


def test_progress_reports_every_step(tiny_models):
    settings = P.Settings(steps=3, height=64, width=64, window=6, overlap=2, pad=1)
    cond, ref = _conditions(tiny_models, 2, settings)
    seen = []
    P.sample_latents(tiny_models, cond, ref, settings, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("change,match", [
    ({"window": 3, "overlap": 3}, "overlap"),
    ({"overlap": -1}, "negative"),
    ({"height": 60}, "multiples of 8"),
    ({"steps": 0}, "steps"),
    ({"denoise": 0.0}, "denoise"),
    ({"sampler": "nope"}, "sampler"),
])
def test_bad_settings_fail_before_any_model_runs(tiny_models, change, match):
    settings = P.replace(P.Settings(height=64, width=64), **change)
    cond, ref = _conditions(tiny_models, 2, P.Settings(height=64, width=64, pad=settings.pad if settings.pad >= 0 else 0))
    calls = []
    handle = tiny_models.unet.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(HPError, match=match):
            P.sample_latents(tiny_models, cond, ref, settings)
    finally:
        handle.remove()
    assert not calls


def test_denoise_strength_cuts_schedule_and_starts_near_reference(tiny_models, monkeypatch):
    full = P.Settings(steps=10).sigma_schedule()
    half = P.Settings(steps=10, denoise=0.5).sigma_schedule()
    assert len(half) == 6
    torch.testing.assert_close(half, full[5:])
    seen = []

    class Recording(P.PortraitDenoiser):
        def __call__(self, x, sigma, **extra):
            seen.append((x.clone(), float(sigma.flatten()[0])))
            return super().__call__(x, sigma, **extra)

    monkeypatch.setattr(P, "PortraitDenoiser", Recording)
    settings = P.Settings(steps=10, denoise=0.5, height=64, width=64, window=6, overlap=2, pad=1)
    cond, ref = _conditions(tiny_models, 2, settings)
    P.sample_latents(tiny_models, cond, ref, settings)
    # Euler visits the last half of the schedule, starting from the reference noised to its first sigma
    assert [s for _, s in seen] == pytest.approx(half[:-1].tolist(), rel=1e-6)
    noise = P.initial_noise(settings, cond.length, (8, 8))
    torch.testing.assert_close(seen[0][0], ref.unsqueeze(1) + float(half[0]) * noise)
    seen.clear()
    P.sample_latents(tiny_models, cond, ref, P.replace(settings, denoise=0.1))  # one step from sigma ~ 0.03
    start = seen[0][0]
    assert (start - ref.unsqueeze(1)).abs().max() < 0.2 < (noise * float(full[0])).abs().max()


def test_motion_scale_reaches_the_unet():
    models = P.random_models("tiny", seed=0)  # its own: the test leaves motion scales on the layers
    settings = P.Settings(steps=1, height=64, width=64, window=6, overlap=2, pad=1)
    cond, ref = _conditions(models, 3, settings)
    # 0 = no motion term: the same as zero motion tokens (to_v_ip has no bias, so zero tokens add nothing)
    no_motion = P.sample_latents(models, cond, ref, P.replace(settings, motion_scale=0.0))
    zeros = P.sample_latents(models, P.replace(cond, motion=torch.zeros_like(cond.motion)), ref, settings)
    torch.testing.assert_close(no_motion, zeros, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(no_motion, P.sample_latents(models, cond, ref, settings), rtol=1e-4, atol=1e-4)
    # at an adapter attention's output: out(s) = to_out(app + s * motion), so 2 - 1 = 1 - 0, and not 0
    attn = next(m for n, m in models.unet.named_modules() if n.endswith("attn2"))
    first = {}
    handle = attn.register_forward_hook(lambda m, a, out: first.setdefault("out", out.detach().clone()))
    try:
        outs = []
        for scale in (0.0, 1.0, 2.0):
            first.clear()
            P.sample_latents(models, cond, ref, P.replace(settings, motion_scale=scale))
            outs.append(first["out"])
    finally:
        handle.remove()
    step = outs[1] - outs[0]
    assert step.abs().max() > 1e-4
    torch.testing.assert_close(outs[2] - outs[1], step, rtol=1e-3, atol=1e-5)


def test_decode_is_chunked_and_in_range(tiny_models):
    lat = torch.randn(5, 4, 8, 8)
    seen = []
    frames = P.decode_latents(tiny_models, lat, chunk=2, progress=lambda i, n: seen.append(i))
    assert frames.shape == (5, 64, 64, 3)
    assert frames.min() >= 0 and frames.max() <= 1
    assert seen == [2, 4, 5]


def test_encode_motion_takes_uint8_frames_chunk_by_chunk(tiny_models):
    import numpy as np
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    poses = rng.integers(0, 256, (7, 64, 64, 3), dtype=np.uint8)
    as_float = [torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255 for a in (crops, poses)]
    a = P.encode_motion(tiny_models, crops, poses, [(1, 2), (3, 4)], chunk=4)
    b = P.encode_motion(tiny_models, *as_float, [(1, 2), (3, 4)], chunk=4)
    torch.testing.assert_close(a.tokens, b.tokens)
    assert a.ids == [(1, 2), (3, 4)] and a.tokens.shape[0] == 7
    with pytest.raises(HPError, match="intensity id pairs"):
        P.encode_motion(tiny_models, crops, poses, [(1, 2)], chunk=4)


def test_uint8_skeletons_reach_the_pose_guider_in_unit_range(tiny_models):
    settings = P.Settings(steps=1, height=64, width=64, window=4, overlap=1, pad=1)
    cond, ref = _conditions(tiny_models, 3, settings, pose=True)
    as_uint8 = (cond.pose * 255).round().to(torch.uint8)
    seen = []
    handle = tiny_models.pose_guider.register_forward_pre_hook(lambda m, args: seen.append(float(args[0].max())))
    try:
        a = P.sample_latents(tiny_models, P.replace(cond, pose=as_uint8), ref, settings)
    finally:
        handle.remove()
    assert seen and max(seen) <= 1.0
    b = P.sample_latents(tiny_models, P.replace(cond, pose=as_uint8.float() / 255), ref, settings)
    torch.testing.assert_close(a, b)
