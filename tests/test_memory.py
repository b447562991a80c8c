"""Memory estimate: impossible settings are refused before any UNet call, auto picks sequential when the
batched step will not fit, and too large a decode chunk is refused before the VAE runs."""

import pytest
import torch

from hp_core import memory, pipeline as P
from hp_core.errors import HPError


def _inputs(tiny_models, frames=4, size=64):
    settings = P.Settings(steps=1, height=size, width=size, window=4, overlap=1, pad=1)
    g = torch.Generator().manual_seed(0)
    d = tiny_models.dims
    app = torch.randn(1, d.appearance_tokens, d.context_dim, generator=g)
    motion = torch.randn(frames, d.motion_tokens, d.context_dim, generator=g)
    cond = P.build_conditions(app, motion, torch.randn(1, 4, size // 8, size // 8, generator=g), None, settings)
    return settings, cond, torch.randn(1, 4, size // 8, size // 8, generator=g)


def _batches(tiny_models):
    calls = []
    return calls, tiny_models.unet.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))


def test_impossible_setting_refused_before_any_unet_call(tiny_models, monkeypatch):
    settings, cond, ref = _inputs(tiny_models)
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024)  # 1 KiB "free"
    calls, handle = _batches(tiny_models)
    try:
        with pytest.raises(HPError, match="context window") as err:
            P.sample_latents(tiny_models, cond, ref, settings)
    finally:
        handle.remove()
    assert calls == []
    assert "sequential" in str(err.value) and "output size" in str(err.value)


def test_auto_picks_sequential_when_batched_does_not_fit(tiny_models, monkeypatch):
    settings, cond, ref = _inputs(tiny_models)
    cfg, dt = tiny_models.unet.config, torch.float32
    batched = memory.unet_call_bytes(cfg, 3 * 4, (8, 8), dt)
    sequential = memory.unet_call_bytes(cfg, 4, (8, 8), dt)
    assert sequential < batched
    monkeypatch.setattr(memory, "free_bytes", lambda device: (sequential + batched) // 2)
    calls, handle = _batches(tiny_models)
    try:
        auto = P.sample_latents(tiny_models, cond, ref, settings)
    finally:
        handle.remove()
    assert calls and set(calls) == {1}  # every UNet call ran one branch
    monkeypatch.setattr(memory, "free_bytes", lambda device: 10 * batched)
    calls, handle = _batches(tiny_models)
    try:
        roomy = P.sample_latents(tiny_models, cond, ref, settings)
    finally:
        handle.remove()
    assert set(calls) == {3}
    torch.testing.assert_close(auto, roomy, rtol=1e-4, atol=1e-4)  # fp32 rounding of batch 1 vs 3
    # asked for batched by hand, it is refused rather than run out of memory
    monkeypatch.setattr(memory, "free_bytes", lambda device: (sequential + batched) // 2)
    with pytest.raises(HPError, match="branch mode sequential"):
        P.sample_latents(tiny_models, cond, ref, P.replace(settings, branch_mode="batched"))


def test_estimate_grows_as_window_times_size_and_math_adds_the_score_matrix(tiny_models):
    cfg = tiny_models.unet.config
    a = memory.unet_call_bytes(cfg, 4, (8, 8), torch.float32)
    b = memory.unet_call_bytes(cfg, 8, (16, 16), torch.float32)
    fixed = memory.UNET_FIXED_BYTES * memory.SAFETY
    assert (b - fixed) == pytest.approx(8 * (a - fixed), rel=1e-6)  # 2x rows, 4x pixels
    m = memory.unet_call_bytes(cfg, 4, (8, 8), torch.float32, math_attention=True)
    # by hand: scores + softmax, 4 rows x 2 heads x 64^2 entries x 4 bytes, times the safety factor
    assert m - a == pytest.approx(2 * 4 * 2 * 64 ** 2 * 4 * memory.SAFETY, abs=2)


def test_decode_chunk_refused_before_the_vae_runs(tiny_models, monkeypatch):
    monkeypatch.setattr(memory, "free_bytes", lambda device: 1024)
    seen = []
    handle = tiny_models.vae.register_forward_pre_hook(lambda m, a: seen.append(1))
    orig = tiny_models.vae.decode
    monkeypatch.setattr(tiny_models.vae, "decode", lambda *a, **k: seen.append(1) or orig(*a, **k))
    try:
        with pytest.raises(HPError, match="decode_chunk"):
            P.decode_latents(tiny_models, torch.randn(4, 4, 8, 8), chunk=4)
    finally:
        handle.remove()
    assert seen == []


def test_cpu_free_bytes_reads_meminfo(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:    1234 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", meminfo)
    assert memory.free_bytes("cpu") == 1234 * 1024  # MemAvailable, not MemFree
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "missing")
    assert memory.free_bytes("cpu") is None  # not Linux: unknown, so nothing is refused on a guess


# ------------------------------------------------------------------------------- fp8 and streaming

def test_weight_estimate_follows_fp8_and_the_streaming_plan():
    """The shapes-only estimate equals the bytes of a real tiny UNet stored each way, and a budget keeps what
    the streaming plan keeps plus the two streamed blocks in flight."""
    import copy

    from hp_core import pipeline as P
    from hp_core.memory import unet_weight_bytes
    from hp_core.models.fp8 import store_fp8, stored_bytes
    from hp_core.models.streaming import plan_stream

    unet = P.random_models("tiny", seed=0).unet
    half = copy.deepcopy(unet).half()
    assert unet_weight_bytes("tiny", torch.float16) == stored_bytes(half)
    fp8 = store_fp8(copy.deepcopy(unet), torch.float16)
    assert unet_weight_bytes("tiny", torch.float16, fp8=True) == stored_bytes(fp8)
    budget = stored_bytes(half) // 2
    plan = plan_stream(half, budget)
    sizes = [stored_bytes(b) for b in plan.streamed]
    assert len(sizes) >= 3  # so the pair in flight is not simply all of them
    in_flight = max(sizes[i] + sizes[i + 1] for i in range(len(sizes) - 1))  # one block running, the next copying
    assert unet_weight_bytes("tiny", torch.float16, stream_budget=budget) == plan.resident_bytes + in_flight


def test_a_setting_refused_in_fp16_fits_with_fp8_or_a_vram_budget():
    from hp_core.memory import check_device_memory, unet_call_bytes, unet_weight_bytes
    from hp_core.models import unet_config
    from types import SimpleNamespace

    kw = dict(dtype=torch.float16, window=25, latent_hw=(64, 64))
    calls = unet_call_bytes(SimpleNamespace(**unet_config("official")), 25, (64, 64), torch.float16)
    fp16 = unet_weight_bytes("official", torch.float16) + calls
    fp8 = unet_weight_bytes("official", torch.float16, fp8=True) + calls
    free = (fp16 + fp8) // 2  # between the two
    with pytest.raises(HPError) as err:
        check_device_memory("official", "cuda", free=free, **kw)
    text = str(err.value)
    assert "fp8" in text and "--vram-budget" in text  # both suggested before refusing
    budget = float(text.split("--vram-budget ")[1].split(")")[0])
    assert check_device_memory("official", "cuda", free=free, fp8=True, **kw) == fp8
    assert check_device_memory("official", "cuda", free=free, stream_budget=int(budget * 2**30), **kw) <= free
    assert check_device_memory("official", "cpu", free=1, **kw) == 0  # the CPU is checked elsewhere
