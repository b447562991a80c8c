"""Weights streamed block by block: a UNet larger than the GPU memory it may use keeps the blocks that fit
a budget on the GPU and the others in host memory (pinned on CUDA), copying each to the GPU just before it
runs and dropping the copy after (the weights never change, so nothing is copied back; ComfyUI's --lowvram
does the same for its own models). The result is the same; the cost is the copies, so the budget decides
how many blocks stream.

Blocks are the UNet's down blocks, mid block and up blocks; its small input, embedding and output layers
always stay on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def moves_per_call(self) -> int:
        """Copies one UNet call makes: each streamed block once, to the device."""
        return len(self.streamed)


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


@dataclass
class BlockStreamer:
    """Hooks that copy a streamed block's weights to the device before it runs and drop them after;
    ``moves`` counts the block copies."""

    plan: StreamPlan
    device: torch.device
    moves: int = 0
    _host: dict = field(default_factory=dict)      # tensor -> its host copy (pinned on CUDA)
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
        pin = self.device.type == "cuda"
        for block in self.plan.streamed:
            for t in (*block.parameters(), *block.buffers()):
                host = t.data.to("cpu")
                t.data = host.pin_memory() if pin else host
                self._host[t] = t.data
            self._handles.append(block.register_forward_pre_hook(self._bring_in))
            self._handles.append(block.register_forward_hook(self._send_out))
        return self

    def _tensors(self, block: nn.Module):
        return (*block.parameters(), *block.buffers())

    def _bring_in(self, block, args):
        for t in self._tensors(block):
            t.data = self._host[t].to(self.device, non_blocking=True)
        self.moves += 1

    def _send_out(self, block, args, output):
        for t in self._tensors(block):
            t.data = self._host[t]

    def detach(self) -> None:
        """Remove the hooks; streamed blocks stay on the host."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def budget_bytes(gib: float) -> int:
    """A --vram-budget in GiB as bytes."""
    return int(float(gib) * (1 << 30))


__all__ = ["BlockStreamer", "StreamPlan", "budget_bytes", "plan_stream", "unet_blocks"]
