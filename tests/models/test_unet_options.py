"""The opt-in CUDA options reach the UNet from Settings and the CLI (routing, on the CPU)."""

import pytest
import torch

from hp_core import pipeline as P
from hp_core.errors import HPError


def _run(tiny_models, **options):
    settings = P.Settings(steps=1, height=64, width=64, window=4, overlap=1, pad=1, **options)
    d = tiny_models.dims
    app = torch.randn(1, d.appearance_tokens, d.context_dim)
    cond = P.build_conditions(app, torch.randn(2, d.motion_tokens, d.context_dim), torch.randn(1, 4, 8, 8),
                              None, settings)
    return P.sample_latents(tiny_models, cond, torch.randn(1, 4, 8, 8), settings)


def test_math_backend_is_pinned_inside_the_unet(tiny_models, monkeypatch):
    import torch.nn.attention as A
    seen = []
    real = A.sdpa_kernel

    def spy(backends, *a, **k):
        seen.append(list(backends))
        return real(backends, *a, **k)
    monkeypatch.setattr(A, "sdpa_kernel", spy)
    _run(tiny_models, sdpa_backend="math")
    assert seen and all(b == [A.SDPBackend.MATH] for b in seen)
    seen.clear()
    _run(tiny_models)  # auto: nothing pinned
    assert seen == []
    with pytest.raises(HPError, match="attention backend"):
        P.Settings(sdpa_backend="fastest").validate()


def test_compile_flag_calls_torch_compile(monkeypatch):
    tiny_models = P.random_models("tiny", seed=0)
    compiled = []

    def fake_compile(fn, *a, **k):
        compiled.append(fn)
        return fn
    monkeypatch.setattr(torch, "compile", fake_compile)
    _run(tiny_models)
    assert compiled == []
    _run(tiny_models, compile_unet=True)
    _run(tiny_models, compile_unet=True)  # compiled once, kept
    assert len(compiled) == 1


def test_cli_routes_the_options(monkeypatch):
    from hp_core.cli import animate_request, build_parser
    args = build_parser().parse_args(["animate", "--image", "a.png", "--video", "b.mp4", "--out", "c.mp4",
                                      "--branch-mode", "sequential", "--guidance-interval", "0.5", "20",
                                      "--attention", "math", "--compile", "--decode-chunk", "4"])
    st = animate_request(args).settings
    assert (st.branch_mode, st.guidance_interval, st.sdpa_backend, st.compile_unet,
            st.decode_chunk) == ("sequential", (0.5, 20.0), "math", True, 4)
