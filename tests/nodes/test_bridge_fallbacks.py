"""Every ComfyUI internal the bridge uses (bridge.INTERNALS) can go missing: with each removed in turn from a
minimal fake ComfyUI, the pack still registers its folders, fills its dropdowns, loads, samples (through a
SAMPLER input too), places networks, previews and cancels, and says exactly once which internal it fell
back from. docs/comfyui_internals.md lists the same table."""

from __future__ import annotations

import logging
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from nodes import bridge

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "comfyui_internals.md"
DOC_HEAD = """# ComfyUI internals used by HunyuanPortrait

Every ComfyUI attribute that `nodes/bridge.py` and `nodes/comfy_sampler.py` use, what for, and what the pack
does where a ComfyUI release no longer has it (tested with ComfyUI {tested}). Each use goes through
`bridge.comfy()` / `bridge.comfy_call()` or names its entry in `bridge.fall_back()`; a missing attribute, or a
function that no longer takes the pack's arguments, logs one warning per entry per process:
`HunyuanPortrait: ComfyUI's X is not available (changed in a newer ComfyUI?); falling back to Y.`

This table is `bridge.INTERNALS`; `tests/nodes/test_bridge_fallbacks.py` keeps the two equal (regenerate with
`PYTHONPATH=. python tests/nodes/test_bridge_fallbacks.py --write-doc`) and removes each entry in turn.

| Internal | Used for | Fallback |
|---|---|---|
"""


def render_doc() -> str:
    rows = "".join(f"| `{i.name}` | {i.used_for} | {i.fallback} |\n" for i in bridge.INTERNALS)
    return DOC_HEAD.format(tested=bridge.ComfyInternals.TESTED_WITH) + rows


def test_doc_lists_the_same_internals():
    assert DOC.read_text(encoding="utf-8") == render_doc(), "run: PYTHONPATH=. python tests/nodes/test_bridge_fallbacks.py --write-doc"
    names = [i.name for i in bridge.INTERNALS]
    assert len(names) == len(set(names))
    assert all(any(n.startswith(m + ".") for m in bridge._MODULES) for n in names)


# ------------------------------------------------------------------------------------ the scenario

def fallback_warnings(records) -> list[str]:
    return [r.getMessage() for r in records if "is not available (changed in a newer ComfyUI?)" in r.getMessage()]


def exercise(node_inputs: dict, make_sampler, placer_device: torch.device) -> dict:
    """Everything the pack asks of ComfyUI, once: folders and dropdowns, loading, a sampler run with a
    SAMPLER input and one with the built-in sampler, placement, precision, previews, cancel, OOM cleanup.
    ``node_inputs``: appearance, performance (made beforehand); ``make_sampler()``: a KSAMPLER."""
    import nodes
    from nodes import loader
    from nodes_env import load_tiny_models

    bridge.register_model_folder()
    for cls in nodes.NODE_CLASS_MAPPINGS.values():
        cls.INPUT_TYPES()
    assert bridge.model_files(), "the models folder is not found"
    bridge.performance_dirs()
    bridge.insightface_dirs()
    vae_choices = bridge.comfy_vae_files()
    assert vae_choices and bridge.comfy_vae_path(vae_choices[0]) is not None
    loader._LOADED.clear()
    models = load_tiny_models()
    settings = dict(sampler_name="euler", scheduler="karras", steps=2, appearance_cfg_min=2.0, appearance_cfg_max=2.0,
                    motion_cfg_min=2.0, motion_cfg_max=2.0, seed=1, denoise=1.0, context_window=6, context_overlap=2,
                    shift=3, padding=1, motion_scale=1.0, noise_aug=0.0)
    node = nodes.NODE_CLASS_MAPPINGS["HunyuanPortraitSampler"]()
    sampled = node.sample(models, node_inputs["appearance"], node_inputs["performance"], **settings,
                          sampler=make_sampler())[0]["samples"]
    builtin = node.sample(models, node_inputs["appearance"], node_inputs["performance"], **settings)[0]["samples"]
    assert torch.isfinite(sampled).all() and sampled.shape == builtin.shape
    # placement with model management, precision, previews, cancel, out-of-memory cleanup
    nets = [torch.nn.ReLU(), torch.nn.Tanh()]  # parameter-free: nothing really moves to a GPU
    placer = bridge.Placer(placer_device, keep=lambda m: m is nets[0])
    with placer(nets):
        pass
    with placer(nets):
        pass
    bridge.half_precision_ok(torch.device("cuda"))
    bridge.half_precision_ok(torch.device("cuda:1"))  # the fake advises against fp16 there: bf16 is asked
    bridge.offload_device()
    progress = bridge.Progress(2)
    progress(1)
    progress.preview(1, 2, torch.zeros(1, 3, 4, 8, 8))
    bridge.check_interrupt()
    assert not bridge.interrupted()
    bridge.unload_all_models()
    return {"difference": float((sampled - builtin).abs().max())}


# ---------------------------------------------------------------------------------- a fake ComfyUI

def fake_comfyui(base: Path) -> dict[str, types.ModuleType]:
    """The modules and attributes bridge.INTERNALS names, with ComfyUI 0.3.64's signatures and behaviour
    reduced to what the pack needs. The folder functions keep their own registry (removing
    folder_names_and_paths only hides it)."""
    mods = {n: types.ModuleType(n) for n in ("comfy", "comfy.model_management", "comfy.utils", "folder_paths",
                                              "comfy.model_patcher", "comfy.model_sampling", "comfy.latent_formats",
                                              "comfy.samplers", "comfy.ops", "latent_preview")}
    fp, mm, cu = mods["folder_paths"], mods["comfy.model_management"], mods["comfy.utils"]
    registry: dict = {"vae": ([str(base / "models" / "vae")], {".safetensors"})}
    fp.__file__ = str(base / "folder_paths.py")
    fp.models_dir = str(base / "models")
    fp.folder_names_and_paths = registry

    def add_model_folder_path(folder_name, full_folder_path, is_default=False):
        paths = registry.setdefault(folder_name, ([], set()))[0]
        if full_folder_path not in paths:
            paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)

    def get_folder_paths(folder_name):
        return registry[folder_name][0][:]

    def get_filename_list(folder_name):
        paths, exts = registry[folder_name]
        out = []
        for p in paths:
            for root, _, names in os.walk(p):
                out += [os.path.relpath(os.path.join(root, n), p).replace(os.sep, "/") for n in names
                        if not exts or os.path.splitext(n)[1].lower() in exts]
        return sorted(out)

    def get_full_path(folder_name, filename):
        return next((os.path.join(p, filename) for p in registry[folder_name][0]
                     if os.path.isfile(os.path.join(p, filename))), None)

    fp.add_model_folder_path, fp.get_folder_paths = add_model_folder_path, get_folder_paths
    fp.get_filename_list, fp.get_full_path = get_filename_list, get_full_path

    class VRAMState:
        NORMAL_VRAM, LOW_VRAM, NO_VRAM = "normal", "low", "none"

    class LoadedModel:
        def __init__(self, model):
            self.model = model

        def model_unload(self, memory_to_free=None, unpatch_weights=True):
            self.model.detach()
            return True

    loaded: list = []

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        for p in models:
            if not any(lm.model is p for lm in loaded):
                p.model.to(p.load_device)
                loaded.insert(0, LoadedModel(p))

    mm.VRAMState, mm.vram_state, mm.LoadedModel, mm.current_loaded_models = (VRAMState, VRAMState.NORMAL_VRAM,
                                                                             LoadedModel, loaded)
    mm.load_models_gpu = load_models_gpu
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.should_use_fp16 = (lambda device=None, model_params=0, prioritize_performance=True, manual_cast=False:
                          getattr(device, "index", None) != 1)
    mm.should_use_bf16 = lambda device=None, model_params=0, prioritize_performance=True, manual_cast=False: False
    mm.soft_empty_cache = lambda force=False: None
    mm.free_memory = lambda memory_required, device, keep_loaded=[]: []
    mm.module_size = lambda module: bridge._module_bytes(module)
    mm.processing_interrupted = lambda: False
    mm.throw_exception_if_processing_interrupted = lambda: None
    mm.unload_all_models = lambda: loaded.clear()

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0

        def update_absolute(self, value, total=None, preview=None):
            self.current = value

    cu.ProgressBar = ProgressBar

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device = model, load_device, offload_device

        def detach(self, unpatch_all=True):
            self.model.to(self.offload_device)

    mods["comfy.model_patcher"].ModelPatcher = ModelPatcher

    class ModelSamplingContinuousEDM:
        def __init__(self, model_config=None):
            s = model_config.sampling_settings
            self.sigma_min, self.sigma_max, self.sigma_data = s["sigma_min"], s["sigma_max"], s["sigma_data"]

    class V_PREDICTION:
        pass

    mods["comfy.model_sampling"].ModelSamplingContinuousEDM = ModelSamplingContinuousEDM
    mods["comfy.model_sampling"].V_PREDICTION = V_PREDICTION

    class SD15:
        pass

    mods["comfy.latent_formats"].SD15 = SD15

    class LatentPreviewer:
        def decode_latent_to_preview_image(self, preview_format, x0):
            return ("JPEG", None, 512)

    mods["latent_preview"].LatentPreviewer = LatentPreviewer
    mods["latent_preview"].get_previewer = lambda device, latent_format: LatentPreviewer()

    class KSAMPLER:
        def __init__(self, sampler_function, extra_options={}, inpaint_options={}):
            self.sampler_function, self.extra_options, self.inpaint_options = (sampler_function, extra_options,
                                                                               inpaint_options)

        def sample(self, model_wrap, sigmas, extra_args, callback, noise, *args, **kwargs):
            """ComfyUI's own entry point (for its KSampler node); the pack calls sampler_function."""
            return self.sampler_function(model_wrap, noise, sigmas, extra_args=extra_args, callback=callback)

    mods["comfy.samplers"].KSAMPLER = KSAMPLER

    class disable_weight_init:  # noqa: N801 - ComfyUI's name; cast-capable twins of the torch layers
        pass

    for kind in bridge.CAST_LAYERS:
        base = getattr(torch.nn, kind)
        setattr(disable_weight_init, kind, type(kind, (base,), {"comfy_cast_weights": False}))
    mods["comfy.ops"].disable_weight_init = disable_weight_init
    for name in ("model_management", "utils", "model_patcher", "model_sampling", "latent_formats", "samplers", "ops"):
        setattr(mods["comfy"], name, mods[f"comfy.{name}"])
    return mods


def remove(monkeypatch, name: str, resolve) -> None:
    """Delete ComfyUI's ``name`` (an INTERNALS entry) where the pack would look for it; ``resolve(module)``
    gives the module object the bridge sees. A KSAMPLER's attributes are removed from each new instance."""
    if name.startswith("comfy.samplers.KSAMPLER."):
        return
    module = next(m for m in bridge._MODULES if name.startswith(m + "."))
    *path, last = name[len(module) + 1:].split(".")
    owner = resolve(module)
    for part in path:
        owner = getattr(owner, part)
    monkeypatch.delattr(owner, last)


def ksampler_factory(ksampler_cls, function, removed: str | None):
    def make():
        sampler = ksampler_cls(function)
        if removed and removed.startswith("comfy.samplers.KSAMPLER."):
            delattr(sampler, removed.rsplit(".", 1)[1])
        return sampler
    return make


def euler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """A k-diffusion style sampler function (ComfyUI's sample_euler without churn)."""
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **(extra_args or {}))
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


euler.__name__ = "sample_euler"


# ---------------------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def comfy_base(tmp_path_factory):
    from nodes_env import make_models_dir

    base = tmp_path_factory.mktemp("comfy_base")
    make_models_dir(base / "models" / "hunyuan_portrait")
    (base / "models" / "vae").mkdir(parents=True)
    (base / "models" / "vae" / "other_vae.safetensors").write_bytes(b"\0" * 8)
    return base


@pytest.fixture(scope="module")
def node_inputs(comfy_base):
    """The appearance and performance, made once outside ComfyUI (they are inputs here, not under test)."""
    import nodes
    from nodes_env import driving_video, load_tiny_models, source_image

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HP_MODELS_DIR", str(comfy_base / "models" / "hunyuan_portrait"))
        m = nodes.NODE_CLASS_MAPPINGS
        models = load_tiny_models()
        feats = m["HunyuanPortraitFaceCropMotionEncoder"]().encode(driving_video(3), "yolo", -1, 0, 0, "auto")[0]
        return {"performance": m["HunyuanPortraitMotionExtractor"]().extract(models, feats, -1, -1)[0],
                "appearance": m["HunyuanPortraitAppearanceExtractor"]().extract(models, source_image(), False, 64,
                                                                               "yolo")[0]}


def _install(monkeypatch, base: Path) -> dict:
    mods = fake_comfyui(base)
    for name, module in mods.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_mm", mods["comfy.model_management"])
    monkeypatch.setattr(bridge, "_cu", mods["comfy.utils"])
    monkeypatch.setattr(bridge, "_fp", mods["folder_paths"])
    monkeypatch.setattr(bridge, "_WARNED", set())
    monkeypatch.setattr(bridge, "_BROKEN", set())
    return mods


BY_HAND = ("comfy.model_management.free_memory", "comfy.model_management.module_size")
PROMPT_INTERNALS = ("server.", "nodes.")  # tested on their own below: "nodes" is this pack's package in tests


@pytest.mark.slow
@pytest.mark.parametrize("removed", [None] + [i.name for i in bridge.INTERNALS if not i.name.startswith(PROMPT_INTERNALS)])
def test_each_internal_can_go_missing(removed, comfy_base, node_inputs, monkeypatch, caplog):
    mods = _install(monkeypatch, comfy_base)
    if removed in BY_HAND:  # used only where the pack moves networks itself: run as under --novram
        mm = mods["comfy.model_management"]
        monkeypatch.setattr(mm, "vram_state", mm.VRAMState.NO_VRAM)
    if removed:
        remove(monkeypatch, removed, mods.__getitem__)
    make = ksampler_factory(mods["comfy.samplers"].KSAMPLER, euler, removed)
    with caplog.at_level(logging.WARNING):
        result = exercise(node_inputs, make, torch.device("cuda"))  # parameter-free moves: no GPU needed
        exercise(node_inputs, make, torch.device("cuda"))  # a second run: no second warning
    warnings = fallback_warnings(caplog.records)
    if removed is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f"ComfyUI's {removed} is not available" in warnings[0], warnings
        assert bridge._INTERNAL[removed].fallback in warnings[0]
    assert result["difference"] < 1e-4  # the SAMPLER's euler (or its fallback) equals the built-in euler


def test_every_internal_missing_at_once_still_loads_samples_and_warns_once_each(comfy_base, node_inputs,
                                                                                 monkeypatch, caplog):
    """The default suite's quick version of the test above: a ComfyUI with none of the internals."""
    mods = _install(monkeypatch, comfy_base)
    for entry in bridge.INTERNALS:
        if not entry.name.startswith(PROMPT_INTERNALS):
            try:
                remove(monkeypatch, entry.name, mods.__getitem__)
            except AttributeError:  # inside something already removed
                pass
    make = ksampler_factory(mods["comfy.samplers"].KSAMPLER, euler, None)
    with caplog.at_level(logging.WARNING):
        result = exercise(node_inputs, make, torch.device("cuda"))
        exercise(node_inputs, make, torch.device("cuda"))
    warnings = fallback_warnings(caplog.records)
    named = [next(e.name for e in bridge.INTERNALS if f"ComfyUI's {e.name} is not available" in w) for w in warnings]
    assert len(named) == len(set(named)) >= 10  # one warning per internal, however often it is reached
    assert result["difference"] < 1e-4


def test_the_prompt_handler_and_output_nodes_fall_back(monkeypatch, caplog):
    handlers = []
    fake_server = types.ModuleType("server")
    fake_server.PromptServer = type("PromptServer", (), {})
    fake_server.PromptServer.instance = type("Instance", (), {"add_on_prompt_handler":
                                                              staticmethod(handlers.append)})()
    monkeypatch.setitem(sys.modules, "server", fake_server)
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_WARNED", set())
    monkeypatch.setattr(bridge, "_BROKEN", set())
    assert bridge.on_prompt(lambda data: data) and len(handlers) == 1
    prompt = {"1": {"class_type": "HunyuanPortraitSampler", "inputs": {}},
              "2": {"class_type": "HunyuanPortraitSaveVideoX", "inputs": {"x": ["1", 0]}}}
    assert bridge.is_output_node(prompt, "2") is False  # this pack's table: no such output node class
    monkeypatch.delattr(fake_server.PromptServer.instance.__class__, "add_on_prompt_handler")
    monkeypatch.setitem(sys.modules, "nodes", types.ModuleType("nodes"))  # ComfyUI's nodes.py without its table
    with caplog.at_level(logging.WARNING):
        assert bridge.on_prompt(lambda data: data) is False
        assert bridge.is_output_node(prompt, "2") is True and bridge.is_output_node(prompt, "1") is False
    warnings = fallback_warnings(caplog.records)
    assert len(warnings) == 2 and "add_on_prompt_handler" in warnings[0] and "NODE_CLASS_MAPPINGS" in warnings[1]


if __name__ == "__main__" and sys.argv[1:] == ["--write-doc"]:
    sys.path.insert(0, str(ROOT))
    DOC.write_text(render_doc(), encoding="utf-8")
