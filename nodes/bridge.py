"""The one place that talks to ComfyUI's services: model folders, devices, model management, progress,
interrupts and out-of-memory handling. Without ComfyUI (tests, scripts) every function falls back to
plain PyTorch behaviour, so the node classes run anywhere.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator, Sequence

import torch
from torch.nn.utils import parametrize

from hp_core.errors import HPError
from hp_core.identify import network_of_file, network_of_name
from hp_core.performance import SUFFIX as PERFORMANCE_SUFFIX
from hp_core.sampling.samplers import Cancelled
from hp_core.weights import CACHE_SUBDIR, FOLDER_NAME, default_search_dirs

PERFORMANCE_SUBDIR = "performances"


def _import(name: str):
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


# ComfyUI puts these top-level modules on sys.path; anywhere else they are absent. Each is imported on its
# own, so a newer ComfyUI that renamed one still runs the pack (its uses fall back, see INTERNALS).
_mm = _import("comfy.model_management")
_cu = _import("comfy.utils")
_fp = _import("folder_paths")
COMFY = _mm is not None or _fp is not None

# What the pack's model folder lists: checkpoints, the VAE, detector and recogniser files.
MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors", ".bin", ".ckpt", ".onnx", ".json"}
WEIGHT_EXTENSIONS = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")
COMFY_VAE_PREFIX = "[models/vae] "
log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the ComfyUI internals used

@dataclass(frozen=True)
class Internal:
    """One ComfyUI attribute the pack uses, what for, and what the pack does instead where it is gone."""

    name: str       # dotted: module, then attributes (a class's attribute is used on its instances)
    used_for: str
    fallback: str   # reads after "falling back to"


_MM = "comfy.model_management."
# Every ComfyUI attribute this module and nodes/comfy_sampler.py use; docs/comfyui_internals.md lists the
# same (a test keeps the two equal). Tested with ComfyInternals.TESTED_WITH. Each use goes through
# comfy()/comfy_call() or names its entry in fall_back(): a missing attribute (or a function that no longer
# takes the pack's arguments) logs one warning per entry per process and runs the fallback.
INTERNALS: tuple[Internal, ...] = (
    Internal("folder_paths.models_dir", "the default place of the pack's folders: models/hunyuan_portrait "
             "(with performances/) and models/insightface", "models/ beside ComfyUI's folder_paths.py"),
    Internal("folder_paths.add_model_folder_path", "registering those folders after the extra_model_paths.yaml "
             "entries", "writing the entry into folder_paths.folder_names_and_paths directly"),
    Internal("folder_paths.folder_names_and_paths", "giving the folders the pack's file extensions; seeing "
             "whether another pack registered models/insightface", "the extensions ComfyUI registered"),
    Internal("folder_paths.get_folder_paths", "the pack's folders in ComfyUI's search order (yaml paths first)",
             "the default folder under the models folder"),
    Internal("folder_paths.get_filename_list", "the loader dropdowns: files of models/hunyuan_portrait and "
             "models/vae", "a walk of the same folders"),
    Internal("folder_paths.get_full_path", "the file behind a '[models/vae] ' dropdown choice",
             "the first vae folder that has the file"),
    Internal(_MM + "get_torch_device", "the device the networks run on (honours --cpu and the other device "
             "flags)", "CUDA when PyTorch sees one, else the CPU"),
    Internal(_MM + "unet_offload_device", "where idle networks wait (the GPU itself with --highvram)", "the CPU"),
    Internal(_MM + "vram_state", "--lowvram / --novram: nothing stays on the GPU after use; --novram: "
             "networks are placed by hand", "normal VRAM"),
    Internal(_MM + "VRAMState", "the LOW_VRAM / NO_VRAM values vram_state is compared with", "normal VRAM"),
    Internal(_MM + "should_use_fp16", "precision 'auto': fp16 where the device runs it well", "fp16 on every GPU"),
    Internal(_MM + "should_use_bf16", "precision 'auto': bf16 where fp16 is not advised",
             "fp32 where fp16 is not advised"),
    Internal(_MM + "soft_empty_cache", "giving cached GPU memory back after networks are unloaded",
             "torch.cuda.empty_cache() when CUDA is present"),
    Internal(_MM + "load_models_gpu", "loading a block's networks so ComfyUI makes room (and may evict them "
             "later)", "freeing room with free_memory and moving the networks with .to(device)"),
    Internal(_MM + "free_memory", "making room before networks are moved by hand (--novram, or without "
             "load_models_gpu)", "moving the networks without freeing other models first"),
    Internal(_MM + "module_size", "the room free_memory has to make", "the pack's own count of parameter "
             "and buffer bytes"),
    Internal(_MM + "current_loaded_models", "unloading one of the pack's networks and no other model",
             "the ModelPatcher's detach(), else .to(offload device)"),
    Internal(_MM + "LoadedModel.model_unload", "unloading one of the pack's networks and no other model",
             "the ModelPatcher's detach(), else .to(offload device)"),
    Internal(_MM + "processing_interrupted", "Cancel between sampling steps and frames",
             "no Cancel inside a node (ComfyUI still stops before the next node)"),
    Internal(_MM + "throw_exception_if_processing_interrupted", "Cancel: ComfyUI's interrupt, so the run shows "
             "as interrupted", "the pack's own Cancelled error when processing_interrupted() is set"),
    Internal(_MM + "unload_all_models", "freeing every model after an out-of-memory error",
             "emptying the cache only"),
    Internal("comfy.utils.ProgressBar", "the node's progress bar (and its preview images)",
             "no progress bar and no previews"),
    Internal("comfy.utils.ProgressBar.update_absolute", "moving the progress bar and showing a preview",
             "no progress bar and no previews"),
    Internal("comfy.model_patcher.ModelPatcher", "wrapping each network so load_models_gpu can load and evict "
             "it", "placing the networks by hand with .to(device)"),
    Internal("latent_preview.get_previewer", "live previews of the sampled video (per --preview-method)",
             "no previews"),
    Internal("latent_preview.LatentPreviewer.decode_latent_to_preview_image", "turning a step's latent into "
             "the preview image", "no previews"),
    Internal("comfy.latent_formats.SD15", "the latent space of the previews (SVD uses SD1.x latents)",
             "no previews"),
    Internal("comfy.model_sampling.ModelSamplingContinuousEDM", "SVD's noise parametrisation where ComfyUI "
             "samplers look it up (EDM sigmas)", "the pack's own EDM v-prediction stand-in (same sigmas)"),
    Internal("comfy.model_sampling.V_PREDICTION", "SVD's noise parametrisation where ComfyUI samplers look it "
             "up (v-prediction)", "the pack's own EDM v-prediction stand-in (same sigmas)"),
    Internal("comfy.samplers.KSAMPLER.sampler_function", "running a SAMPLER input (KSamplerSelect, ...) on the "
             "portrait denoiser", "the pack's built-in sampler of the same name (euler where it has none)"),
    Internal("comfy.samplers.KSAMPLER.extra_options", "the SAMPLER input's own options (eta, s_noise, ...)",
             "the sampler function's default options"),
    Internal("comfy.ops.disable_weight_init", "ComfyUI's cast-capable layer classes for the UNet, so its "
             "ModelPatcher can load the UNet partially when GPU memory is short (--lowvram, dynamic VRAM)",
             "plain torch layers, loaded whole"),
    Internal("server.PromptServer.instance.add_on_prompt_handler", "refusing a whole prompt whose sampler "
             "widgets are impossible (one error dialog) instead of running its other outputs",
             "ComfyUI's own handling: the sampler's error outline, the other outputs run"),
    Internal("nodes.NODE_CLASS_MAPPINGS", "telling output nodes apart when a prompt is narrowed to the outputs "
             "of a failing sampler", "taking the nodes nothing consumes as the outputs"),
)
_INTERNAL = {entry.name: entry for entry in INTERNALS}
_MODULES = ("comfy.model_management", "comfy.model_patcher", "comfy.model_sampling", "comfy.latent_formats",
            "comfy.samplers", "comfy.utils", "comfy.ops", "folder_paths", "latent_preview", "server", "nodes")
MISSING = object()        # what comfy() returns for an internal this ComfyUI does not have
_WARNED: set[str] = set()  # internals whose fallback was announced (once per process)
_BROKEN: set[str] = set()  # internals that failed when called: their fallback is used from then on


def fall_back(name: str, err: BaseException | None = None) -> None:
    """Say once per process that ComfyUI's ``name`` (an INTERNALS entry) is not usable, and what replaces it."""
    if name in _WARNED:
        return
    _WARNED.add(name)
    why = f" ({type(err).__name__}: {str(err)[:200]})" if err is not None else ""
    log.warning("HunyuanPortrait: ComfyUI's %s is not available (changed in a newer ComfyUI?); falling back to "
                "%s.%s", name, _INTERNAL[name].fallback, why)


def _resolve(name: str):
    module = next(m for m in _MODULES if name.startswith(m + "."))
    obj = {"comfy.model_management": _mm, "comfy.utils": _cu, "folder_paths": _fp}.get(module, MISSING)
    if obj is MISSING:
        obj = importlib.import_module(module)
    if obj is None:
        raise ImportError(f"No module named {module!r}")
    for part in name[len(module) + 1:].split("."):
        obj = getattr(obj, part)
    return obj


def comfy(name: str):
    """ComfyUI's object that INTERNALS lists as ``name``; MISSING (after one warning) where it is gone."""
    if name in _BROKEN:
        return MISSING
    try:
        return _resolve(name)
    except (ImportError, AttributeError) as err:
        fall_back(name, err)
        return MISSING


def _signature_error(fn, args, kwargs) -> TypeError | None:
    """The TypeError calling ``fn`` with these arguments would raise for its signature (not from inside it)."""
    if not callable(fn):
        return TypeError(f"{type(fn).__name__} is not callable")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        return err
    return None


def comfy_call(name: str, *args, fallback: Callable[[], Any] = lambda: None, **kwargs):
    """Call ComfyUI's function ``name`` (an INTERNALS entry); ``fallback()`` instead, after one warning, where
    it is gone or no longer takes these arguments (then for the rest of the process)."""
    fn = comfy(name)
    if fn is MISSING:
        return fallback()
    err = _signature_error(fn, args, kwargs)
    if err is not None:
        _BROKEN.add(name)
        fall_back(name, err)
        return fallback()
    return fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------ prompts

def on_prompt(handler: Callable[[dict], dict]) -> bool:
    """Have ComfyUI pass every posted prompt through ``handler`` (its on-prompt handlers); False where that
    is gone (one warning) or outside ComfyUI."""
    if not COMFY:
        return False
    done = comfy_call("server.PromptServer.instance.add_on_prompt_handler", handler, fallback=lambda: MISSING)
    return done is not MISSING


def is_output_node(prompt: dict, node_id: str) -> bool:
    """Whether ``prompt``'s node ``node_id`` is an output node (ComfyUI's OUTPUT_NODE); where ComfyUI's node
    table is gone, whether no other node of the prompt consumes it."""
    table = comfy("nodes.NODE_CLASS_MAPPINGS")
    if table is not MISSING:
        cls = table.get((prompt.get(node_id) or {}).get("class_type"))
        return getattr(cls, "OUTPUT_NODE", False) is True
    return not any(isinstance(v, list) and len(v) == 2 and str(v[0]) == str(node_id)
                   for node in prompt.values() if isinstance(node, dict)
                   for v in (node.get("inputs") or {}).values())


# ------------------------------------------------------------------------------------------ folders

def _models_dir() -> str:
    """ComfyUI's models folder (its --base-directory's), else models/ beside its folder_paths.py."""
    found = comfy("folder_paths.models_dir")
    if found is not MISSING:
        return found
    return os.path.join(os.path.dirname(os.path.abspath(getattr(_fp, "__file__", None) or "folder_paths.py")),
                        "models")


def _folder_table() -> dict | None:
    """ComfyUI's folder_names_and_paths (name -> (paths, extensions)), or None where it is gone."""
    table = comfy("folder_paths.folder_names_and_paths")
    return None if table is MISSING else table


def _add_folder(name: str, path: str) -> None:
    """Register a model folder; add_model_folder_path appends to an entry the yaml already created (yaml
    paths stay first)."""
    def direct() -> None:
        table = _folder_table()
        if table is None:
            return
        if name not in table:
            table[name] = ([path], set())
        elif path not in table[name][0]:
            table[name][0].append(path)

    comfy_call("folder_paths.add_model_folder_path", name, path, fallback=direct)


def _add_extensions(name: str, extensions: set[str]) -> None:
    table = _folder_table()
    if table is None or name not in table:
        return
    paths, exts = table[name]
    if isinstance(exts, set):
        exts.update(extensions)
    elif not extensions <= set(exts):
        table[name] = (paths, set(exts) | extensions)


def _folder_dirs(name: str, default: str) -> list[Path]:
    """ComfyUI's paths of a registered folder (KeyError when it is not registered); ``default`` alone where
    get_folder_paths is gone."""
    paths = comfy_call("folder_paths.get_folder_paths", name, fallback=lambda: MISSING)
    return [Path(default)] if paths is MISSING else [Path(p) for p in paths]


def _folder_files(name: str, dirs: Callable[[], list[Path]]) -> list[str]:
    """ComfyUI's file list of a folder (KeyError when it is not registered); a walk of ``dirs()`` where
    get_filename_list is gone."""
    return comfy_call("folder_paths.get_filename_list", name,
                      fallback=lambda: [n for d in dirs() for n in _walk(d)])


def register_model_folder() -> None:
    """Make models/hunyuan_portrait a ComfyUI model folder, keeping paths extra_model_paths.yaml added."""
    if not COMFY:
        return
    _add_folder(FOLDER_NAME, os.path.join(_models_dir(), FOLDER_NAME))
    _add_extensions(FOLDER_NAME, MODEL_EXTENSIONS)


PERFORMANCE_FOLDER = "hunyuan_portrait_performances"


def performance_dirs() -> list[Path]:
    """Where saved performances live: ComfyUI's folder ``hunyuan_portrait_performances`` (models/
    hunyuan_portrait/performances, registered here, so extra_model_paths.yaml can add more), else
    ``performances`` in the first models folder."""
    if not COMFY:
        return [search_dirs()[0] / PERFORMANCE_SUBDIR]
    default = os.path.join(_models_dir(), FOLDER_NAME, PERFORMANCE_SUBDIR)
    if PERFORMANCE_FOLDER not in (_folder_table() or {}):
        _add_folder(PERFORMANCE_FOLDER, default)
    _add_extensions(PERFORMANCE_FOLDER, {PERFORMANCE_SUFFIX})
    return _folder_dirs(PERFORMANCE_FOLDER, default)


def performance_files() -> list[str]:
    """The saved performances, as names relative to their folder (sorted, first folder first)."""
    names: dict[str, None] = {}
    for base in performance_dirs():
        if base.is_dir():
            for path in sorted(base.rglob("*" + PERFORMANCE_SUFFIX)):
                names.setdefault(path.relative_to(base).as_posix(), None)
    return list(names)


def performance_path(name: str) -> Path | None:
    """The file a Load Performance choice names, or None; names that leave their folder are refused."""
    for base in performance_dirs():
        path = (base / name).resolve()
        if path.is_file() and base.resolve() in path.parents:
            return path
    return None


INSIGHTFACE_FOLDER = "insightface"


def insightface_dirs() -> list[Path]:
    """ComfyUI's insightface model folders (models/insightface, registered if no other pack did), where
    artists keep buffalo_l / antelopev2 for other face packs; none outside ComfyUI."""
    if not COMFY:
        return []
    default = os.path.join(_models_dir(), INSIGHTFACE_FOLDER)
    if INSIGHTFACE_FOLDER not in (_folder_table() or {}):
        _add_folder(INSIGHTFACE_FOLDER, default)
    try:
        return _folder_dirs(INSIGHTFACE_FOLDER, default)
    except KeyError:  # not registered: folder_names_and_paths and add_model_folder_path are both gone
        return [Path(default)]


def search_dirs() -> list[Path]:
    """The pack's model folders, in search order (ComfyUI's list, else $HP_MODELS_DIR / ./models/...)."""
    if COMFY:
        default = os.path.join(_models_dir(), FOLDER_NAME)
        try:
            return _folder_dirs(FOLDER_NAME, default)
        except KeyError:
            register_model_folder()
            try:
                return _folder_dirs(FOLDER_NAME, default)
            except KeyError:  # still not registered: ComfyUI's registration is gone
                return [Path(default)]
    return default_search_dirs()


def _walk(base: Path) -> list[str]:
    out = []
    if not base.is_dir():
        return out
    for root, dirs, files in os.walk(base, followlinks=True):
        dirs[:] = [d for d in dirs if d not in (".git", CACHE_SUBDIR, ".cache")]
        for f in files:
            if os.path.splitext(f)[1].lower() in MODEL_EXTENSIONS:
                out.append(Path(root, f).relative_to(base).as_posix())
    return out


def model_files() -> list[str]:
    """Every file in the pack's model folders, as paths relative to the folder (the dropdown values)."""
    if COMFY:
        try:
            names = _folder_files(FOLDER_NAME, search_dirs)
        except KeyError:
            register_model_folder()
            try:
                names = _folder_files(FOLDER_NAME, search_dirs)
            except KeyError:  # still not registered: ComfyUI's registration is gone
                names = [n for d in search_dirs() for n in _walk(d)]
    else:
        names = [n for d in search_dirs() for n in _walk(d)]
    # The safetensors cache that hp_core.weights writes beside the models is not a choice.
    return sorted({n.replace("\\", "/") for n in names
                   if not n.replace("\\", "/").startswith((CACHE_SUBDIR + "/", ".cache/"))})


def model_file_path(name: str) -> Path | None:
    """Full path of a file listed by model_files(), or None when no folder has it."""
    for base in search_dirs():
        path = base / name
        if path.is_file():
            return path
    return None


_KIND_CACHE: dict[tuple, str | None] = {}  # (path, size, mtime) -> network read from its header (bounded below)


def component_of(name: str) -> str | None:
    """Which network a listed model file looks like: by its name, else by its safetensors header (read once
    per version of the file)."""
    by_name = network_of_name(name)
    if by_name or not name.lower().endswith(".safetensors"):
        return by_name
    path = model_file_path(name)
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    if st is None:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _KIND_CACHE:
        if len(_KIND_CACHE) > 256:
            _KIND_CACHE.clear()
        _KIND_CACHE[key] = network_of_file(path)
    return _KIND_CACHE[key]


def weight_choices(component: str, default: str, alternatives: Sequence[str] = ()) -> list[str]:
    """A loader dropdown: existing files that are this component first (official name, then by name or
    header), then files of unknown kind; files that are another component are left out. When no file is
    this component, the official name leads (the run then says how to download it)."""
    files = [f for f in model_files() if f.lower().endswith(WEIGHT_EXTENSIONS)]
    official = [f for f in (default, *alternatives) if f in files]
    kinds = {f: component_of(f) for f in files if f not in official}
    same = sorted(f for f, kind in kinds.items() if kind == component)
    unknown = sorted(f for f, kind in kinds.items() if kind is None)
    return (official + same or [default]) + unknown


def comfy_vae_files() -> list[str]:
    """ComfyUI's models/vae files, prefixed so they can share a dropdown with the pack's own files."""
    if not COMFY:
        return []
    try:
        return [COMFY_VAE_PREFIX + n for n in _folder_files("vae", _vae_dirs)]
    except KeyError:
        return []


def _vae_dirs() -> list[Path]:
    default = os.path.join(_models_dir(), "vae")
    try:
        return _folder_dirs("vae", default)
    except KeyError:
        return [Path(default)]


def comfy_vae_path(choice: str) -> Path | None:
    """The file behind a choice from comfy_vae_files()."""
    if not COMFY or not choice.startswith(COMFY_VAE_PREFIX):
        return None
    name = choice[len(COMFY_VAE_PREFIX):]
    found = comfy_call("folder_paths.get_full_path", "vae", name,
                       fallback=lambda: next((d / name for d in _vae_dirs() if (d / name).is_file()), None))
    return Path(found) if found else None


# ------------------------------------------------------------------------------------------ devices

def torch_device() -> torch.device:
    """Where the networks run: ComfyUI's device (honours --cpu), else CUDA when present, else the CPU."""
    if COMFY:
        return comfy_call(_MM + "get_torch_device", fallback=_plain_device)
    return _plain_device()


def _plain_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where idle networks wait: ComfyUI's UNet offload device (the GPU itself with --highvram), else the CPU."""
    if COMFY:
        return comfy_call(_MM + "unet_offload_device", fallback=lambda: torch.device("cpu"))
    return torch.device("cpu")


def _vram_state() -> str:
    """ComfyUI's --lowvram / --novram as "low" / "none"; "normal" otherwise (and outside ComfyUI)."""
    if not COMFY:
        return "normal"
    state = comfy(_MM + "vram_state")
    states = comfy(_MM + "VRAMState")
    if state is MISSING or states is MISSING:
        return "normal"
    try:
        low, none = states.LOW_VRAM, states.NO_VRAM
    except AttributeError as err:
        fall_back(_MM + "VRAMState", err)
        return "normal"
    return "low" if state == low else "none" if state == none else "normal"


def low_vram() -> bool:
    """True when ComfyUI was started with --lowvram or --novram: nothing may stay on the GPU after use."""
    return _vram_state() in ("low", "none")


def half_precision_ok(device: torch.device) -> torch.dtype:
    """The reduced precision this device runs well: fp16, else bf16, else fp32."""
    if device.type == "cpu":
        return torch.float32
    if COMFY:
        if comfy_call(_MM + "should_use_fp16", device, fallback=lambda: True):
            return torch.float16
        if comfy_call(_MM + "should_use_bf16", device, fallback=lambda: False):
            return torch.bfloat16
        return torch.float32
    return torch.float16


def _plain_empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def empty_cache() -> None:
    """Give cached, unused GPU memory back."""
    if COMFY:
        comfy_call(_MM + "soft_empty_cache", fallback=_plain_empty_cache)
    else:
        _plain_empty_cache()


def unload_all_models() -> None:
    """Unload every model ComfyUI holds (after an out-of-memory error), then give the cache back."""
    if COMFY:
        comfy_call(_MM + "unload_all_models")
    empty_cache()


def _module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


# torch layer classes that ComfyUI's comfy.ops.disable_weight_init has a cast-capable twin of (same
# parameters, same forward, plus weights cast to the input's device and dtype when ComfyUI asks).
CAST_LAYERS = ("Linear", "Conv1d", "Conv2d", "Conv3d", "GroupNorm", "LayerNorm")


def streamable(module: torch.nn.Module) -> bool:
    """Give ``module``'s plain torch layers ComfyUI's cast-capable classes, so ComfyUI's ModelPatcher can keep
    the layers that do not fit the GPU in system memory and bring their weights at call time, as it does for
    its own models. True when done; False outside ComfyUI or where those classes are gone (full loads).
    Layers with weights stored as fp8 (a parametrization) stay as they are."""
    if not COMFY:
        return False
    ops = comfy("comfy.ops.disable_weight_init")
    if ops is MISSING:
        return False

    for layer in module.modules():
        kind = next((k for k in CAST_LAYERS if type(layer) is getattr(torch.nn, k)), None)
        twin = getattr(ops, kind, None) if kind else None
        if twin is not None and not parametrize.is_parametrized(layer):
            layer.__class__ = twin
    module.hp_streamable = True
    return True


class _Holder(torch.nn.Module):
    """A plain container, because ComfyUI's ModelPatcher sets ``.device`` on what it wraps (diffusers
    models make that attribute read-only)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.inner = module


class Placer:
    """``PortraitModels.placer``: puts networks on the compute device for a block and decides what stays.

    Inside ComfyUI the networks are wrapped in ModelPatchers and loaded with load_models_gpu, so ComfyUI
    can free room for them (and evict them later when another model needs the memory). ``keep(module)``
    says whether a network may stay on the device after its block; with --lowvram/--novram nothing does.
    """

    def __init__(self, device: torch.device, keep: Callable[[torch.nn.Module], bool]):
        self.device = torch.device(device)
        self.keep = keep
        self._patchers: dict[int, object] = {}  # one per network of this model set (bounded)

    def _patcher(self, module: torch.nn.Module):
        """The network's ModelPatcher (made once); None where ComfyUI's ModelPatcher is gone."""
        key = id(module)
        if key not in self._patchers:
            patcher = comfy_call("comfy.model_patcher.ModelPatcher", _Holder(module), load_device=self.device,
                                 offload_device=offload_device())
            if patcher is None:
                return None
            self._patchers[key] = patcher
        return self._patchers[key]

    def _managed(self) -> bool:
        """Whether ComfyUI's model management loads the networks: in ComfyUI, on a GPU, without --novram."""
        return COMFY and self.device.type != "cpu" and _vram_state() != "none"

    def _load(self, modules: Sequence[torch.nn.Module]) -> bool:
        """load_models_gpu on the networks' patchers; False where that is not possible in this ComfyUI."""
        patchers = [self._patcher(m) for m in modules]
        if any(p is None for p in patchers):
            return False
        name = _MM + "load_models_gpu"
        # A network whose layers are ComfyUI's cast-capable ones (streamable) may be loaded partially;
        # plain torch layers cannot be, so those load whole.
        full = not all(getattr(m, "hp_streamable", False) for m in modules)
        try:
            return comfy_call(name, patchers, force_full_load=full, fallback=lambda: False) is not False
        except (AttributeError, TypeError) as err:  # raised inside: the patchers no longer suit this ComfyUI
            _BROKEN.add(name)
            fall_back(name, err)
            return False

    def _unload(self, module: torch.nn.Module) -> None:
        patcher = self._patchers.get(id(module))
        if COMFY and patcher is not None:
            ComfyInternals.unload(patcher)
        module.to(offload_device())

    @contextlib.contextmanager
    def __call__(self, modules: Sequence[torch.nn.Module]) -> Iterator[None]:
        if not (self._managed() and self._load(modules)):
            if COMFY and self.device.type != "cpu":
                size = sum(comfy_call(_MM + "module_size", m, fallback=lambda m=m: _module_bytes(m)) for m in modules)
                comfy_call(_MM + "free_memory", size * 1.2, self.device)
            for m in modules:
                m.to(self.device)
        try:
            yield
        finally:
            if self.device.type != "cpu":
                dropped = [m for m in modules if low_vram() or not self.keep(m)]
                for m in dropped:
                    self._unload(m)
                if dropped:
                    empty_cache()


# ------------------------------------------------------------------------------- ComfyUI internals

class ComfyInternals:
    """Everything that reaches past ComfyUI's public node API, in one place. Tested against ComfyUI
    ``TESTED_WITH``; each call falls back to public behaviour when the internal it uses is not there."""

    TESTED_WITH = "0.3.64"

    @staticmethod
    def unload(patcher) -> bool:
        """Unload one ModelPatcher that load_models_gpu loaded, leaving every other loaded model alone.

        Internal: ``model_management.current_loaded_models`` (a list of LoadedModel) is searched and the
        entry removed in place, as ComfyUI's own free_memory does. Fallback: the patcher's public
        ``detach()``, which moves the weights back to its offload device."""
        loaded_models = comfy(_MM + "current_loaded_models")
        if loaded_models is not MISSING and not isinstance(loaded_models, list):
            fall_back(_MM + "current_loaded_models", TypeError(f"a {type(loaded_models).__name__}, not a list"))
        elif isinstance(loaded_models, list):
            for i, loaded in enumerate(list(loaded_models)):
                if getattr(loaded, "model", None) is patcher:
                    model_unload = getattr(loaded, "model_unload", None)
                    if not callable(model_unload):
                        fall_back(_MM + "LoadedModel.model_unload")
                        break
                    if model_unload():
                        loaded_models.pop(i)
                    return True
            else:
                return False
        detach = getattr(patcher, "detach", None)
        if callable(detach):
            detach()
            return True
        return False

    @staticmethod
    def svd_model_sampling(sigma_min: float, sigma_max: float):
        """SVD's noise parametrisation (continuous EDM sigmas, v-prediction) as a ComfyUI model_sampling
        object, for ComfyUI samplers that look it up; None outside ComfyUI or when the classes are gone
        (the caller then uses its plain stand-in)."""

        def find(name: str):
            if COMFY:
                return comfy(name)
            try:  # outside ComfyUI (tests, scripts) a missing class is no news
                return _resolve(name)
            except (ImportError, AttributeError):
                return MISSING

        edm = "comfy.model_sampling.ModelSamplingContinuousEDM"
        base = (find(edm), find("comfy.model_sampling.V_PREDICTION"))
        if MISSING in base:
            return None
        try:
            sampling = type("PortraitSampling", base, {})
            return sampling(SimpleNamespace(sampling_settings={"sigma_min": sigma_min, "sigma_max": sigma_max,
                                                               "sigma_data": 1.0}))
        except (TypeError, AttributeError, KeyError) as err:  # the classes changed their interface
            if COMFY:
                _BROKEN.add(edm)
                fall_back(edm, err)
            return None


# ----------------------------------------------------------------------------- progress / interrupts

class Progress:
    """A progress bar on the running node (ComfyUI's), or nothing outside ComfyUI. ``preview`` adds the
    step's image through ComfyUI's latent previews."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self._bar = _progress_bar(self.total) if COMFY else None
        self._previewer = None  # made on the first preview: the user's method, None when previews are off

    def __call__(self, done: int, total: int | None = None) -> None:
        if total:
            self.total = int(total)
        if self._bar is not None:
            self._bar.update_absolute(min(int(done), self.total), self.total)

    def preview(self, done: int, total: int, denoised: torch.Tensor) -> None:
        """Send the middle frame of a denoised estimate (1, L, 4, h, w) or (L, 4, h, w), scaled SVD latents,
        as this step's preview image. Nothing happens outside ComfyUI or with previews turned off. The frame
        goes to the previewer's device (TAESD sits on ComfyUI's device; the estimate waits on the CPU), and a
        previewer that fails turns previews off for this run with a warning: a preview never stops sampling."""
        if self._bar is None:
            return
        if self._previewer is None:
            self._previewer = latent_previewer() or False
            if self._previewer and not callable(getattr(self._previewer, "decode_latent_to_preview_image", None)):
                fall_back("latent_preview.LatentPreviewer.decode_latent_to_preview_image")
                self._previewer = False
        if not self._previewer:
            return
        frames = denoised[0] if denoised.ndim == 5 else denoised
        middle = frames[frames.shape[0] // 2][None].detach().to(torch_device())
        try:
            image = self._previewer.decode_latent_to_preview_image("JPEG", middle)
        except Exception as err:  # noqa: BLE001 - any previewer failure only costs the previews
            self._previewer = False
            log.warning("HunyuanPortrait: live previews are off for this run, the previewer failed: %s: %s",
                        type(err).__name__, err)
            return
        self.total = int(total) or self.total
        self._bar.update_absolute(min(int(done), self.total), self.total, image)


def latent_previewer():
    """ComfyUI's previewer for SVD latents (SD1.x latent space: latent2rgb factors, or TAESD where the user
    has models/vae_approx/taesd_decoder) per the user's --preview-method; None when off or not in ComfyUI."""
    if not COMFY:
        return None
    sd15 = comfy("comfy.latent_formats.SD15")
    if sd15 is MISSING:
        return None
    try:
        latent_format = sd15()
    except TypeError as err:
        _BROKEN.add("comfy.latent_formats.SD15")
        fall_back("comfy.latent_formats.SD15", err)
        return None
    return comfy_call("latent_preview.get_previewer", torch_device(), latent_format)


def _progress_bar(total: int):
    """ComfyUI's progress bar for the running node; None (no bar, no previews) where it is gone."""
    bar = comfy_call("comfy.utils.ProgressBar", total)
    if bar is None:
        return None
    err = _signature_error(getattr(bar, "update_absolute", None), (total, total, None), {})
    if err is not None:
        fall_back("comfy.utils.ProgressBar.update_absolute", err)
        return None
    return bar


def interrupted() -> bool:
    """True once the user pressed Cancel in ComfyUI (checked between sampling steps and frames)."""
    return bool(COMFY and comfy_call(_MM + "processing_interrupted", fallback=lambda: False))


def _cancel_if_interrupted() -> None:
    if interrupted():
        raise Cancelled(0, 1)


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when Cancel was pressed (clears the flag for the next run)."""
    if COMFY:
        comfy_call(_MM + "throw_exception_if_processing_interrupted", fallback=_cancel_if_interrupted)


# ------------------------------------------------------------------------------------ out of memory

# Callbacks that free memory ComfyUI's model management cannot see (face detector, ONNX sessions);
# run after an out-of-memory error, before the user retries with lower settings.
ON_OOM: list[Callable[[], None]] = []

OOM_TYPES: tuple[type[BaseException], ...] = tuple(
    t for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None)) if t)


def is_oom(err: BaseException) -> bool:
    """A device allocation failure (CUDA OOM, or the RuntimeError other backends raise)."""
    if OOM_TYPES and isinstance(err, OOM_TYPES):
        return True
    return isinstance(err, RuntimeError) and "out of memory" in str(err).lower()


class readable_errors:
    """Context manager: out-of-memory becomes one HPError naming the settings to lower (``lower``), a
    Cancel becomes ComfyUI's interrupt; every other exception passes unchanged."""

    def __init__(self, stage: str, lower: str):
        self.stage, self.lower = stage, lower

    def __enter__(self) -> "readable_errors":
        return self

    def __exit__(self, kind, err, tb) -> bool:
        if err is None:
            return False
        if isinstance(err, Cancelled):
            check_interrupt()  # ComfyUI then reports "interrupted" rather than an error
            return False
        if not is_oom(err):
            return False
        text = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        # Drop the failed allocation's frames (and the tensors they hold) and free what can be freed,
        # as ComfyUI does for its own out-of-memory errors.
        err.__traceback__ = None
        del tb
        unload_all_models()
        for free in ON_OOM:
            free()
        empty_cache()
        raise HPError(f"Out of memory during {self.stage} ({text}).",
                      hint=f"Lower {self.lower}; or set keep_on_gpu to 'none' in the loader, or start ComfyUI "
                           f"with --lowvram.") from None


__all__ = ["COMFY", "COMFY_VAE_PREFIX", "INTERNALS", "ComfyInternals", "Internal", "MISSING", "WEIGHT_EXTENSIONS",
           "Placer", "Progress", "check_interrupt", "comfy", "comfy_call", "fall_back", "unload_all_models", "on_prompt", "is_output_node", "streamable",
           "comfy_vae_files", "comfy_vae_path", "component_of", "empty_cache", "half_precision_ok", "insightface_dirs", "interrupted", "is_oom", "latent_previewer",
           "low_vram", "model_file_path", "model_files", "offload_device", "readable_errors",
           "register_model_folder", "search_dirs", "torch_device",
           "weight_choices"]
