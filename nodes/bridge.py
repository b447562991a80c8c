"""The one place that talks to ComfyUI's services: model folders, devices, model management, progress,
interrupts and out-of-memory handling. Without ComfyUI (tests, scripts) every function falls back to
plain PyTorch behaviour, so the node classes run anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from hp_core.errors import HPError
from hp_core.performance import SUFFIX as PERFORMANCE_SUFFIX
from hp_core.weights import CACHE_SUBDIR, FOLDER_NAME, default_search_dirs

PERFORMANCE_SUBDIR = "performances"

try:  # ComfyUI puts these top-level modules on sys.path; anywhere else they are absent.
    import comfy.model_management as _mm
    import comfy.utils as _cu
    import folder_paths as _fp
    COMFY = True
except ImportError:
    _mm = _cu = _fp = None
    COMFY = False

# What the pack's model folder lists: checkpoints, the VAE, detector and recogniser files.
MODEL_EXTENSIONS = {".pth", ".pt", ".safetensors", ".bin", ".ckpt", ".onnx", ".json"}
WEIGHT_EXTENSIONS = (".pth", ".pt", ".safetensors", ".bin", ".ckpt")
COMFY_VAE_PREFIX = "[models/vae] "
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ folders

def register_model_folder() -> None:
    """Make models/hunyuan_portrait a ComfyUI model folder, keeping paths extra_model_paths.yaml added."""
    if not COMFY:
        return
    default = os.path.join(_fp.models_dir, FOLDER_NAME)
    # add_model_folder_path appends to an entry the yaml already created (yaml paths stay first).
    _fp.add_model_folder_path(FOLDER_NAME, default)
    paths, exts = _fp.folder_names_and_paths[FOLDER_NAME]
    if isinstance(exts, set):
        exts.update(MODEL_EXTENSIONS)
    else:
        _fp.folder_names_and_paths[FOLDER_NAME] = (paths, set(exts) | MODEL_EXTENSIONS)


PERFORMANCE_FOLDER = "hunyuan_portrait_performances"


def performance_dirs() -> list[Path]:
    """Where saved performances live: ComfyUI's folder ``hunyuan_portrait_performances`` (models/
    hunyuan_portrait/performances, registered here, so extra_model_paths.yaml can add more), else
    ``performances`` in the first models folder."""
    if not COMFY:
        return [search_dirs()[0] / PERFORMANCE_SUBDIR]
    if PERFORMANCE_FOLDER not in _fp.folder_names_and_paths:
        _fp.add_model_folder_path(PERFORMANCE_FOLDER, os.path.join(_fp.models_dir, FOLDER_NAME, PERFORMANCE_SUBDIR))
    paths, exts = _fp.folder_names_and_paths[PERFORMANCE_FOLDER]
    if PERFORMANCE_SUFFIX not in exts:
        _fp.folder_names_and_paths[PERFORMANCE_FOLDER] = (paths, set(exts) | {PERFORMANCE_SUFFIX})
    return [Path(p) for p in _fp.get_folder_paths(PERFORMANCE_FOLDER)]


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
    if INSIGHTFACE_FOLDER not in _fp.folder_names_and_paths:
        _fp.add_model_folder_path(INSIGHTFACE_FOLDER, os.path.join(_fp.models_dir, INSIGHTFACE_FOLDER))
    return [Path(p) for p in _fp.get_folder_paths(INSIGHTFACE_FOLDER)]


def search_dirs() -> list[Path]:
    """The pack's model folders, in search order (ComfyUI's list, else $HP_MODELS_DIR / ./models/...)."""
    if COMFY:
        try:
            return [Path(p) for p in _fp.get_folder_paths(FOLDER_NAME)]
        except KeyError:
            register_model_folder()
            return [Path(p) for p in _fp.get_folder_paths(FOLDER_NAME)]
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
            names = _fp.get_filename_list(FOLDER_NAME)
        except KeyError:
            register_model_folder()
            names = _fp.get_filename_list(FOLDER_NAME)
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


# Top-level key groups a component's state dict has (read from a safetensors header: cheap, no tensors).
HEADER_SIGNATURES = {
    "unet": {"down_blocks", "mid_block", "up_blocks"},
    "dino": {"patch_embed", "blocks"},
    "motion_proj": {"connector"},
    "expression": {"resnet50"},
    "headpose": {"head_pose_net"},
    "pose_guider": {"conv_in", "blocks", "conv_out"},
    "vae": {"encoder", "decoder"},
}
EXACT_SIGNATURES = {"image_proj": {"weight", "bias"}}  # a single projection layer
_NAME_HINTS = {"pose_guider": ("pose_guider", "poseguider"), "image_proj": ("image_proj",),
               "motion_proj": ("motion_proj",), "headpose": ("headpose", "head_pose"),
               "expression": ("expression",), "dino": ("dino",), "unet": ("unet",), "vae": ("vae",),
               "face_detector": ("yoloface", "yolov5", "scrfd", "det_10g")}
_HEADER_CACHE: dict[tuple, frozenset] = {}  # (path, size, mtime) -> top-level key groups (bounded below)


def safetensors_top_keys(path: Path) -> frozenset:
    """The first dotted part of every tensor name in a .safetensors file, read from its header only."""
    import json
    import struct

    try:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in _HEADER_CACHE:
            with open(path, "rb") as f:
                (size,) = struct.unpack("<Q", f.read(8))
                names = json.loads(f.read(size)) if 0 < size < 64 * 2**20 else {}
            if len(_HEADER_CACHE) > 256:
                _HEADER_CACHE.clear()
            _HEADER_CACHE[key] = frozenset(n.split(".")[0] for n in names if n != "__metadata__")
        return _HEADER_CACHE[key]
    except (OSError, ValueError, struct.error):
        return frozenset()


def component_of(name: str) -> str | None:
    """Which network a listed model file looks like: by its name, else by its safetensors header."""
    lowered = name.lower().replace("\\", "/")
    base = lowered.rsplit("/", 1)[-1]
    for component, hints in _NAME_HINTS.items():
        if any(h in base for h in hints):
            return component
    by_folder = next((c for c, hints in _NAME_HINTS.items() if any(f"{h}/" in lowered for h in hints)), None)
    if by_folder:
        return by_folder
    if not lowered.endswith(".safetensors"):
        return None
    path = model_file_path(name)
    tops = safetensors_top_keys(path) if path is not None else frozenset()
    for component, exact in EXACT_SIGNATURES.items():
        if tops == exact:
            return component
    for component, needed in HEADER_SIGNATURES.items():
        if needed <= tops:
            return component
    return None


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
        return [COMFY_VAE_PREFIX + n for n in _fp.get_filename_list("vae")]
    except KeyError:
        return []


def comfy_vae_path(choice: str) -> Path | None:
    """The file behind a choice from comfy_vae_files()."""
    if not COMFY or not choice.startswith(COMFY_VAE_PREFIX):
        return None
    found = _fp.get_full_path("vae", choice[len(COMFY_VAE_PREFIX):])
    return Path(found) if found else None


# ------------------------------------------------------------------------------------------ devices

def torch_device() -> torch.device:
    """Where the networks run: ComfyUI's device (honours --cpu), else CUDA when present, else the CPU."""
    if COMFY:
        return _mm.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where idle networks wait: ComfyUI's UNet offload device (the GPU itself with --highvram), else the CPU."""
    if COMFY:
        return _mm.unet_offload_device()
    return torch.device("cpu")


def low_vram() -> bool:
    """True when ComfyUI was started with --lowvram or --novram: nothing may stay on the GPU after use."""
    if not COMFY:
        return False
    return _mm.vram_state in (_mm.VRAMState.LOW_VRAM, _mm.VRAMState.NO_VRAM)


def half_precision_ok(device: torch.device) -> torch.dtype:
    """The reduced precision this device runs well: fp16, else bf16, else fp32."""
    if device.type == "cpu":
        return torch.float32
    if COMFY:
        if _mm.should_use_fp16(device):
            return torch.float16
        if _mm.should_use_bf16(device):
            return torch.bfloat16
        return torch.float32
    return torch.float16


def empty_cache() -> None:
    """Give cached, unused GPU memory back."""
    if COMFY:
        _mm.soft_empty_cache()
    elif torch.cuda.is_available():
        torch.cuda.empty_cache()


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
        import comfy.model_patcher
        key = id(module)
        if key not in self._patchers:
            self._patchers[key] = comfy.model_patcher.ModelPatcher(_Holder(module), load_device=self.device,
                                                                   offload_device=offload_device())
        return self._patchers[key]

    def _unload(self, module: torch.nn.Module) -> None:
        patcher = self._patchers.get(id(module))
        if COMFY and patcher is not None:
            ComfyInternals.unload(patcher)
        module.to(offload_device())

    @contextlib.contextmanager
    def __call__(self, modules: Sequence[torch.nn.Module]) -> Iterator[None]:
        comfy_managed = COMFY and self.device.type != "cpu" and _mm.vram_state != _mm.VRAMState.NO_VRAM
        if comfy_managed:
            # force_full_load: our layers are plain torch layers, which ComfyUI cannot stream partially.
            _mm.load_models_gpu([self._patcher(m) for m in modules], force_full_load=True)
        else:
            if COMFY and self.device.type != "cpu":
                _mm.free_memory(sum(_mm.module_size(m) for m in modules) * 1.2, self.device)
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
        loaded_models = getattr(_mm, "current_loaded_models", None)
        if isinstance(loaded_models, list):
            for i, loaded in enumerate(list(loaded_models)):
                if getattr(loaded, "model", None) is patcher:
                    if loaded.model_unload():
                        loaded_models.pop(i)
                    return True
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
        try:
            import comfy.model_sampling as ms
            base = (ms.ModelSamplingContinuousEDM, ms.V_PREDICTION)
        except (ImportError, AttributeError):
            return None
        from types import SimpleNamespace

        sampling = type("PortraitSampling", base, {})
        return sampling(SimpleNamespace(sampling_settings={"sigma_min": sigma_min, "sigma_max": sigma_max,
                                                           "sigma_data": 1.0}))


# ----------------------------------------------------------------------------- progress / interrupts

class Progress:
    """A progress bar on the running node (ComfyUI's), or nothing outside ComfyUI. ``preview`` adds the
    step's image through ComfyUI's latent previews."""

    def __init__(self, total: int):
        self.total = max(int(total), 1)
        self._bar = _cu.ProgressBar(self.total) if COMFY else None
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
    try:
        import latent_preview
        from comfy import latent_formats
    except ImportError:
        return None
    return latent_preview.get_previewer(torch_device(), latent_formats.SD15())


def interrupted() -> bool:
    """True once the user pressed Cancel in ComfyUI (checked between sampling steps and frames)."""
    return bool(COMFY and _mm.processing_interrupted())


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception when Cancel was pressed (clears the flag for the next run)."""
    if COMFY:
        _mm.throw_exception_if_processing_interrupted()


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
        from hp_core.sampling.samplers import Cancelled

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
        if COMFY:
            _mm.unload_all_models()
        for free in ON_OOM:
            free()
        empty_cache()
        raise HPError(f"Out of memory during {self.stage} ({text}).",
                      hint=f"Lower {self.lower}; or set keep_on_gpu to 'none' in the loader, or start ComfyUI "
                           f"with --lowvram.") from None


__all__ = ["COMFY", "COMFY_VAE_PREFIX", "ComfyInternals", "WEIGHT_EXTENSIONS", "Placer", "Progress", "check_interrupt",
           "comfy_vae_files", "comfy_vae_path", "component_of", "empty_cache", "half_precision_ok", "insightface_dirs", "interrupted", "is_oom", "latent_previewer",
           "low_vram", "model_file_path", "model_files", "offload_device", "readable_errors",
           "register_model_folder", "safetensors_top_keys", "search_dirs", "torch_device",
           "weight_choices"]
