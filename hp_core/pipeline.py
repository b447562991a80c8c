"""The headless pipeline: conditions from prepared inputs, windowed guided sampling, chunked decoding.

Used by the CLI and by the ComfyUI nodes (each node calls one stage). Official settings reproduce the
release (the README's "Settings that reproduce the release"); everything else is an artist's
control on top. Each stage is a public function, so a stage can be compared with another implementation.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from . import weights
from .errors import HPError
from .memory import check_decoding, plan_sampling
from .models import COMPONENTS, DTYPES, PRESET_DIMS, build_component, build_vae, cast, load_component
from .models.fp8 import compute_dtype
from .models.motion_refiner import CHUNK
from .models.sdpa import sdpa_backends
from .models.streaming import BlockStreamer, plan_stream
from .motion_edit import PortraitMotion
from .performance import Performance
from .performance import from_parts as performance_from_parts
from .preprocess import appearance_input, to_unit_tensor
from .sampling.denoiser import (BRANCH_MODES, Conditions, GuidanceSettings, PortraitDenoiser, guided,
                               planned_evaluations)
from .sampling.guidance import pad_frames, pad_motion, unpad
from .sampling.samplers import SAMPLERS, sample, step_reporter
from .sampling.schedules import SCHEDULES, SIGMA_MAX, SIGMA_MIN, custom_sigmas, get_sigmas
from .sampling.windows import validate_windows
from .weights.vae import load_vae

log = logging.getLogger(__name__)
VAE_SCALE = 0.18215
MOTION_NETWORKS = ("expression", "headpose", "motion_proj")  # what a performance is made with
SEED_MAX = 2**64 - 1  # torch generators take unsigned 64-bit seeds


@dataclass
class Settings:
    """Every knob of a run; the defaults are the release's."""

    steps: int = 25
    sampler: str = "euler"
    schedule: str = "karras"
    sigmas: list[float] | None = None        # overrides schedule/steps when given
    sigma_min: float = SIGMA_MIN
    sigma_max: float = SIGMA_MAX
    appearance_cfg: tuple[float, float] = (2.0, 2.0)
    motion_cfg: tuple[float, float] = (2.0, 2.0)
    denoise: float = 1.0                     # the release's i2i strength
    seed: int = 72580
    window: int = 25
    overlap: int = 3
    shift: int = 3
    pad: int = 15
    fps_id: float = 12.5
    motion_bucket_id: float = 0.0
    noise_aug: float = 0.0
    motion_scale: float = 1.0
    decode_chunk: int = 8
    motion_chunk: int = CHUNK
    height: int = 512
    width: int = 512
    branch_mode: str = "auto"                          # auto / batched / sequential (memory.plan_sampling)
    guidance_interval: tuple[float, float] | None = None  # guidance only for sigmas in [lo, hi]; None = all
    sdpa_backend: str = "auto"                         # auto / flash / efficient / math / cudnn
    compile_unet: bool = False                         # torch.compile the UNet (CUDA; first step slow)
    channels_last: bool = False                        # channels_last UNet weights (CUDA convolutions)

    def problems(self) -> list[tuple[tuple[str, ...], HPError]]:
        """Every impossible setting, each with the names of the fields involved (for the entry points to
        name their own flags or widgets). This is the one home of these rules; inner functions trust them."""
        out: list[tuple[tuple[str, ...], HPError]] = []
        if isinstance(self.steps, bool) or int(self.steps) != self.steps or self.steps < 1:
            out.append((("steps",), HPError(f"steps must be a whole number >= 1, got {self.steps!r}.",
                                            hint="Set steps to 1 or more (the release: 25).")))
        if not 0.0 < self.denoise <= 1.0:
            out.append((("denoise",), HPError(f"denoise must lie in (0, 1], got {self.denoise}.")))
        elif not self.sigmas and not out and int(self.steps * self.denoise) < 1:
            out.append((("steps", "denoise"), HPError(f"denoise {self.denoise} leaves no step out of {self.steps}.",
                                                      hint="Raise denoise or steps.")))
        if not 0 <= int(self.seed) <= SEED_MAX:
            out.append((("seed",), HPError(f"seed must lie in 0..{SEED_MAX} (a 64-bit seed), got {self.seed}.",
                                           hint="Use a smaller seed, e.g. the release's 72580.")))
        if self.pad < 0 or self.decode_chunk < 1 or self.motion_chunk < 1:
            out.append((("pad", "decode_chunk", "motion_chunk"),
                        HPError("pad must be >= 0 and decode/motion chunks >= 1.")))
        if not (math.isfinite(self.noise_aug) and self.noise_aug >= 0):
            out.append((("noise_aug",), HPError(f"noise_aug must be a finite number >= 0, got {self.noise_aug}.",
                                                hint="The release uses 0.")))
        for name in ("motion_scale", "sigma_min", "sigma_max", "fps_id", "motion_bucket_id"):
            if not math.isfinite(getattr(self, name)):
                out.append(((name,), HPError(f"{name} must be a finite number, got {getattr(self, name)}.")))
        if self.height % 8 or self.width % 8 or self.height <= 0 or self.width <= 0:
            out.append((("height", "width"), HPError(
                f"height and width must be positive multiples of 8, got {self.height}x{self.width}.",
                hint="The VAE works on 8x8 pixel blocks; 512x512 is what the weights were trained at.")))
        if self.sampler not in SAMPLERS:
            out.append((("sampler",), HPError(f"Unknown sampler {self.sampler!r}.",
                                              hint=f"Choose one of {', '.join(SAMPLERS)}.")))
        if not self.sigmas and self.schedule not in SCHEDULES:
            out.append((("schedule",), HPError(f"Unknown sigma schedule {self.schedule!r}.",
                                               hint=f"Choose one of {', '.join(SCHEDULES)}.")))
        for name in ("appearance_cfg", "motion_cfg"):
            if any(not (math.isfinite(v) and v >= 0) for v in getattr(self, name)):
                out.append(((name,), HPError(f"{name} values must be finite numbers >= 0, got {getattr(self, name)}.",
                                             hint="The release uses 2.0 2.0.")))
        try:
            validate_windows(max(self.window, 1), self.window, self.overlap, self.shift)
        except HPError as err:
            out.append((("window", "overlap", "shift"), err))
        if self.branch_mode not in ("auto", *BRANCH_MODES):
            out.append((("branch_mode",), HPError(f"Unknown branch mode {self.branch_mode!r}.",
                                                  hint="Use auto, batched or sequential.")))
        if self.guidance_interval is not None and (len(self.guidance_interval) != 2
                                                   or not 0 <= self.guidance_interval[0] <= self.guidance_interval[1]):
            out.append((("guidance_interval",), HPError(
                f"guidance_interval must be (lo, hi) with 0 <= lo <= hi, got {self.guidance_interval}.")))
        try:
            sdpa_backends(self.sdpa_backend)
        except HPError as err:
            out.append((("sdpa_backend",), err))
        return out

    def validate(self) -> None:
        """Raise HPError for the first impossible setting, before any model runs."""
        found = self.problems()
        if found:
            raise found[0][1]

    def sigma_schedule(self) -> torch.Tensor:
        """The sigmas actually sampled: the full schedule, cut to the last ``denoise`` fraction."""
        if self.sigmas:
            return custom_sigmas(self.sigmas).double()
        full = get_sigmas(self.schedule, self.steps, sigma_min=self.sigma_min, sigma_max=self.sigma_max).double()
        keep = min(int(self.steps * self.denoise), self.steps)
        return full[self.steps - keep:]


@dataclass
class PortraitModels:
    """The loaded networks. ``use(*names)`` yields them, as a tuple, on the compute device (offloading
    others if asked)."""

    unet: torch.nn.Module | None = None          # None: not loaded (e.g. only the motion networks)
    vae: torch.nn.Module | None = None
    dino: torch.nn.Module | None = None
    image_proj: torch.nn.Module | None = None
    motion_proj: torch.nn.Module | None = None
    expression: torch.nn.Module | None = None
    headpose: torch.nn.Module | None = None
    pose_guider: torch.nn.Module | None = None
    preset: str = "official"
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    offload: bool = False
    # A host (ComfyUI) may take over placement: placer(modules) is a context manager that puts the
    # modules on self.device for the block (e.g. through its model management) and may offload after.
    placer: Callable | None = None
    # Bytes of UNet weights allowed on the device (--vram-budget): blocks beyond it stream from host memory
    # (hp_core.models.streaming); None keeps the whole UNet on the device.
    stream_budget: int | None = None
    last_stream: BlockStreamer | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def use(self, *names: str) -> Iterator[tuple[torch.nn.Module, ...]]:
        """Put the named modules on the compute device for the block and yield them as a tuple, one per
        name (``with models.use("vae") as (vae,):``); with offload, back to the CPU after."""
        mods = tuple(getattr(self, n) for n in names)
        if self.placer is not None:
            with self.placer(mods):
                yield mods
            return
        streamer = None
        for name, m in zip(names, mods):
            if name == "unet" and self.stream_budget is not None:
                plan = plan_stream(m, self.stream_budget)
                streamer = self.last_stream = BlockStreamer(plan, self.device).attach(m)
                log.info("UNet weights: %.0f MiB kept on %s, %.0f MiB in %d blocks copied in as they run",
                         plan.resident_bytes / 2**20, self.device, plan.streamed_bytes / 2**20, len(plan.streamed))
            else:
                m.to(self.device)
        try:
            yield mods
        finally:
            if streamer is not None:
                streamer.detach()
            if self.offload and self.device.type != "cpu":
                for m in mods:
                    m.to("cpu")
                torch.cuda.empty_cache()

    @property
    def dims(self):
        return PRESET_DIMS[self.preset]


def random_models(preset: str = "tiny", seed: int = 0, device="cpu") -> PortraitModels:
    """Randomly initialised models of a preset, in the release's precisions on GPU (fp32 on CPU)."""
    torch.manual_seed(seed)
    mods = {n: build_component(n, preset) for n in COMPONENTS}
    return PortraitModels(vae=build_vae(preset), preset=preset, device=torch.device(device), **mods)


def load_models(paths: dict[str, str | Path | dict], vae: str | Path | None, *, preset: str = "official",
                device="cuda", dtypes: dict[str, str | torch.dtype] | None = None, offload: bool = False,
                search_dirs=(), components=COMPONENTS, with_vae: bool = True, fp8=(),
                stream_budget: int | None = None) -> PortraitModels:
    """Load each of ``components`` strictly (``paths[name]``: a file or a state dict) and the SVD VAE (a folder
    or file; None finds the manifest's one in ``search_dirs``). ``dtypes`` overrides the release's
    precisions; ``fp8`` names networks stored as fp8 (computed in their dtype); with ``offload`` the weights
    wait on the CPU until a stage needs them; ``stream_budget`` (bytes) streams the UNet's blocks beyond it."""
    dtypes = {k: (DTYPES[v] if isinstance(v, str) else v) for k, v in (dtypes or {}).items()}
    device = torch.device(device)
    keep = torch.device("cpu") if offload else device
    mods = {n: load_component(n, paths[n], preset=preset, dtype=dtypes.get(n), device=keep, fp8=n in fp8)
            for n in components}
    vae_model = load_vae(search_dirs, vae, device=keep, dtype=dtypes.get("vae", torch.float32)) if with_vae else None
    return PortraitModels(vae=vae_model, preset=preset, device=device, offload=offload, stream_budget=stream_budget,
                          **mods)


def load_models_from_dirs(search_dirs, *, preset: str = "official", device="cuda", dtypes=None,
                          vae: str | Path | None = None, offload: bool = False,
                          components=COMPONENTS, with_vae: bool = True, fp8=(),
                          stream_budget: int | None = None) -> PortraitModels:
    """Load the manifest's files from the model folders, verified (size/hash/structure) and via the safetensors
    cache. Every missing or unusable file is reported in one HPError first; files are pinned after loading.
    ``components`` / ``with_vae``: only these (e.g. MOTION_NETWORKS to extract a performance)."""
    weights.preflight([*components] + (["svd_vae"] if with_vae else []), search_dirs, vae=vae, preset=preset)
    ckpts = {n: weights.read_checkpoint(n, search_dirs, preset=preset) for n in components}
    models = load_models({n: c.state for n, c in ckpts.items()}, vae, preset=preset, device=device, dtypes=dtypes,
                         offload=offload, search_dirs=search_dirs, components=components, with_vae=with_vae, fp8=fp8,
                         stream_budget=stream_budget)
    for ckpt in ckpts.values():
        weights.confirm_checkpoint(ckpt)  # pinned (and cached) only once every network loaded strictly
    return models


# ---------------------------------------------------------------------------------------------- conditions

def _dtype_of(module: torch.nn.Module) -> torch.dtype:
    return compute_dtype(module)


@torch.no_grad()
def encode_appearance(models: PortraitModels, appearance: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
    """Appearance image (1,3,S,S) ImageNet-normalised + identity (512,) -> tokens (1, Na, C) on the CPU."""
    with models.use("dino", "image_proj") as (dino, proj):
        dt = _dtype_of(dino)
        tokens = dino(appearance.to(models.device, dt), identity.reshape(1, -1).to(models.device, dt))
        return proj(tokens.to(_dtype_of(proj))).float().cpu()


def _unit_frames(frames, sl: slice) -> torch.Tensor:
    """Frames [sl] as float (N,3,H,W) in [0,1], from a float tensor or a uint8 (F,H,W,3) array."""
    part = frames[sl]
    if isinstance(part, torch.Tensor) and part.dtype.is_floating_point:
        return part
    return to_unit_tensor(part.numpy() if isinstance(part, torch.Tensor) else part)


@torch.no_grad()
def encode_motion(models: PortraitModels, motion_crops, pose_images, ids: list[tuple[int, int]],
                  chunk: int = CHUNK, batch: int = 25, *, fps: float = 25.0, source_sha256: str = "") -> Performance:
    """Face crops and head-pose images -> a Performance, with one (head, exp) id pair per ``chunk`` frames.

    Images are float (F,3,256,256) tensors in [0,1] or uint8 (F,256,256,3) arrays; uint8 input is converted
    a chunk at a time, and the encoders run ``batch`` frames at a time, so memory stays bounded.
    """
    frames = len(motion_crops)
    if len(pose_images) != frames:
        raise HPError("Face crops and head-pose images must have the same frame count.")
    need = -(-frames // chunk)
    if len(ids) < need:
        raise HPError(f"{frames} frames need {need} intensity id pairs (one per {chunk} frames), got {len(ids)}.")
    refined_parts, rots, trans = [], [], []
    with models.use("expression", "headpose", "motion_proj") as (expr, head, refiner):
        for start in range(0, frames, chunk):
            crops = _unit_frames(motion_crops, slice(start, start + chunk))
            poses = _unit_frames(pose_images, slice(start, start + chunk))
            feats = torch.cat([expr(crops[i:i + batch].to(models.device, _dtype_of(expr)))
                               for i in range(0, crops.shape[0], batch)])
            pose = [head.encode(poses[i:i + batch].to(models.device, _dtype_of(head)))
                    for i in range(0, poses.shape[0], batch)]
            head_id, exp_id = ids[start // chunk]
            refined_parts.append(refiner(feats.to(_dtype_of(refiner)), int(head_id), int(exp_id)).float().cpu())
            rots.append(torch.cat([r for r, _ in pose]).float().cpu())
            trans.append(torch.cat([t for _, t in pose]).float().cpu())
    return performance_from_parts(torch.cat(refined_parts), torch.cat(rots), torch.cat(trans), ids[:need], fps=fps,
                                  chunk=chunk, preset=models.preset, source_sha256=source_sha256)


@torch.no_grad()
def encode_portrait_motion(models: PortraitModels, pose_crop: np.ndarray, motion_crop: np.ndarray) -> PortraitMotion:
    """The portrait's own head rotation and expression tokens: the portrait read as a one-frame driving clip
    (its head-pose and expression crops, uint8 (256,256,3), cut by a driving frame's rules; one frame has
    intensity ids (0, 0))."""
    perf = encode_motion(models, motion_crop[None], pose_crop[None], [(0, 0)], chunk=1)
    return PortraitMotion(rotation=perf.rotation[0], expression=perf.expression[0])


def augmentation_noise(seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    """The noise of the reference's noise augmentation: standard normal, fp32, drawn on the CPU from a
    generator seeded with ``seed + 2`` (``seed`` draws the start noise, ``seed + 1`` the stochastic samplers')."""
    gen = torch.Generator("cpu").manual_seed((int(seed) + 2) % (SEED_MAX + 1))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


@torch.no_grad()
def encode_reference(models: PortraitModels, reference: torch.Tensor, noise_aug: float = 0.0,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference image (1,3,H,W) in [-1,1] -> (start latents = mean * 0.18215, conditioning latents = mode),
    both (1,4,h,w) fp32 on the CPU. The VAE runs in fp32 (SVD's force_upcast).

    As in the release, the start latents come from the clean reference and the conditioning latents from
    ``reference + noise_aug * augmentation_noise(seed, reference.shape)`` (unchanged at 0, the release's value).
    """
    if noise_aug < 0:
        raise HPError(f"noise_aug must not be negative, got {noise_aug}.", hint="The release uses 0.")
    with models.use("vae") as (vae,):
        dt = _dtype_of(vae)
        try:  # the up-cast is inside: a cast cut short (out of memory) is undone by the finally
            if dt != torch.float32:
                cast(vae, dtype=torch.float32)
            clean = reference.to(models.device, torch.float32)
            dist = vae.encode(clean).latent_dist
            mean, mode = dist.mean.cpu(), dist.mode().cpu()
            if noise_aug > 0:
                noise = augmentation_noise(seed, tuple(reference.shape)).to(models.device)
                mode = vae.encode(clean + float(noise_aug) * noise).latent_dist.mode().cpu()
        finally:
            if dt != torch.float32:
                cast(vae, dtype=dt)
    return mean * VAE_SCALE, mode


@dataclass
class PortraitEncoding:
    """What the networks make of one portrait: appearance tokens (1, Na, C), the reference image it was
    encoded from (1,3,H,W) in [-1,1], its start latents and conditioning latents (1,4,h,w), all on the CPU."""

    tokens: torch.Tensor
    reference: torch.Tensor
    ref_latents: torch.Tensor
    cond_latents: torch.Tensor


@torch.no_grad()
def encode_portrait(models: PortraitModels, source, hw: tuple[int, int], noise_aug: float = 0.0,
                    seed: int = 0) -> PortraitEncoding:
    """The portrait side of a run, from a prepared portrait (hp_core.preprocess.SourceFace): appearance
    tokens at the appearance encoder's size and the reference latents at the output size ``hw``."""
    tokens = encode_appearance(models, appearance_at(source, models.dims.appearance_size),
                               torch.as_tensor(source.identity, dtype=torch.float32))
    reference = reference_at(source, hw)
    ref_latents, cond_latents = encode_reference(models, reference, noise_aug, seed)
    return PortraitEncoding(tokens, reference, ref_latents, cond_latents)


def build_conditions(appearance: torch.Tensor, motion: torch.Tensor, cond_latents: torch.Tensor,
                     pose: torch.Tensor | None, settings: Settings) -> Conditions:
    """Pad motion (ramps) and pose (copies of frame 0) by ``settings.pad`` on both sides."""
    tokens = pad_motion(motion, settings.pad)
    pose_p = pad_frames(pose, settings.pad) if pose is not None else None
    ids = torch.tensor([settings.fps_id, settings.motion_bucket_id, settings.noise_aug], dtype=torch.float32)
    return Conditions(appearance=appearance, motion=tokens, cond_latents=cond_latents, pose=pose_p,
                      added_time_ids=ids)


# ---------------------------------------------------------------------------------------------- sampling

ProgressFn = Callable[[int, int], None]


def initial_noise(settings: Settings, length: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Seeded standard-normal noise (1, L, 4, h, w), drawn on the CPU so every device sees the same values."""
    gen = torch.Generator("cpu").manual_seed(int(settings.seed))
    return torch.randn((1, length, 4, *latent_hw), generator=gen, dtype=torch.float32)


def fit_window(window: int, overlap: int, length: int) -> tuple[int, int]:
    """(window, overlap) for a padded sequence of ``length`` frames: a longer window is clamped to the
    sequence (the same result as a window of exactly that length, without its memory), with a note."""
    if window <= length:
        return window, overlap
    log.warning("note: the context window (%d frames) is longer than the padded sequence (%d frames); "
                "using a window of %d.", window, length, length)
    return length, min(overlap, length - 1)


@torch.no_grad()
def sample_latents(models: PortraitModels, conditions: Conditions, ref_latents: torch.Tensor,
                   settings: Settings, *, noise: torch.Tensor | None = None,
                   progress: ProgressFn | None = None, should_cancel: Callable[[], bool] | None = None,
                   sampler_fn: Callable | None = None, sigmas: torch.Tensor | None = None,
                   keep_padding: bool = False,
                   preview: Callable[[int, int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Denoise the padded sequence; returns latents (F, 4, h, w) fp32 on the CPU with padding cut, or with
    ``keep_padding`` the whole padded sequence (pad + F + pad, 4, h, w), which ``decode_latents(..., pad=)``
    needs to decode as the release does.

    ``progress(done, total)`` and ``preview(done, total, denoised)`` see each step (denoised: the estimate
    (1, L, 4, h, w)), whichever sampler runs.
    ``sampler_fn`` replaces the built-in sampler: a function with k-diffusion's signature
    ``(model, x, sigmas, extra_args=None, callback=None, disable=None) -> x`` (a registered sampler's
    ``function``, or a ComfyUI SAMPLER through nodes/comfy_sampler), called with ``extra_args={"seed": seed}``;
    ``sigmas`` replaces the schedule (e.g. a ComfyUI SIGMAS input); ``noise`` replaces the seeded noise.
    """
    settings.validate()
    length = conditions.length
    hw = tuple(ref_latents.shape[-2:])
    sig = (torch.as_tensor(sigmas, dtype=torch.float64).flatten() if sigmas is not None
           else settings.sigma_schedule())
    if noise is None:
        noise = initial_noise(settings, length, hw)
    elif tuple(noise.shape) != (1, length, 4, *hw):
        raise HPError(f"The given noise has shape {tuple(noise.shape)}, expected {(1, length, 4, *hw)}.")
    x = ref_latents.float().unsqueeze(1) + float(sig[0]) * noise.float()
    with models.use("unet", "pose_guider") as (unet, pose_guider):
        if hasattr(unet, "set_motion_scale"):
            unet.set_motion_scale(settings.motion_scale)
        window, overlap = fit_window(settings.window, settings.overlap, length)
        apply_unet_options(unet, settings, models.device)
        interval = tuple(settings.guidance_interval) if settings.guidance_interval is not None else None
        guided_steps = any(guided(float(s), interval) for s in sig[:-1])
        plan = plan_sampling(unet, models.device, window=window, latent_hw=hw,
                             branch_mode=settings.branch_mode, branches=3 if guided_steps else 1,
                             math_attention=settings.sdpa_backend == "math")
        guidance = GuidanceSettings(window, overlap, settings.shift, tuple(settings.appearance_cfg),
                                    tuple(settings.motion_cfg), plan.branch_mode, interval)
        denoiser = PortraitDenoiser(unet, pose_guider, conditions, sig, guidance,
                                    device=models.device, should_cancel=should_cancel)
        log.info("sampling: %d UNet evaluations planned (one branch over one window each; samplers with several "
                 "model calls per step multiply it), branch mode %s", planned_evaluations(sig, length, guidance),
                 plan.branch_mode)
        callback = step_reporter(sig.numel() - 1, progress, preview)
        if sampler_fn is not None:
            x = sampler_fn(denoiser, x, sig.float(), extra_args={"seed": int(settings.seed)}, callback=callback,
                           disable=True)
        else:
            gen = torch.Generator("cpu").manual_seed((int(settings.seed) + 1) % (SEED_MAX + 1))
            x = sample(settings.sampler, denoiser, x, sig.float(), generator=gen, callback=callback,
                       should_cancel=should_cancel)
        log.info("sampling: %d UNet evaluations in %d UNet calls", denoiser.evaluations, denoiser.unet_calls)
    return x[0] if keep_padding else unpad(x[0], settings.pad)


def decode_chunks(length: int, pad: int, chunk: int) -> list[tuple[int, int]]:
    """The release's decode chunks [start, end) of a padded sequence of ``length`` frames: ``chunk`` frames
    at a time counted from padded frame 0, keeping only those that hold an output frame (not all padding)."""
    if chunk < 1 or pad < 0 or length <= 2 * pad:
        raise HPError(f"Cannot decode {length} latents with padding {pad} and chunk {chunk}.",
                      hint="Give the padded latents (pad + frames + pad) and a chunk of at least 1.")
    first, last = pad, length - pad - 1  # the output frames, in padded indices
    return [(i, min(i + chunk, length)) for i in range(first - first % chunk, last + 1, chunk)]


def apply_unet_options(unet: torch.nn.Module, settings: Settings, device: torch.device) -> None:
    """Route the opt-in speed options to the UNet: SDPA backend, channels_last (CUDA), torch.compile."""
    if hasattr(unet, "set_sdpa_backend"):
        unet.set_sdpa_backend(settings.sdpa_backend)
    if settings.channels_last and torch.device(device).type == "cuda":
        unet.to(memory_format=torch.channels_last)
    if settings.compile_unet and getattr(unet, "_compiled_call_impl", None) is None:
        unet.compile()  # in place: the module keeps its attributes and weights; compiled on first call


@torch.no_grad()
def iter_decoded(models: PortraitModels, latents: torch.Tensor, chunk: int = 8, *,
                 pad: int = 0) -> Iterator[torch.Tensor]:
    """Decode as ``decode_latents`` does, yielding the output frames (n, H, W, 3) of one decode chunk at a
    time, so a caller can stream them to a file without holding the whole video."""
    chunks = decode_chunks(latents.shape[0], pad, chunk)
    with models.use("vae") as (vae,):
        dt = _dtype_of(vae)
        check_decoding(vae, models.device, chunk=min(chunk, latents.shape[0]),
                       image_hw=(latents.shape[-2] * 8, latents.shape[-1] * 8))
        for start, end in chunks:
            part = (latents[start:end] / VAE_SCALE).to(models.device, dt)
            img = vae.decode(part, num_frames=part.shape[0]).sample.float()
            keep = slice(max(pad - start, 0), min(latents.shape[0] - pad, end) - start)
            yield (img[keep] * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu()


def decode_latents(models: PortraitModels, latents: torch.Tensor, chunk: int = 8,
                   progress: ProgressFn | None = None, *, pad: int = 0) -> torch.Tensor:
    """Latents (pad + F + pad, 4, h, w) -> the F output frames (F, H, W, 3) float in [0, 1] on the CPU.

    As the release: the padded sequence is decoded ``chunk`` frames at a time counted from padded frame 0
    (so output frames share a chunk, and the temporal decoder's context, with padding frames), and the
    padding is cut after decoding; chunks made only of padding are skipped. ``pad=0``: plain latents.
    ``progress(done, F)`` counts output frames.
    """
    total = latents.shape[0] - 2 * pad
    frames = []
    for part in iter_decoded(models, latents, chunk, pad=pad):
        frames.append(part)
        if progress is not None:
            progress(sum(f.shape[0] for f in frames), total)
    return torch.cat(frames)


# ---------------------------------------------------------------------------------- inputs at the run's sizes

StageProgress = Callable[..., None]  # progress(done, total, stage)


def stage_progress(progress: StageProgress | None, stage: str) -> ProgressFn | None:
    """A stage's ``progress(done, total)`` from a whole run's ``progress(done, total, stage)``."""
    return (lambda i, n: progress(i, n, stage)) if progress else None


def _resize(images: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased resize of (N,C,H,W) float images; a no-op at the same size."""
    if tuple(images.shape[-2:]) == tuple(hw):
        return images
    return torch.nn.functional.interpolate(images.float(), size=hw, mode="bilinear", antialias=True,
                                           align_corners=False)


def appearance_at(prepared, size: int) -> torch.Tensor:
    """The appearance input (1,3,S,S), ImageNet-normalised: the release's 224 tensor, or made afresh from
    the 512 crop at another size (a preset with another DINO input)."""
    if prepared.appearance_224.shape[-1] == size:
        return prepared.appearance_224
    return appearance_input(prepared.source_crop_512, size)


def reference_at(prepared, hw: tuple[int, int]) -> torch.Tensor:
    """The VAE reference (1,3,H,W) in [-1,1]: the release's 512 tensor, or resized to another output size."""
    ref = prepared.vae_reference
    if tuple(ref.shape[-2:]) == tuple(hw):
        return ref
    return _resize(ref, hw).clamp(-1, 1)


def pose_condition(pose_images, hw: tuple[int, int], batch: int = 32) -> torch.Tensor | None:
    """(F,H,W,3) uint8 skeleton images (or None for the blank pose) -> (F,3,h,w) uint8 at the output size."""
    if pose_images is None:
        return None
    out = []
    for i in range(0, len(pose_images), batch):
        part = torch.as_tensor(pose_images[i:i + batch]).permute(0, 3, 1, 2)
        out.append(_resize(part.float(), hw).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out)


__all__ = ["MOTION_NETWORKS", "PortraitEncoding", "appearance_at", "encode_portrait", "fit_window", "SEED_MAX", "pose_condition",
           "reference_at", "Settings", "PortraitModels", "Performance", "random_models", "load_models", "load_models_from_dirs",
           "encode_appearance", "encode_motion", "encode_portrait_motion", "encode_reference", "augmentation_noise", "build_conditions",
           "initial_noise", "sample_latents", "decode_chunks", "decode_latents", "iter_decoded", "apply_unet_options", "replace"]
