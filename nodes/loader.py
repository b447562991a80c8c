"""Load models: the seven HunyuanPortrait networks + the SVD VAE from the hunyuan_portrait model folder."""

from __future__ import annotations

from collections import OrderedDict

import torch

from hp_core.errors import HPError
from hp_core.weights import check_component, get_entry
from hp_core.weights.messages import LOADER_PRESET_ACTION, wrong_preset_message
from hp_core.models import COMPONENTS, PRECISIONS, PRESETS, fp8_networks
from hp_core.models.precision import precision_dtypes as _precision_table
from hp_core.pipeline import PortraitModels

from . import bridge, core
from .sockets import MODELS

KEEP_ON_GPU = ("all", "unet", "none")
CATEGORY = "HunyuanPortrait"

_WHAT = {
    "unet": "SVD UNet with the motion adapters (hyportrait/unet.pth)",
    "dino": "DINOv2 + IMAdapter appearance encoder (hyportrait/dino.pth)",
    "image_proj": "appearance token projector (hyportrait/image_proj.pth)",
    "motion_proj": "intensity-aware motion refiner (hyportrait/motion_proj.pth)",
    "expression": "expression encoder (hyportrait/expression.pth)",
    "headpose": "head-pose encoder (hyportrait/headpose.pth)",
    "pose_guider": "pose guider (hyportrait/pose_guider.pth)",
}
_LOADED: OrderedDict[tuple, PortraitModels] = OrderedDict()  # last loaded set only (bounded: 1)


def precision_dtypes(precision: str, device: torch.device) -> dict[str, torch.dtype]:
    """dtype of every network for a precision choice on a device, from hp_core's one precision table;
    'auto' takes the reduced precision ComfyUI says this device runs well (fp16, else bf16)."""
    auto_half = bridge.half_precision_ok(device) if precision == "auto" else torch.float16
    return _precision_table(precision, device, auto_half=auto_half)


def _vae_choices() -> list[str]:
    entry = get_entry("svd_vae")
    return bridge.weight_choices("vae", entry.local_path, entry.alt_local_paths) + bridge.comfy_vae_files()


class HunyuanPortraitModelLoader:
    """Node: every network of the method, loaded strictly from the official files."""

    @classmethod
    def INPUT_TYPES(cls):
        required = {}
        for name in COMPONENTS:
            choices = bridge.weight_choices(name, core.manifest_path(name))
            required[name] = (choices, {
                "default": choices[0],
                "tooltip": f"Weights of the {_WHAT[name]}, from models/hunyuan_portrait (or a folder set for "
                           f"hunyuan_portrait in extra_model_paths.yaml). Get the official files with "
                           f"`python -m hp_core weights download`."})
        vae_choices = _vae_choices()
        required["vae"] = (vae_choices, {
            "default": vae_choices[0],
            "tooltip": "The Stable Video Diffusion XT temporal VAE: the diffusers vae/ files in the pack's model "
                       "folder, or a file from ComfyUI's models/vae (SVD VAE or a single-file SVD checkpoint)."})
        required["preset"] = (list(PRESETS), {
            "default": "official",
            "tooltip": "Network sizes: 'official' for the released weights; 'tiny' only for small random test "
                       "weights (python -m hp_core make-random-weights)."})
        required["precision"] = (list(PRECISIONS), {
            "default": "auto",
            "tooltip": "auto: the release's precisions (fp16 UNet/DINO/pose guider, fp32 motion encoders and "
                       "VAE; bf16 where fp16 is not supported; fp32 on the CPU). fp16/bf16 also apply to the "
                       "VAE; fp32 needs about twice the memory. fp8: the UNet's and DINO's weights stored in "
                       "8 bits (about half of fp16), computed as auto: for GPUs with little memory."})
        required["keep_on_gpu"] = (list(KEEP_ON_GPU), {
            "default": "all",
            "tooltip": "What stays on the GPU after it ran. all: fastest re-runs (ComfyUI still frees it when "
                       "another model needs room). unet: only the UNet and pose guider stay; the encoders and "
                       "VAE go back to the CPU after use. none: everything goes back (least VRAM). "
                       "--lowvram/--novram behave like none."})
        return {"required": required}

    RETURN_TYPES = (MODELS,)
    RETURN_NAMES = ("models",)
    OUTPUT_TOOLTIPS = ("The loaded HunyuanPortrait networks with their device and precision settings.",)
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads the HunyuanPortrait networks (UNet with motion adapters, DINOv2 + IMAdapters, "
                   "projectors, motion encoders, pose guider) and the SVD VAE. Files are checked strictly: a "
                   "wrong or damaged file gives a message naming it. Loaded models are reused while the "
                   "settings and files stay the same.")

    def load(self, unet, dino, image_proj, motion_proj, expression, headpose, pose_guider, vae, preset,
             precision, keep_on_gpu):
        if keep_on_gpu not in KEEP_ON_GPU:
            raise HPError(f"Unknown keep_on_gpu value {keep_on_gpu!r}.",
                          hint=f"Choose one of {', '.join(KEEP_ON_GPU)}.")
        choices = dict(unet=unet, dino=dino, image_proj=image_proj, motion_proj=motion_proj, expression=expression,
                       headpose=headpose, pose_guider=pose_guider)
        comfy_vae = bridge.comfy_vae_path(vae)
        chosen = {**choices, **({} if comfy_vae else {"svd_vae": vae})}
        try:  # every missing or unusable file in one message, first
            paths = core.resolve_choices(chosen, preset=preset, vae=comfy_vae)
        except HPError as err:
            raise preset_error(chosen, preset, comfy_vae) or err from None
        vae_path = paths.pop("svd_vae")
        device = bridge.torch_device()
        dtypes = precision_dtypes(precision, device)
        key = (tuple(core.file_key(paths[n]) for n in COMPONENTS), core.file_key(vae_path), preset, precision,
               tuple(str(dtypes[n]) for n in sorted(dtypes)), str(device), keep_on_gpu)
        if key in _LOADED:
            return (_LOADED[key],)
        _LOADED.clear()  # drop the previous set before loading the next: never two full sets in memory
        bridge.empty_cache()

        progress = bridge.Progress(len(COMPONENTS) + 1)
        with bridge.readable_errors("model loading", "precision (fp16)"):
            mods = {}
            for i, name in enumerate(COMPONENTS):
                bridge.check_interrupt()
                mods[name] = core.load_network(name, paths[name], preset, dtypes[name],
                                               fp8=name in fp8_networks(precision))
                progress(i + 1)
            vae_module = core.load_vae(vae_path, dtypes["vae"])
            progress(len(COMPONENTS) + 1)
        bridge.streamable(mods["unet"])  # ComfyUI may then load the UNet partially when memory is short
        models = PortraitModels(vae=vae_module, preset=preset, device=device, offload=keep_on_gpu != "all",
                                placer=bridge.Placer(device, keep_rule(keep_on_gpu, mods)), **mods)
        _LOADED[key] = models
        return (models,)


def preset_error(chosen: dict[str, str], preset: str, comfy_vae) -> HPError | None:
    """When the chosen files are all usable with another preset (e.g. tiny random weights, preset official),
    a short HPError that leads with setting the preset; else None (the full message stands)."""
    for other in (p for p in PRESETS if p != preset):
        try:
            paths = core.resolve_choices(chosen, preset=other, vae=comfy_vae)
        except HPError:
            continue
        bad = []
        for name, path in paths.items():
            try:
                why = check_component(get_entry(name), path, preset) if name in COMPONENTS or name == "svd_vae" \
                    else None
            except Exception as err:  # noqa: BLE001 - the listing is a courtesy; the action is what matters
                why = str(err)
            if why:
                bad.append((get_entry(name), path, why))
        return HPError(wrong_preset_message(other, bad, LOADER_PRESET_ACTION))
    return None


def keep_rule(policy: str, mods: dict[str, torch.nn.Module]):
    """keep(module) -> may it stay on the GPU after its block, for a keep_on_gpu choice."""
    if policy == "all":
        return lambda module: True
    if policy == "unet":
        kept = {id(mods["unet"]), id(mods["pose_guider"])}
        return lambda module: id(module) in kept
    return lambda module: False


NODE_CLASS_MAPPINGS = {"HunyuanPortraitModelLoader": HunyuanPortraitModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"HunyuanPortraitModelLoader": "HunyuanPortrait Load Models"}
