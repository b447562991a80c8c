"""Choice of PyTorch's scaled-dot-product-attention backend, by name (a CUDA speed/memory option).

``None`` (the default) lets PyTorch pick per call. "flash" and "efficient" keep attention memory linear in
the token count; "math" builds the full attention matrix (slow, large, but works everywhere); "cudnn" is
NVIDIA's fused kernel. PyTorch raises when the pinned backend cannot run a call (e.g. flash in fp32).
"""

from __future__ import annotations

import contextlib

from ..errors import HPError

SDPA_BACKENDS = ("auto", "flash", "efficient", "math", "cudnn")


def sdpa_backends(name: str | None) -> list | None:
    """Backend name -> the torch.nn.attention.SDPBackend list to pin (None or "auto": no pinning)."""
    if name in (None, "auto"):
        return None
    from torch.nn.attention import SDPBackend  # only when a backend is pinned: torch.nn.attention is torch >= 2.3

    table = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
             "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}
    if name not in table:
        raise HPError(f"Unknown attention backend {name!r}.", hint=f"Use one of {', '.join(SDPA_BACKENDS)}.")
    return [table[name]]


def sdpa_context(backends: list | None):
    """A context manager that pins SDPA to ``backends`` for the block (no-op for None)."""
    if backends is None:
        return contextlib.nullcontext()
    from torch.nn.attention import sdpa_kernel  # as above

    return sdpa_kernel(backends)
