"""fp8 weight storage: Linear and convolution weights kept as float8_e4m3fn, cast to the compute dtype each
time a layer reads them (what ComfyUI's fp8_e4m3fn weight dtype does), so a network takes half the memory
of fp16 while computing in fp16/bf16 (fp32 on the CPU).

The cast is a weight parametrization: ``layer.weight`` returns the cast tensor wherever it is read (the
layer's own forward, or code that reads the weight directly), and the fp8 tensor is the stored parameter.
The result equals, exactly, a plain network whose weights were rounded to fp8 and cast back.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

FP8 = torch.float8_e4m3fn
FP8_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class CastWeight(nn.Module):
    """The parametrization: the stored fp8 weight, read in ``dtype``."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        return stored.to(self.dtype)


def store_fp8(module: nn.Module, compute_dtype: torch.dtype) -> nn.Module:
    """Keep every Linear/conv weight of ``module`` as fp8, read in ``compute_dtype``; everything else (biases,
    norms, embeddings) in ``compute_dtype``. In place; returns ``module``."""
    nn.Module.to(module, dtype=compute_dtype)
    for layer in module.modules():
        if isinstance(layer, FP8_LAYERS) and not parametrize.is_parametrized(layer, "weight"):
            layer.weight = nn.Parameter(layer.weight.detach().to(FP8), requires_grad=False)
            parametrize.register_parametrization(layer, "weight", CastWeight(compute_dtype), unsafe=True)
    module.hp_compute_dtype = compute_dtype
    return module


def stored_bytes(module: nn.Module) -> int:
    """Bytes the module's parameters and buffers occupy as stored."""
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a network computes in: its fp8 compute dtype, else its first parameter's."""
    return getattr(module, "hp_compute_dtype", None) or next(module.parameters()).dtype


__all__ = ["FP8", "CastWeight", "compute_dtype", "store_fp8", "stored_bytes"]
