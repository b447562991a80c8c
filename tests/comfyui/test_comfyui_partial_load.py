"""Integration: inside a real ComfyUI the UNet's layers are ComfyUI's cast-capable ones, so ComfyUI's own
ModelPatcher loads it partially under a memory budget smaller than the UNet (what --lowvram and dynamic VRAM
do for ComfyUI's models), and a UNet call on the partially loaded model gives the fully loaded model's output.

Needs $COMFYUI_PATH (and $COMFYUI_PYTHON with ComfyUI's requirements); the ComfyUI modules are imported in a
child process (this file run as __main__), so this test session never mixes them with the pack's.
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
def test_comfyui_loads_the_unet_partially_and_it_computes_the_same():
    python = os.environ.get("COMFYUI_PYTHON", sys.executable)
    proc = subprocess.run([python, str(Path(__file__).resolve())], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["streamable"] is True and report["cast_layers"] > 10
    assert report["partial"] is True                            # ComfyUI reports a partial load ...
    assert 0 < report["loaded_bytes"] < report["unet_bytes"]    # ... of less than the whole UNet
    assert report["max_diff"] == 0.0                             # and the same output as the full load
    assert report["full_partial"] is False                      # a budget above the UNet loads it whole


def _probe() -> dict:
    """Child process: a tiny UNet through ComfyUI's ModelPatcher, partially and fully loaded."""
    sys.argv = [sys.argv[0], "--cpu"]
    sys.path.append(os.environ["COMFYUI_PATH"])
    sys.path.insert(0, str(ROOT))
    import comfy.options
    comfy.options.enable_args_parsing()
    import comfy.model_patcher
    import torch

    from hp_core import pipeline as P
    from nodes import bridge

    models = P.random_models("tiny", seed=0)
    unet = models.unet
    g = torch.Generator().manual_seed(1)
    args = (torch.randn(1, 3, 8, 8, 8, generator=g), 0.3, torch.randn(1, 3, 16, 32, generator=g),
            torch.randn(1, 3, generator=g))
    with torch.no_grad():
        before = unet(*args)
    streamable = bridge.streamable(unet)
    cast_layers = sum(hasattr(m, "comfy_cast_weights") for m in unet.modules())
    unet_bytes = bridge._module_bytes(unet)

    def load(budget: int):
        patcher = comfy.model_patcher.ModelPatcher(bridge._Holder(unet), load_device=torch.device("cpu"),
                                                   offload_device=torch.device("cpu"))
        patcher.load(torch.device("cpu"), lowvram_model_memory=budget)
        with torch.no_grad():
            out = unet(*args)
        info = (bool(patcher.model.model_lowvram), int(patcher.model.model_loaded_weight_memory))
        patcher.detach()
        return out, info

    partial_out, (partial, loaded) = load(unet_bytes // 3)
    full_out, (full_partial, _) = load(unet_bytes * 4)
    return {"streamable": streamable, "cast_layers": cast_layers, "partial": partial, "loaded_bytes": loaded,
            "unet_bytes": unet_bytes, "full_partial": full_partial,
            "max_diff": float(max((partial_out - before).abs().max(), (full_out - before).abs().max()))}


if __name__ == "__main__":
    print(json.dumps(_probe()))
