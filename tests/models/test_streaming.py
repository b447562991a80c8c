"""Weights streamed block by block (hp_core.models.streaming): the same result as a UNet held whole, with
exactly the planned number of block copies, and the plan follows the budget."""

from __future__ import annotations

import pytest
import torch

from helpers import random_conditions
from hp_core import pipeline as P
from hp_core.models.fp8 import stored_bytes
from hp_core.models.streaming import BlockStreamer, EagerCopies, SideStreamCopies, plan_stream, unet_blocks


def test_the_plan_keeps_blocks_in_running_order_until_the_budget_is_spent(tiny_models):
    unet = tiny_models.unet
    blocks = unet_blocks(unet)
    everything = plan_stream(unet, stored_bytes(unet) + 1)
    assert everything.streamed == []
    nothing = plan_stream(unet, 0)
    assert nothing.streamed == blocks
    half = plan_stream(unet, stored_bytes(unet) // 2)
    assert half.resident + half.streamed == blocks and half.resident and half.streamed
    assert half.resident_bytes <= stored_bytes(unet) // 2 < half.resident_bytes + stored_bytes(half.streamed[0])


def test_streaming_gives_the_same_latents_with_the_planned_copies(tiny_models):
    models = tiny_models
    settings = P.Settings(steps=1, height=64, width=64, window=4, overlap=1, pad=1)
    cond, ref = random_conditions(models, 5, settings)
    whole = P.sample_latents(models, cond, ref, settings)
    calls = []
    handle = models.unet.register_forward_pre_hook(lambda m, args: calls.append(1))
    budget = stored_bytes(models.unet) // 2
    streamed = P.replace(models, stream_budget=budget)
    try:
        out = P.sample_latents(streamed, cond, ref, settings)
    finally:
        handle.remove()
    torch.testing.assert_close(out, whole, rtol=0, atol=0)
    plan = plan_stream(models.unet, budget)
    assert len(plan.streamed) >= 2
    assert streamed.last_stream.moves == len(calls) * len(plan.streamed)  # every call copied each streamed block once
    for block in plan.streamed:  # the hooks are gone after the stage
        assert not block._forward_pre_hooks and not block._forward_hooks


def test_each_copy_starts_while_the_block_before_it_runs(tiny_models):
    """Block i+1's copy is issued as block i starts (block 0's as the UNet call starts, while the resident
    blocks run), and block i's copy is waited for just before block i runs, never earlier."""
    models = tiny_models
    unet = models.unet
    plan = plan_stream(unet, stored_bytes(unet) // 3)
    assert plan.resident and len(plan.streamed) >= 3
    log = []

    class Recorded(EagerCopies):
        def issue(self, hosts):
            copies, _ = super().issue(hosts)
            ready = object()
            log.append(("issue", ready))
            return copies, ready

        def wait(self, copies, ready):
            log.append(("wait", ready))

    streamer = BlockStreamer(plan, torch.device("cpu"), Recorded(torch.device("cpu")), events=[]).attach(unet)
    resident_ran = []
    hook = plan.resident[-1].register_forward_hook(lambda *a: resident_ran.append(len(streamer.events)))
    try:
        with torch.no_grad():
            unet(torch.randn(1, 3, 8, 8, 8), 0.4, torch.randn(1, 16, unet.config.cross_attention_dim),
                 torch.tensor([[12.5, 0, 0]]))
    finally:
        hook.remove()
        streamer.detach()
    n = len(plan.streamed)
    expected = [("copy", 0)] + [e for i in range(n) for e in ([("copy", i + 1)] if i + 1 < n else []) + [("ran", i)]]
    assert streamer.events == expected
    assert resident_ran == [1]  # block 0's copy was under way while the resident blocks ran
    issued = [r for kind, r in log if kind == "issue"]
    waited = [r for kind, r in log if kind == "wait"]
    assert waited == issued  # each block waited for its own copy, in order
    # block i waits for its copy, and only then does block i+1's copy start
    order = [(kind, issued.index(r)) for kind, r in log]
    assert order == [("issue", 0)] + [e for i in range(n) for e in [("wait", i)] + ([("issue", i + 1)] if i + 1 < n else [])]
    assert streamer.moves == n and not streamer._pending


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the side stream exists only on a CUDA GPU")
def test_side_stream_copies_give_the_resident_result_on_cuda():
    """On a GPU the copies run on a side stream: the same latents as the UNet held whole on the GPU."""
    models = P.random_models("tiny", seed=0, device="cuda")
    settings = P.Settings(steps=2, height=64, width=64, window=4, overlap=1, pad=1)
    cond, ref = random_conditions(models, 9, settings)
    whole = P.sample_latents(models, cond, ref, settings)
    streamed = P.replace(models, stream_budget=stored_bytes(models.unet) // 3)
    out = P.sample_latents(streamed, cond, ref, settings)
    assert isinstance(streamed.last_stream.copier, SideStreamCopies)
    torch.testing.assert_close(out, whole, rtol=1e-3, atol=1e-3)  # cuDNN may pick other kernels between runs


def test_a_block_that_raises_gives_its_copy_back():
    """A call cut short inside a streamed block (out of memory, say) leaves no device copy behind: the
    block's tensors point at their host copies again at once (torch calls the hook for an Exception), and
    after detach every block's do (also after a KeyboardInterrupt, which skips the hook)."""
    unet = P.random_models("tiny", seed=0).unet
    plan = plan_stream(unet, 0)

    class Clones(EagerCopies):  # distinct "device" tensors, so the test can tell copy from host
        def issue(self, hosts):
            return [h.clone() for h in hosts], None

    streamer = BlockStreamer(plan, torch.device("cpu"), Clones(torch.device("cpu"))).attach(unet)
    block = plan.streamed[0]
    hosts = [streamer._host[t].data_ptr() for t in BlockStreamer._tensors(block)]

    def fail(module, args):
        raise torch.OutOfMemoryError("stand-in")

    handle = block.register_forward_pre_hook(fail)
    try:
        with torch.no_grad(), pytest.raises(torch.OutOfMemoryError):
            unet(torch.randn(1, 3, 8, 8, 8), 0.4, torch.randn(1, 16, unet.config.cross_attention_dim),
                 torch.tensor([[12.5, 0, 0]]))
        assert [t.data_ptr() for t in BlockStreamer._tensors(block)] == hosts  # given back when it raised
    finally:
        handle.remove()
        streamer.detach()
    for b in plan.streamed:  # the prefetched next block too, after detach
        assert all(t.data_ptr() == streamer._host[t].data_ptr() for t in BlockStreamer._tensors(b))
