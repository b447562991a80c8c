"""The bridge to ComfyUI's services, with stand-ins for ComfyUI's modules where its behaviour matters:
model folder registration next to extra_model_paths.yaml entries, model placement through model
management (what stays loaded, what goes back), --lowvram/--novram, and error translation."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from hp_core.errors import HPError
from hp_core.sampling import Cancelled
from nodes import bridge, comfy_sampler


# --------------------------------------------------------------------------------- model folders

def _fake_folder_paths(existing: dict) -> types.SimpleNamespace:
    """folder_paths' registration rules as ComfyUI implements them (add_model_folder_path appends)."""
    fp = types.SimpleNamespace(models_dir="/comfy/models", folder_names_and_paths=existing)

    def add_model_folder_path(name, path, is_default=False):
        if name in fp.folder_names_and_paths:
            paths = fp.folder_names_and_paths[name][0]
            if path not in paths:
                paths.insert(0, path) if is_default else paths.append(path)
        else:
            fp.folder_names_and_paths[name] = ([path], set())

    fp.add_model_folder_path = add_model_folder_path
    return fp


def test_registration_keeps_extra_model_paths_entries_first(monkeypatch):
    # extra_model_paths.yaml is read before custom nodes load: its entry exists, without extensions.
    fp = _fake_folder_paths({"hunyuan_portrait": (["/nas/hp"], set())})
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_fp", fp)
    bridge.register_model_folder()
    paths, exts = fp.folder_names_and_paths["hunyuan_portrait"]
    assert paths == ["/nas/hp", "/comfy/models/hunyuan_portrait"]
    assert {".pth", ".safetensors", ".onnx", ".pt"} <= exts
    bridge.register_model_folder()  # loading twice adds nothing
    assert fp.folder_names_and_paths["hunyuan_portrait"][0] == ["/nas/hp", "/comfy/models/hunyuan_portrait"]


def test_registration_without_yaml_creates_the_folder(monkeypatch):
    fp = _fake_folder_paths({})
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_fp", fp)
    bridge.register_model_folder()
    assert fp.folder_names_and_paths["hunyuan_portrait"][0] == ["/comfy/models/hunyuan_portrait"]


def test_model_files_outside_comfyui(tmp_path, monkeypatch):
    (tmp_path / "hyportrait").mkdir()
    (tmp_path / "hyportrait" / "unet.pth").write_bytes(b"x")
    (tmp_path / ".hp_cache").mkdir()
    (tmp_path / ".hp_cache" / "hyportrait__unet.pth.0123.safetensors").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a model")
    monkeypatch.setenv("HP_MODELS_DIR", str(tmp_path))
    assert bridge.search_dirs() == [tmp_path]
    assert bridge.model_files() == ["hyportrait/unet.pth"]
    assert bridge.model_file_path("hyportrait/unet.pth") == tmp_path / "hyportrait" / "unet.pth"
    assert bridge.model_file_path("hyportrait/dino.pth") is None


# ------------------------------------------------------------------------------ model management

class _Loaded:
    def __init__(self, patcher):
        self.model = patcher

    def model_unload(self, memory_to_free=None, unpatch_weights=True):
        self.model.unloaded += 1
        return True


class _FakeManagement:
    """The parts of comfy.model_management the placer uses, recording what it is asked to do."""

    class VRAMState:
        NORMAL_VRAM, LOW_VRAM, NO_VRAM = "normal", "low", "none"

    def __init__(self, state="normal"):
        self.vram_state = state
        self.current_loaded_models = []
        self.loads, self.freed = [], []

    def load_models_gpu(self, patchers, force_full_load=False):
        self.loads.append(([p.model.inner for p in patchers], force_full_load))
        for p in patchers:
            if not any(lm.model is p for lm in self.current_loaded_models):
                self.current_loaded_models.insert(0, _Loaded(p))

    def free_memory(self, amount, device):
        self.freed.append(amount)

    def module_size(self, module):
        return 1000

    def soft_empty_cache(self):
        pass

    def unet_offload_device(self):
        return torch.device("cpu")


class _FakePatcher:
    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device
        self.unloaded = 0


@pytest.fixture
def management(monkeypatch):
    mm = _FakeManagement()
    comfy = types.ModuleType("comfy")
    patcher_module = types.ModuleType("comfy.model_patcher")
    patcher_module.ModelPatcher = _FakePatcher
    comfy.model_patcher = patcher_module
    monkeypatch.setitem(sys.modules, "comfy", comfy)
    monkeypatch.setitem(sys.modules, "comfy.model_patcher", patcher_module)
    monkeypatch.setattr(bridge, "COMFY", True)
    monkeypatch.setattr(bridge, "_mm", mm)
    return mm


def test_placer_loads_through_comfyui_and_offloads_what_may_not_stay(management):
    unet, vae = torch.nn.ReLU(), torch.nn.Tanh()  # parameter-free: nothing really moves to a GPU here
    placer = bridge.Placer(torch.device("cuda"), keep=lambda m: m is unet)
    with placer([unet, vae]):
        assert management.loads == [([unet, vae], True)]  # full loads: plain torch layers cannot stream
    loaded = [lm.model.model.inner for lm in management.current_loaded_models]
    assert loaded == [unet]  # the VAE was unloaded after its block, the UNet stays for the next run
    with placer([unet]):
        pass
    assert len(placer._patchers) == 2  # one patcher per network, reused
    assert next(lm.model for lm in management.current_loaded_models).unloaded == 0


def test_lowvram_sends_everything_back(management):
    management.vram_state = management.VRAMState.LOW_VRAM
    unet = torch.nn.ReLU()
    placer = bridge.Placer(torch.device("cuda"), keep=lambda m: True)
    with placer([unet]):
        pass
    assert management.current_loaded_models == []


def test_novram_moves_modules_itself_after_freeing_room(management):
    management.vram_state = management.VRAMState.NO_VRAM
    placer = bridge.Placer(torch.device("cuda"), keep=lambda m: True)
    with placer([torch.nn.ReLU(), torch.nn.Tanh()]):
        pass
    assert management.loads == [] and management.freed == [pytest.approx(2400)]


def test_cpu_placement_touches_nothing(management):
    placer = bridge.Placer(torch.device("cpu"), keep=lambda m: False)
    with placer([torch.nn.ReLU()]):
        pass
    assert management.loads == [] and management.freed == []


# --------------------------------------------------------------------------------------- errors

def test_readable_errors_translate_only_out_of_memory():
    with pytest.raises(ValueError, match="unrelated"):
        with bridge.readable_errors("decoding", "decode_chunk"):
            raise ValueError("unrelated")
    with pytest.raises(HPError, match="Lower decode_chunk"):
        with bridge.readable_errors("decoding", "decode_chunk"):
            raise RuntimeError("MPS backend out of memory (MPS allocated: 8 GB)")
    with pytest.raises(Cancelled):  # outside ComfyUI a cancel stays our own exception
        with bridge.readable_errors("sampling", "context_window"):
            raise Cancelled(1, 5)
    with bridge.readable_errors("sampling", "context_window"):
        pass


def test_cancel_inside_comfyui_becomes_its_interrupt(management):
    class Interrupted(Exception):
        pass

    def throw():
        raise Interrupted()

    management.throw_exception_if_processing_interrupted = throw
    with pytest.raises(Interrupted):
        with bridge.readable_errors("sampling", "context_window"):
            raise Cancelled(1, 5)


def test_edm_stand_in_matches_the_svd_range():
    sampling = comfy_sampler._PlainEDMSampling()
    assert sampling.percent_to_sigma(0.0) > 1e8 and sampling.percent_to_sigma(1.0) == 0.0
    assert sampling.percent_to_sigma(0.5) == pytest.approx((700.0 * 0.002) ** 0.5)  # log-midpoint
    x, n = torch.ones(2), torch.full((2,), 2.0)
    torch.testing.assert_close(sampling.noise_scaling(3.0, n, x), torch.full((2,), 7.0))


def test_startup_names_an_onnxruntime_problem(monkeypatch, caplog):
    import hp_core.preprocess as pre
    import nodes

    monkeypatch.setattr(pre, "onnx_providers", lambda: (["CPUExecutionProvider"], "onnxruntime runs on the CPU"))
    with caplog.at_level("WARNING", logger="HunyuanPortrait"):
        nodes._check_onnxruntime()
    assert "onnxruntime runs on the CPU" in caplog.text

    def missing():
        raise HPError("onnxruntime is not installed.")

    monkeypatch.setattr(pre, "onnx_providers", missing)
    caplog.clear()
    with caplog.at_level("WARNING", logger="HunyuanPortrait"):
        nodes._check_onnxruntime()  # never raises: the pack still loads
    assert "not installed" in caplog.text and "YOLO" in caplog.text
