"""Integration: every sampler of a real ComfyUI (comfy.samplers.SAMPLER_NAMES, as KSamplerSelect builds them)
drives the HunyuanPortrait sampler node on tiny weights; CFG++ variants are refused with a readable message,
and ComfyUI's euler gives the same latents as the built-in (release) euler. Also: the pack's networks pass
through ComfyUI's real ModelPatcher / load_models_gpu and unload.

Needs $COMFYUI_PATH (and $COMFYUI_PYTHON with ComfyUI's requirements, default: this interpreter); skipped
otherwise. The ComfyUI modules are imported in a child process (run as this file's __main__), so this
test session never mixes ComfyUI's top-level modules with the pack's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.comfyui]
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set (path of a ComfyUI checkout)")
def test_every_comfyui_sampler_drives_the_portrait_sampler(tmp_path):
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    proc = subprocess.run([python, str(Path(__file__).resolve()), str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["samplers"]
    assert len(results) > 30 and "euler" in results and "dpmpp_2m" in results and "uni_pc" in results
    for name, outcome in results.items():
        if "cfg_pp" in name:
            assert outcome.startswith("HPError") and "_cfg_pp" in outcome, (name, outcome)
        else:
            assert outcome == "ok", (name, outcome)
    assert report["euler_vs_builtin"] < 1e-4
    # Both networks went through load_models_gpu, the VAE was unloaded again, and they still work.
    assert report["managed"] == [2, 1, 0.0]


def _probe(models_dir: str) -> dict:
    """Child process: run the sampler node with each ComfyUI sampler."""
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.append(os.environ["COMFYUI_PATH"])
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT))
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.samplers as cs
    import folder_paths
    import torch

    from nodes_env import driving_video, load_tiny_models, make_models_dir, source_image

    make_models_dir(models_dir)
    import nodes

    folder_paths.add_model_folder_path("hunyuan_portrait", models_dir, is_default=True)
    m = nodes.NODE_CLASS_MAPPINGS
    models = load_tiny_models()
    feats = m["HunyuanPortraitFaceCropMotionEncoder"]().encode(driving_video(3), "yolo", -1, 0, 0, "auto")[0]
    motion = m["HunyuanPortraitMotionExtractor"]().extract(models, feats, -1, -1)[0]
    app = m["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), False, 64, "yolo")[0]
    sigmas = torch.FloatTensor([700.0, 54.5, 4.248, 0.403, 0.0])
    settings = dict(sampler_name="euler", scheduler="karras", steps=4, appearance_cfg_min=2.0,
                    appearance_cfg_max=2.0, motion_cfg_min=2.0, motion_cfg_max=2.0, seed=1, denoise=1.0,
                    context_window=6, context_overlap=2, shift=3, padding=1, motion_scale=1.0, noise_aug=0.0)
    node = m["HunyuanPortraitSampler"]()
    results, latents = {}, {}
    for name in cs.SAMPLER_NAMES:
        try:
            out = node.sample(models, app, motion, **settings, sampler=cs.sampler_object(name), sigmas=sigmas)
            latents[name] = out[0]["samples"]
            results[name] = "ok" if torch.isfinite(latents[name]).all() else "not finite"
        except Exception as err:  # noqa: BLE001 - reported per sampler
            results[name] = f"{type(err).__name__}: {err}"
    builtin = node.sample(models, app, motion, **settings, sigmas=sigmas)[0]["samples"]

    # ComfyUI's real ModelPatcher / load_models_gpu on the pack's networks (the CPU as load device).
    import comfy.model_management as mm
    from nodes import bridge
    placer = bridge.Placer(torch.device("cpu"), keep=lambda module: False)
    patchers = [placer._patcher(models.unet), placer._patcher(models.vae)]
    mm.load_models_gpu(patchers, force_full_load=True)
    loaded = sum(any(lm.model is p for lm in mm.current_loaded_models) for p in patchers)
    placer._unload(models.vae)
    after = sum(any(lm.model is p for lm in mm.current_loaded_models) for p in patchers)
    again = node.sample(models, app, motion, **settings, sigmas=sigmas)[0]["samples"]
    return {"samplers": results, "euler_vs_builtin": float((latents["euler"] - builtin).abs().max()),
            "managed": [loaded, after, float((again - builtin).abs().max())]}


@pytest.mark.skipif(not os.environ.get("COMFYUI_PATH"), reason="COMFYUI_PATH is not set (path of a ComfyUI checkout)")
def test_builtin_samplers_equal_comfyuis_own_k_diffusion_functions():
    """Each registered sampler, called with k-diffusion's signature, gives what ComfyUI's function of the same
    name gives on the same model, sigmas and noise: a drop-in KSAMPLER function, and a check of our
    arithmetic against a second implementation."""
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    proc = subprocess.run([python, str(Path(__file__).resolve()), "--registry"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    from hp_core.sampling import SAMPLERS
    assert sorted(report) == sorted(SAMPLERS)
    for name, (diff, steps, scale) in report.items():
        assert steps == list(range(8)), name  # ComfyUI's callback convention: one dict per step, in order
        assert diff < 1e-9 * scale, (name, diff)


def _registry_probe() -> dict:
    """Child process: ours against ComfyUI's k-diffusion functions on the exact Gaussian denoiser."""
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.append(os.environ["COMFYUI_PATH"])
    sys.path.insert(0, str(ROOT))
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.k_diffusion.sampling as kd
    import torch

    from hp_core.sampling import REGISTRY, get_sigmas
    from hp_core.sampling.samplers import draw_noise
    from nodes.comfy_sampler import ComfyDenoiser

    mu, s = 0.7, 0.5

    def gaussian(x, sigma, **_extra):
        sg = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        return (s**2 * x + sg**2 * mu) / (s**2 + sg**2)

    sigmas = get_sigmas("karras", 8, sigma_max=80.0).double()
    x = mu + 80.0 * torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    report = {}
    for name, spec in REGISTRY.items():
        results, steps = [], []
        for fn in (spec.function, getattr(kd, f"sample_{name}")):
            gen = torch.Generator().manual_seed(3)
            kwargs = {"noise_sampler": lambda _a, _b, g=gen: draw_noise(g, x)} if spec.stochastic else {}
            calls = []
            results.append(fn(ComfyDenoiser(gaussian), x, sigmas, extra_args={"seed": 3},
                              callback=lambda info, c=calls: c.append(int(info["i"])), disable=True, **kwargs))
            steps.append(calls)
        assert steps[0] == steps[1], (name, steps)
        report[name] = [float((results[0] - results[1]).abs().max()), steps[1], float(results[1].abs().max())]
    return report


if __name__ == "__main__":
    if sys.argv[1] == "--registry":
        print(json.dumps(_registry_probe()))
    else:
        print(json.dumps(_probe(sys.argv[1])))
