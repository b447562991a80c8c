"""Samplers on an analytic problem: Gaussian data N(mu, s^2) has the exact denoiser (s^2 x + sigma^2 mu)/(s^2 + sigma^2)."""

import inspect
import math

import pytest
import torch

from hp_core.errors import HPError
from hp_core.sampling import REGISTRY, SAMPLERS, STOCHASTIC_SAMPLERS, Cancelled, draw_noise, get_sigmas, sample
from hp_core.sampling.v_prediction import c_in, c_noise, v_to_denoised


def scale_input(x, sigma):
    """The release's UNet input x / sqrt(sigma^2 + 1), in its order of operations (divided, not c_in * x)."""
    return x / ((sigma**2 + 1) ** 0.5)


def denoised_to_v(denoised, x, sigma):
    """Inverse of v_to_denoised: the v that yields ``denoised`` at (x, sigma); sigma > 0."""
    return (denoised - x / (sigma**2 + 1)) / (-sigma / (sigma**2 + 1) ** 0.5)

MU, S, SMAX = 0.7, 0.5, 80.0
N = 20000


def gaussian_denoiser(x, sigma):
    sg = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return (S**2 * x + sg**2 * MU) / (S**2 + sg**2)


@pytest.fixture(scope="module")
def z():
    return torch.randn(N, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def start(z):
    # The exact marginal at SMAX: data variance plus noise variance.
    return MU + math.sqrt(S**2 + SMAX**2) * z


def run(name, z, steps, seed=1, schedule="karras"):
    sig = get_sigmas(schedule, steps, sigma_max=SMAX)
    return sample(name, gaussian_denoiser, start(z), sig, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,ratio,tol", [("euler", 3.0, 0.15), ("heun", 10.0, 0.02), ("dpmpp_2m", 10.0, 0.02)])
def test_deterministic_samplers_converge_to_the_exact_ode_solution(z, name, ratio, tol):
    # The probability-flow ODE maps the start sample linearly: x_end = mu + (x_start - mu) * s / sqrt(s^2 + smax^2).
    exact = MU + z * S
    err16 = (run(name, z, 16) - exact).abs().max().item()
    err64 = (run(name, z, 64) - exact).abs().max().item()
    assert err64 < err16 / ratio
    assert err64 < tol


def test_euler_ancestral_distribution_converges(z):
    err = {n: abs(run("euler_ancestral", z, n).std().item() - S) for n in (8, 64)}
    assert err[64] < err[8] / 3 and err[64] < 0.07
    assert abs(run("euler_ancestral", z, 64).mean().item() - MU) < 0.01


def test_dpmpp_2m_sde_distribution_converges(z):
    err = {n: abs(run("dpmpp_2m_sde", z, n).std().item() - S) for n in (16, 64)}
    assert err[64] < err[16] / 3 and err[64] < 0.01
    assert abs(run("dpmpp_2m_sde", z, 64).mean().item() - MU) < 0.01


def test_lcm_moments_follow_the_linear_gaussian_recursion(z):
    # LCM jumps to the posterior mean and re-noises: with a mean (not consistency-distilled) denoiser its
    # moments follow m' = k m + (1-k) mu, v' = k^2 v + sigma_next^2 with k = s^2 / (s^2 + sigma^2); the
    # sampler must reproduce exactly that.
    steps = 12
    sig = get_sigmas("karras", steps, sigma_max=SMAX).double().tolist()
    m, v = MU, S**2 + SMAX**2
    for i in range(steps):
        k = S**2 / (S**2 + sig[i] ** 2)
        m, v = k * m + (1 - k) * MU, k * k * v + sig[i + 1] ** 2
    out = run("lcm", z, steps)
    assert out.mean().item() == pytest.approx(m, abs=0.01)
    assert out.std().item() == pytest.approx(math.sqrt(v), rel=0.02)


def test_euler_single_step_by_hand():
    calls = []

    def model(x, sigma):
        calls.append(sigma.clone())
        return 0.3 * x

    x = torch.tensor([[1.0]], dtype=torch.float64)
    out = sample("euler", model, x, torch.tensor([2.0, 0.5]))
    # d = (1 - 0.3) / 2 = 0.35; x = 1 + 0.35 * (0.5 - 2) = 0.475
    assert out.item() == pytest.approx(0.475)
    assert calls[0].shape == (1,) and calls[0].item() == 2.0
    out = sample("euler", model, x, torch.tensor([2.0, 0.5, 0.0]))
    assert out.item() == pytest.approx(0.3 * 0.475)  # the step to sigma 0 lands on the denoised estimate


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_euler_with_v_prediction_matches_the_release_step(dtype):
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.EulerDiscreteScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
        use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous",
    )
    sched.set_timesteps(8)
    sigmas = get_sigmas("karras", 8)
    weight = torch.randn(4, 4, generator=torch.Generator().manual_seed(3)) * 0.3

    def fake_unet(x_in, t):  # any deterministic function of the scaled input and the timestep
        return torch.tanh(torch.einsum("ij,bjhw->bihw", weight, x_in.float()) + t).to(dtype)

    x0 = (torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(4)) * 700.0).to(dtype)

    def denoiser(x, sigma):
        s = sigma[0].to(torch.float32)
        return v_to_denoised(fake_unet(scale_input(x, s), c_noise(s)), x, s)

    ours = sample("euler", denoiser, x0, sigmas)
    if dtype == torch.float32:
        ref = x0
        for t in sched.timesteps:
            v = fake_unet(sched.scale_model_input(ref, t), t)
            ref = sched.step(v, t, ref).prev_sample
        assert torch.equal(ours, ref)  # same arithmetic in the same order: bit-identical
    # The release's own step (no fp32 upcast, unlike newer diffusers), written out with float32 0-d sigmas,
    # so fp16 latents round exactly as they do there.
    ref = x0
    for i, t in enumerate(sched.timesteps):
        s, s_next = sched.sigmas[i], sched.sigmas[i + 1]
        v = fake_unet(ref / ((s**2 + 1) ** 0.5), t)
        pred = v * (-s / (s**2 + 1) ** 0.5) + ref / (s**2 + 1)
        ref = ref + (ref - pred) / s * (s_next - s)
    assert ref.dtype == dtype
    assert torch.equal(ours, ref)


def test_v_prediction_round_trip():
    x = torch.randn(3, 4, dtype=torch.float64)
    d = torch.randn(3, 4, dtype=torch.float64)
    s = torch.tensor(3.0, dtype=torch.float64)
    torch.testing.assert_close(v_to_denoised(denoised_to_v(d, x, s), x, s), d)
    # sigma = 1: c_out = -1/sqrt(2), c_skip = 1/2
    one = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(v_to_denoised(d, x, one), -d / math.sqrt(2) + x / 2)
    torch.testing.assert_close(c_in(one) * x, x / math.sqrt(2))
    assert c_noise(torch.tensor(math.e**4)).item() == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(STOCHASTIC_SAMPLERS))
def test_same_seed_same_result_different_seed_different(z, name):
    a = run(name, z[:200], 6, seed=11)
    b = run(name, z[:200], 6, seed=11)
    c = run(name, z[:200], 6, seed=12)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - STOCHASTIC_SAMPLERS))
def test_deterministic_samplers_ignore_the_generator(z, name):
    assert torch.equal(run(name, z[:200], 6, seed=1), run(name, z[:200], 6, seed=2))
    sig = get_sigmas("karras", 6, sigma_max=SMAX)
    assert torch.equal(sample(name, gaussian_denoiser, start(z[:200]), sig), run(name, z[:200], 6))


def test_stochastic_sampler_without_generator_raises(z):
    with pytest.raises(HPError, match="Generator"):
        sample("euler_ancestral", gaussian_denoiser, start(z[:10]), get_sigmas("karras", 4, sigma_max=SMAX))


@pytest.mark.parametrize("name", SAMPLERS)
def test_cancel_raises_between_steps_and_a_later_call_works(z, name):
    sig = get_sigmas("karras", 6, sigma_max=SMAX)
    x = start(z[:100])
    x_before = x.clone()
    model_calls = []
    checks = []

    def model(xx, sigma):
        model_calls.append(float(sigma[0]))
        return gaussian_denoiser(xx, sigma)

    def should_cancel():
        checks.append(len(model_calls))
        return len(checks) == 3  # cancel before the third step

    done = []
    with pytest.raises(Cancelled) as info:
        sample(
            name, model, x, sig, generator=torch.Generator().manual_seed(5),
            should_cancel=should_cancel, callback=lambda info: done.append(info["i"]),
        )
    assert isinstance(info.value, HPError) and info.value.step == 2
    assert done == [0, 1]
    assert len(model_calls) == checks[-1]  # nothing reached the model after the cancelling check
    assert torch.equal(x, x_before)
    again = sample(name, gaussian_denoiser, x, sig, generator=torch.Generator().manual_seed(5))
    fresh = sample(name, gaussian_denoiser, x_before, sig, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again, fresh)


def test_callback_sees_every_step_in_order_as_a_k_diffusion_dict(z):
    seen = []
    sig = get_sigmas("karras", 5, sigma_max=SMAX)
    x0 = start(z[:50])
    out = sample("heun", gaussian_denoiser, x0, sig, callback=seen.append)
    assert [info["i"] for info in seen] == list(range(5))
    assert all(set(info) == {"x", "i", "sigma", "sigma_hat", "denoised"} for info in seen)
    assert [float(info["sigma"]) for info in seen] == sig[:-1].tolist()
    # "x" is the sample the step started from, "denoised" the model's estimate there (k-diffusion's meaning).
    assert torch.equal(seen[0]["x"], x0)
    for info in seen:
        assert torch.equal(info["denoised"], gaussian_denoiser(info["x"], info["sigma"].reshape(1)))
    # The last step (Heun's plain Euler step to sigma 0) ends on the returned sample.
    last = seen[-1]
    assert torch.equal(out, last["x"] + (last["x"] - last["denoised"]) / last["sigma"] * (0 - last["sigma"]))


def test_model_gets_a_sigma_batch_and_extra_args():
    got = {}

    def model(x, sigma, **extra):
        got.update(extra, shape=tuple(sigma.shape), dtype=sigma.dtype)
        return x * 0

    sample("dpmpp_2m", model, torch.ones(3, 2), torch.tensor([1.0, 0.5, 0.0]), extra_args={"cond": 7})
    assert got == {"cond": 7, "shape": (3,), "dtype": torch.float32}


def test_noise_depends_only_on_seed_and_shape():
    like32 = torch.zeros(2, 3)
    like64 = torch.zeros(2, 3, dtype=torch.float64)
    a = draw_noise(torch.Generator().manual_seed(9), like32)
    b = draw_noise(torch.Generator().manual_seed(9), like64)
    assert a.dtype == torch.float32 and b.dtype == torch.float64
    torch.testing.assert_close(a.double(), b)
    assert torch.equal(a, torch.randn(2, 3, generator=torch.Generator().manual_seed(9)))


def test_noise_is_drawn_on_the_generator_device_and_moved_to_x():
    # x may live on another device than the generator (CPU generator, accelerator latents); meta stands in.
    like = torch.empty(2, 3, device="meta", dtype=torch.float16)
    noise = draw_noise(torch.Generator().manual_seed(1), like)
    assert noise.device.type == "meta" and noise.dtype == torch.float16 and noise.shape == (2, 3)


def test_bad_arguments_raise_before_the_model_runs():
    calls = []

    def model(x, sigma):
        calls.append(1)
        return x

    x = torch.zeros(2, 2)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(HPError):
        sample("ddim", model, x, torch.tensor([1.0, 0.0]))
    with pytest.raises(HPError):
        sample("euler", model, x, torch.tensor([1.0, 0.0]), eta=0.5)
    with pytest.raises(HPError):
        sample("euler_ancestral", model, x, torch.tensor([1.0, 0.0]), generator=g, eta=-1.0)
    for bad in (torch.tensor([1.0]), torch.tensor([1.0, 2.0, 0.0]), torch.tensor([1.0, -0.5]), torch.ones(2, 2)):
        with pytest.raises(HPError):
            sample("euler", model, x, bad)
    assert calls == []


# ---------------------------------------------------------------------------------------------- the registry
KDIFF_PARAMS = ["model", "x", "sigmas", "extra_args", "callback", "disable"]


@pytest.mark.parametrize("name", SAMPLERS)
def test_registry_entry_has_k_diffusion_signature_options_and_randomness(name):
    spec = REGISTRY[name]
    params = inspect.signature(spec.function).parameters
    assert list(params)[:6] == KDIFF_PARAMS
    assert all(params[p].default is None for p in KDIFF_PARAMS[3:])
    extra = {p: v.default for p, v in params.items() if p not in KDIFF_PARAMS}
    # Every option the registry lists is a keyword of the function with the same default, and the only
    # other keyword is noise_sampler, which exactly the stochastic samplers take.
    assert {p: d for p, d in extra.items() if p != "noise_sampler"} == dict(spec.options)
    assert ("noise_sampler" in extra) == spec.stochastic == (name in STOCHASTIC_SAMPLERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_registry_function_called_the_way_comfyui_ksampler_calls_it_equals_sample(z, name):
    """ComfyUI's KSAMPLER.sample calls sampler_function(model_k, noise, sigmas, extra_args=..., callback=...,
    disable=..., **extra_options), with the seed and model_options in extra_args, which reach the model."""
    spec = REGISTRY[name]
    sig = get_sigmas("karras", 6, sigma_max=SMAX)
    x = start(z[:64])
    seen_extra, steps = [], []

    def model_k(xx, sigma, model_options=None, seed=None):
        seen_extra.append((model_options, seed))
        return gaussian_denoiser(xx, sigma)

    theirs = spec.function(model_k, x, sig, extra_args={"model_options": {"k": 1}, "seed": 11},
                           callback=lambda info: steps.append(info["i"]), disable=True, **spec.options)
    ours = sample(name, gaussian_denoiser, x, sig, generator=torch.Generator().manual_seed(11))
    assert torch.equal(theirs, ours)  # the same numbers; stochastic ones seeded from extra_args["seed"]
    assert seen_extra
    assert all(opts == {"k": 1} and seed == 11 for opts, seed in seen_extra)
    assert steps == list(range(6))
