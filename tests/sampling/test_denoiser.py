"""Exact savings: skipped attention terms, sequential branches and the guidance interval change nothing
beyond fp32 rounding, and the interval really runs one UNet evaluation per window per step outside it."""

import math

import pytest
import torch
from diffusers.models.attention_processor import Attention

from hp_core import pipeline as P
from hp_core.models.unet import AdapterAttnProcessor

from helpers import random_conditions
from release_reference import release_loop


def _sample_counting_unet_calls(tiny_models, cond, ref, settings, noise):
    """sample_latents' result and the batch size of every UNet call it made."""
    calls = []
    handle = tiny_models.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    try:
        return P.sample_latents(tiny_models, cond, ref, settings, noise=noise), calls
    finally:
        handle.remove()


def test_zero_token_rows_equal_to_out_of_the_value_bias():
    """With zero tokens the attention terms are constants: derive them by hand (to_v and to_out biases)."""
    torch.manual_seed(0)
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4, bias=True, out_bias=True)
    proc = AdapterAttnProcessor(8, 6, num_motion_tokens=3)
    x = torch.randn(3, 5, 8)
    app, mot = torch.randn(1, 4, 6), torch.randn(1, 3, 6)
    ctx = torch.cat([torch.cat([torch.zeros_like(app), torch.zeros_like(mot)], 1),
                     torch.cat([app, torch.zeros_like(mot)], 1), torch.cat([app, mot], 1)])
    with torch.no_grad():
        plain = proc(attn, x, encoder_hidden_states=ctx)
        proc.present = [(False, False), (True, False), (True, True)]
        fast = proc(attn, x, encoder_hidden_states=ctx)
        # uncond row by hand: softmax over equal logits averages identical values = to_v.bias, then to_out
        by_hand = attn.to_out[0].weight @ attn.to_v.bias + attn.to_out[0].bias
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast[0], by_hand.expand(5, -1), rtol=1e-6, atol=1e-6)
    assert not torch.allclose(fast[1], fast[2])  # the motion term does act where motion is present


@pytest.mark.parametrize("mode", ["batched", "sequential"])
def test_branch_modes_equal_release_loop_tightly(tiny_models, mode):
    settings = P.Settings(steps=3, height=64, width=64, window=8, overlap=2, pad=2, appearance_cfg=(1.5, 2.5),
                          branch_mode=mode)
    cond, ref = random_conditions(tiny_models, 6, settings)
    noise = P.initial_noise(settings, cond.length, (8, 8))
    ours, calls = _sample_counting_unet_calls(tiny_models, cond, ref, settings, noise)
    with torch.no_grad():
        want = release_loop(tiny_models, cond, ref, settings, noise)
    torch.testing.assert_close(ours, want, rtol=2e-5, atol=2e-5)
    windows = math.ceil(cond.length / 6)
    assert calls == ([3] * windows * 3 if mode == "batched" else [1] * windows * 3 * 3)


def test_interval_covering_every_step_equals_default(tiny_models):
    settings = P.Settings(steps=3, height=64, width=64, window=8, overlap=2, pad=2)
    cond, ref = random_conditions(tiny_models, 6, settings)
    noise = P.initial_noise(settings, cond.length, (8, 8))
    default = P.sample_latents(tiny_models, cond, ref, settings, noise=noise)
    covered = P.sample_latents(tiny_models, cond, ref, P.replace(settings, guidance_interval=(0.0, 1e4)), noise=noise)
    torch.testing.assert_close(covered, default, rtol=0, atol=0)
    partial = P.sample_latents(tiny_models, cond, ref, P.replace(settings, guidance_interval=(0.0, 1.0)), noise=noise)
    assert not torch.allclose(partial, default)


def test_empty_interval_runs_one_unet_evaluation_per_window_per_step(tiny_models):
    settings = P.Settings(steps=4, height=64, width=64, window=8, overlap=2, pad=2,
                          guidance_interval=(1e5, 1e6))  # above sigma_max: no step is guided
    cond, ref = random_conditions(tiny_models, 6, settings)
    noise = P.initial_noise(settings, cond.length, (8, 8))
    ours, calls = _sample_counting_unet_calls(tiny_models, cond, ref, settings, noise)
    windows = math.ceil(cond.length / 6)
    assert calls == [1] * windows * 4  # one UNet call of batch 1 (the full branch) per window per step
    # outside the interval guidance is off: the same as guidance scales of 1 (out = full) on every step
    with torch.no_grad():
        want = release_loop(tiny_models, cond, ref, P.replace(settings, appearance_cfg=(1.0, 1.0),
                                                          motion_cfg=(1.0, 1.0)), noise)
    torch.testing.assert_close(ours, want, rtol=2e-5, atol=2e-5)


def test_planned_evaluations_count_by_hand():
    from hp_core.sampling.denoiser import GuidanceSettings, planned_evaluations
    sig = torch.tensor([10.0, 5.0, 1.0, 0.5, 0.0])
    s = GuidanceSettings(window=8, overlap=2, shift=3, appearance_cfg=(2.0, 2.0), motion_cfg=(2.0, 2.0))  # 4 windows
    assert planned_evaluations(sig, 20, s) == 4 * 4 * 3
    s.guidance_interval = (0.8, 6.0)                     # steps at 5 and 1 guided, 10 and 0.5 not
    assert planned_evaluations(sig, 20, s) == 4 * (1 + 3 + 3 + 1)
