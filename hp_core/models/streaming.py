"""Weights streamed block by block: a UNet larger than the GPU memory it may use keeps the blocks that fit
a budget on the GPU and the others in host memory (pinned on CUDA), copying each to the GPU before it runs
and dropping the copy after (the weights never change, so nothing is copied back; ComfyUI's --lowvram does
the same for its own models). The result is the same; the cost is the copies, so the budget decides how
many blocks stream.

The copies overlap the computation: on CUDA they run on a side stream, the next streamed block's copy
issued as the current one starts (the first one's as the UNet call starts), and the compute stream waits
for a block's copy only when that block is about to run. So at most two streamed blocks are on the GPU at
once: the one running and the next.

Blocks are the UNet's down blocks, mid block and up blocks; its small input, embedding and output layers
always stay on the device.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from .fp8 import stored_bytes


def unet_blocks(unet: nn.Module) -> list[nn.Module]:
    """The UNet's large blocks in the order they run."""
    return [*unet.down_blocks, unet.mid_block, *unet.up_blocks]


@dataclass
class StreamPlan:
    """Which blocks stay on the device and which stream, for a budget in bytes."""

    resident: list[nn.Module]
    streamed: list[nn.Module]
    resident_bytes: int
    streamed_bytes: int


def in_flight_bytes(streamed: Sequence[int]) -> int:
    """The most bytes of streamed blocks (sizes in running order) on the device at once: a block running and
    the next one's copy."""
    pairs = [a + b for a, b in zip(streamed, streamed[1:])]
    return max(pairs or streamed or [0])


def plan_stream(unet: nn.Module, budget_bytes: int) -> StreamPlan:
    """Keep the small layers and, in running order, the blocks that fit ``budget_bytes``; stream the rest
    (hp_core.memory.unet_weight_bytes estimates the same rule from shapes alone)."""
    blocks = unet_blocks(unet)
    block_ids = {id(m) for b in blocks for m in b.modules()}
    small = sum(stored_bytes(m) for m in unet.children() if id(m) not in block_ids and not isinstance(m, nn.ModuleList))
    used, resident, streamed = small, [], []
    for block in blocks:
        size = stored_bytes(block)
        if not streamed and used + size <= budget_bytes:
            resident.append(block)
            used += size
        else:
            streamed.append(block)
    return StreamPlan(resident, streamed, used, sum(stored_bytes(b) for b in streamed))


class EagerCopies:
    """Copies made when asked, on the current stream (the CPU, or a device without streams)."""

    def __init__(self, device: torch.device):
        self.device = device

    def issue(self, hosts: list[torch.Tensor]) -> tuple[list[torch.Tensor], object]:
        """Start copying ``hosts`` to the device: (the device tensors, what to wait on before using them)."""
        return [h.to(self.device) for h in hosts], None

    def wait(self, copies: list[torch.Tensor], ready: object) -> None:
        """Make the compute stream wait until ``copies`` are there."""


class SideStreamCopies(EagerCopies):
    """Copies on a CUDA side stream, from pinned memory, so they overlap the compute stream's work.

    The device memory is taken in the compute stream's order (as if the compute stream made the copy), so
    the memory of a block that has run is reused by the next copy at once and no more than two streamed
    blocks are held, however far the CPU runs ahead; the side stream first waits until the compute stream
    has finished what it queued before (that memory may have held the block before)."""

    def __init__(self, device: torch.device):
        super().__init__(device)
        self.stream = torch.cuda.Stream(device)

    def issue(self, hosts):
        copies = [torch.empty_like(h, device=self.device) for h in hosts]  # on the compute stream
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            for copy, host in zip(copies, hosts):
                copy.copy_(host, non_blocking=True)
            return copies, self.stream.record_event()

    def wait(self, copies, ready):
        # Every later use of this memory is on the compute stream, after this wait: the copy is done by then.
        torch.cuda.current_stream(self.device).wait_event(ready)


@dataclass
class BlockStreamer:
    """Hooks that bring a streamed block's weights to the device before it runs (its copy started while
    the block before it ran) and drop them after; ``moves`` counts the block copies, and ``events``, when
    given a list, records ("copy", i) and ("ran", i) for streamed block i in order."""

    plan: StreamPlan
    device: torch.device
    copier: EagerCopies | None = None
    moves: int = 0
    events: list | None = None
    _host: dict = field(default_factory=dict)      # tensor -> its host copy (pinned on CUDA)
    _pending: dict = field(default_factory=dict)   # streamed block index -> (device copies, ready)
    _handles: list = field(default_factory=list)

    def attach(self, unet: nn.Module) -> "BlockStreamer":
        """Place ``unet`` (resident parts on the device, streamed blocks on the host) and install the hooks."""
        streamed = {id(b) for b in self.plan.streamed}
        for module in unet.children():
            if isinstance(module, nn.ModuleList):
                for block in module:
                    if id(block) not in streamed:
                        block.to(self.device)
            elif id(module) not in streamed:
                module.to(self.device)
        cuda = self.device.type == "cuda"
        if self.copier is None:
            self.copier = SideStreamCopies(self.device) if cuda else EagerCopies(self.device)
        for i, block in enumerate(self.plan.streamed):
            for t in self._tensors(block):
                host = t.data.to("cpu")
                t.data = host.pin_memory() if cuda else host
                self._host[t] = t.data
            self._handles.append(block.register_forward_pre_hook(functools.partial(self._bring_in, i)))
            self._handles.append(block.register_forward_hook(functools.partial(self._send_out, i),
                                                             always_call=True))  # also when it raises
        if self.plan.streamed:
            self._handles.append(unet.register_forward_pre_hook(lambda module, args: self._prefetch(0)))
        return self

    @staticmethod
    def _tensors(block: nn.Module) -> list[torch.Tensor]:
        return [*block.parameters(), *block.buffers()]

    def _prefetch(self, i: int) -> None:
        """Start copying streamed block ``i`` (when there is one and it is not on its way already)."""
        if i < len(self.plan.streamed) and i not in self._pending:
            block = self.plan.streamed[i]
            self._pending[i] = self.copier.issue([self._host[t] for t in self._tensors(block)])
            self.moves += 1
            if self.events is not None:
                self.events.append(("copy", i))

    def _bring_in(self, i: int, block: nn.Module, args) -> None:
        self._prefetch(i)  # a block run outside a whole UNet call was not prefetched
        copies, ready = self._pending.pop(i)
        self.copier.wait(copies, ready)
        for t, copy in zip(self._tensors(block), copies):
            t.data = copy
        self._prefetch(i + 1)

    def _send_out(self, i: int, block: nn.Module, args, output) -> None:
        for t in self._tensors(block):
            t.data = self._host[t]
        if self.events is not None:
            self.events.append(("ran", i))

    def detach(self) -> None:
        """Remove the hooks and drop every device copy (a call cut short may have left some): the streamed
        blocks' tensors point at their host copies again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._pending.clear()
        for t, host in self._host.items():
            t.data = host


def budget_bytes(gib: float) -> int:
    """A --vram-budget in GiB as bytes."""
    return int(float(gib) * (1 << 30))


__all__ = ["BlockStreamer", "EagerCopies", "SideStreamCopies", "StreamPlan", "budget_bytes", "in_flight_bytes",
           "plan_stream", "unet_blocks"]
