"""The file-level run: an image and a driving video in, an mp4 out (what `python -m hp_core animate` does).

``run(RunRequest(...))`` checks everything knowable up front (``preflight``: settings, output paths, inputs,
weight files) in about a second, before the face detector or any network runs; then it streams: the video
is decoded twice a frame at a time (face tracking, then motion crops a chunk at a time), and the decoded
result goes to the video writer chunk by chunk, so host memory does not grow with the clip's frames.
Outputs are written to temporary files and renamed into place only when every one is complete; an output
path that is one of the inputs is refused. The stages themselves live in hp_core.pipeline.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import preprocess
from . import weights
from .errors import HPError
from .memory import check_device_memory
from .models import PRESET_DIMS, fp8_networks, precision_dtypes
from .models.motion_refiner import CHUNK
from .models.streaming import budget_bytes
from .motion_edit import MotionEdit, PortraitMotion, edit_performance
from .performance import SUFFIX as PERFORMANCE_SUFFIX
from .performance import Performance, load_performance, save_performance
from .performance import concat as concat_performances
from .pipeline import (MOTION_NETWORKS, Settings, StageProgress, build_conditions, encode_motion, encode_portrait,
                       encode_portrait_motion, iter_decoded, load_models_from_dirs, sample_latents, stage_progress)
from .preprocess.image import IMAGE_EXTENSIONS
from .sampling.denoiser import GuidanceSettings, planned_evaluations
from .video import VideoInfo, VideoWriter, clear_stale_partials, iter_frames, probe_video


@dataclass
class RunRequest:
    """One animation run: input and output paths, models, device/precision, the motion edit and the sampling
    settings. The motion comes from ``video`` (extracted afresh) or from ``motion`` (a saved performance)."""

    image: Path
    out: Path
    video: Path | None = None
    motion: Path | None = None                             # a performance file (motion extract) instead
    audio_file: Path | None = None                         # sound for the result; default: the video's
    edit: MotionEdit = field(default_factory=MotionEdit)
    paste_back: Path | None = None
    models_dirs: list[Path] = field(default_factory=list)  # empty: $HP_MODELS_DIR or ./models/hunyuan_portrait
    settings: Settings = field(default_factory=Settings)
    preset: str | None = "official"                       # None: the models folder's own (random weights), else official
    device: str | None = None                              # None: cuda when available, else cpu
    precision: str = "auto"                                # see hp_core.models.precision
    vae: Path | None = None                                # an SVD VAE folder or file instead of the manifest's
    max_frames: int | None = None
    audio: bool = True                                     # copy the driving clip's (or audio_file's) audio
    use_arcface: bool = True
    overwrite: bool = False                                # replace existing outputs (else they are refused)
    vram_budget: float | None = None                       # GiB of UNet weights on the GPU; the rest streams


@dataclass
class RunResult:
    """What a run wrote and what it noticed."""

    out: Path
    paste_back: Path | None
    frames: int
    fps: float
    frames_without_face: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What preflight found: the source image, the clip's description or the saved performance, weight files,
    device and dtypes."""

    source: np.ndarray | None
    info: VideoInfo | None
    weights: dict[str, Path]
    search_dirs: list[Path]
    device: torch.device
    dtypes: dict[str, torch.dtype]
    performance: Performance | None = None

    @property
    def fps(self) -> float:
        return self.performance.fps if self.performance is not None else self.info.fps


# ------------------------------------------------------------------------------------------ preflight

def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: equal after following symlinks, or the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inputs(request: RunRequest) -> list[tuple[str, Path]]:
    named = [("--image", request.image), ("--video", request.video), ("--motion", request.motion),
             ("--audio", request.audio_file), ("--vae", request.vae)]
    return [(flag, Path(path)) for flag, path in named if path is not None]


def check_output_paths(request: RunRequest) -> None:
    """Refuse an output that is an input (or the other output); make sure each output folder is writable."""
    outputs = [("--out", Path(request.out))]
    if request.paste_back is not None:
        outputs.append(("--paste-back", Path(request.paste_back)))
    for flag, path in outputs:
        for in_flag, in_path in _inputs(request):
            if _same_file(path.expanduser(), in_path.expanduser()):
                raise HPError(f"The output {flag} {path} is the input {in_flag} {in_path}; writing it would destroy "
                              "the input.", hint=f"Choose another name for {flag}.")
    if len(outputs) == 2 and _same_file(outputs[0][1].expanduser(), outputs[1][1].expanduser()):
        raise HPError(f"--out and --paste-back name the same file ({request.out}).",
                      hint="Give the pasted-back video its own name.")
    for flag, path in outputs:
        if path.expanduser().is_dir():
            raise HPError(f"The output {flag} {path} is a folder.", hint="Give a file name ending in .mp4.")
        if path.expanduser().exists() and not request.overwrite:
            raise HPError(f"The output {flag} {path} already exists; it was left as it is.",
                          hint="Choose another name, or pass --overwrite to replace it.")
        check_writable_folder(path.expanduser().resolve().parent, flag)
        clear_stale_partials(path.expanduser().resolve().parent)  # left by a killed run


def check_writable_folder(folder: Path, flag: str) -> None:
    """Make ``folder`` (and its parents) and prove a file can be written there, else one HPError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".hp-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise HPError(f"Cannot write {flag} into the folder {folder} ({err.strerror or err}).",
                      hint="Choose a folder you can write to.") from err


def weight_files(request: RunRequest, search_dirs: list[Path]) -> dict[str, Path]:
    """Every weight file the run needs (the networks, the VAE or ``request.vae``, ArcFace when used, the face
    detector), present and structurally right, else ONE HPError listing every problem."""
    needed = weights.needed_ids(use_arcface=request.use_arcface, vae=request.vae is None)
    paths = weights.preflight(needed, search_dirs, vae=request.vae, preset=request.preset)
    if request.vae is not None:
        paths["vae"] = Path(request.vae).expanduser()
    return paths


def with_folder_preset(request: RunRequest) -> RunRequest:
    """``request`` with preset None replaced by its models folder's (a random-weights marker, else official)."""
    if request.preset is not None:
        return request
    dirs = list(request.models_dirs) or weights.default_search_dirs(None)
    return replace(request, preset=weights.locations.folder_preset(dirs))


def stream_budget(request: RunRequest) -> int | None:
    """The request's VRAM budget in bytes (None: the whole UNet on the device)."""
    return None if request.vram_budget is None else budget_bytes(request.vram_budget)


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def check_request(request: RunRequest) -> None:
    """The request's own rules, before any file is read."""
    request.settings.validate()
    request.edit.validate()
    if request.preset not in PRESET_DIMS:
        raise HPError(f"Unknown preset {request.preset!r}.", hint=f"Use one of {', '.join(PRESET_DIMS)}.")
    if request.max_frames is not None and request.max_frames < 1:
        raise HPError(f"max_frames must be at least 1 (got {request.max_frames}).")
    if request.vram_budget is not None and not (math.isfinite(request.vram_budget) and request.vram_budget > 0):
        raise HPError(f"--vram-budget must be a positive number of GiB, got {request.vram_budget}.")
    if request.motion is not None and request.max_frames is not None:
        raise HPError("--max-frames applies to a driving clip, and --motion gives a saved performance.",
                      hint="Use --length (and --start) to take part of a performance.")
    if request.video is None and request.motion is None:
        raise HPError("Nothing drives the portrait.", hint="Give a driving clip (--video) or a saved performance "
                                                            "(--motion).")


def read_motion(request: RunRequest) -> Performance | None:
    """The saved performance of ``request.motion`` (checked against the preset), or None."""
    return None if request.motion is None else load_performance(request.motion, preset=request.preset)


def preflight(request: RunRequest) -> Plan:
    """Everything knowable before heavy work, cheapest first: settings, output paths, image and video readable,
    weight files present and whole. Raises HPError at the first problem; the face detector has not run."""
    check_request(request)
    check_output_paths(request)
    source = preprocess.read_image_file(request.image)
    performance = read_motion(request)
    if performance is not None:
        request.edit.validate(performance.frames)
    info = probe_video(request.video) if request.video is not None else None
    frames = performance.frames if performance is not None else info.frames_estimate if info is not None else None
    if performance is None and frames is not None:  # start/length against the clip (its count may be estimated)
        exact = request.max_frames is not None and request.max_frames <= frames
        request.edit.validate(request.max_frames if exact else frames + 2)
    if request.audio_file is not None and not Path(request.audio_file).expanduser().is_file():
        raise HPError(f"The audio file {request.audio_file} does not exist.", hint="Check the --audio path.")
    device = _device(request.device)
    dtypes = precision_dtypes(request.precision, device)
    search_dirs = list(request.models_dirs) or weights.default_search_dirs(None)
    files = weight_files(request, search_dirs)
    s = request.settings
    edited = request.edit.length or max((frames or s.window) - request.edit.start, 1)
    check_device_memory(request.preset, device, dtype=dtypes["unet"], window=min(s.window, edited + 2 * s.pad),
                        latent_hw=(s.height // 8, s.width // 8), fp8="unet" in fp8_networks(request.precision),
                        stream_budget=stream_budget(request))
    note = cpu_time_note(request, device, performance.frames if performance is not None else
                         info.frames_estimate if info is not None else None)
    if note:
        log.warning(note)
    return Plan(source, info, files, search_dirs, device, dtypes, performance)


log = logging.getLogger(__name__)
# One UNet evaluation of the official preset costs about this many floating-point operations per frame at
# 512x512 (64x64 latents; measured with torch.utils.flop_counter, nearly proportional to the pixel count).
UNET_FLOP_PER_FRAME_512 = 1.14e12


def _cpu_flops(seconds: float = 0.1) -> float:
    """This CPU's float32 matrix-multiply speed in FLOP/s, measured for about ``seconds``."""

    a = torch.randn(512, 512)
    a @ a
    n, start = 0, time.perf_counter()
    while True:
        a @ a
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and n >= 2:
            return n * 2 * 512 ** 3 / elapsed


def _duration(seconds: float) -> str:
    if seconds < 90:
        return "a minute"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:.0f} days"


def cpu_time_note(request: RunRequest, device: torch.device, frames: int | None,
                  flops: float | None = None) -> str | None:
    """For a run of the official networks on the CPU: roughly how long the denoising will take (frames x steps
    x windows x guidance branches, times this CPU's measured speed) and how to make it quick; else None."""
    if device.type != "cpu" or request.preset != "official":
        return None
    s = request.settings
    frames = frames or 0
    if request.max_frames:
        frames = min(frames, request.max_frames) if frames else request.max_frames
    frames = request.edit.length or max(frames - request.edit.start, 1)
    length = frames + 2 * s.pad
    window = min(s.window, length)
    overlap = min(s.overlap, window - 1)
    guidance = GuidanceSettings(window, overlap, s.shift, tuple(s.appearance_cfg), tuple(s.motion_cfg),
                                "batched", tuple(s.guidance_interval) if s.guidance_interval else None)
    evaluations = planned_evaluations(s.sigma_schedule(), length, guidance)
    work = evaluations * window * UNET_FLOP_PER_FRAME_512 * s.height * s.width / 512 ** 2
    seconds = work / (flops or _cpu_flops())
    windows = -(-length // (window - overlap))
    text = (f"note: this run uses the CPU: {frames} frames (+{2 * s.pad} padding) in {windows} windows of {window}, "
            f"{len(s.sigma_schedule()) - 1} steps, {evaluations} UNet evaluations at {s.height}x{s.width}: about "
            f"{_duration(seconds)} on this CPU (a rough estimate).")
    if s.height * s.width > 256 * 256 or s.steps > 10:
        text += " For a quick look use --size 256 --steps 10 (about a tenth of the work), or a CUDA GPU."
    return text


# ------------------------------------------------------------------------------------------ streaming

def motion_chunks(video: Path, track: preprocess.DrivingTrack, chunk: int,
                  max_frames: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read the video again and yield (expression crops, head-pose crops), uint8 (n, 256, 256, 3), ``chunk``
    frames at a time; only one chunk of crops and one decoded frame are held."""
    motion, pose = [], []
    count = 0
    for t, frame in enumerate(iter_frames(video, max_frames=max_frames)):
        if t >= track.num_frames:
            break
        _, pose_t, motion_t = track.crops(t, frame)
        motion.append(motion_t)
        pose.append(pose_t)
        count += 1
        if len(motion) == chunk:
            yield np.stack(motion), np.stack(pose)
            motion, pose = [], []
    if motion:
        yield np.stack(motion), np.stack(pose)
    if count != track.num_frames:
        raise HPError(f"{video} gave {count} frames on the second read but {track.num_frames} on the first.",
                      hint="Re-encode the clip (e.g. to H.264 mp4); it does not decode the same way twice.")


@dataclass
class Extracted:
    """A performance extracted from a clip, with what the face tracking noticed."""

    performance: Performance
    frames_without_face: int
    warnings: list[str]


@torch.no_grad()
def extract_performance(video: Path, models, detector, *, chunk: int, fps: float, max_frames: int | None = None,
                        frames_estimate: int | None = None, progress: StageProgress | None = None) -> Extracted:
    """The driving side, streamed: face tracking over the clip, then the motion encoders and the refiner a
    chunk at a time (``chunk`` frames per intensity id pair)."""
    faces = stage_progress(progress, "faces")
    total = frames_estimate if max_frames is None or frames_estimate is None else min(frames_estimate, max_frames)
    track = preprocess.track_driving(iter_frames(video, max_frames=max_frames), detector,
                                     progress=(lambda i: faces(i, max(total or 0, i))) if faces else None)
    ids = preprocess.intensity_ids(track.landmarks, chunk)
    digest = weights.sha256_file(video, progress=False)
    parts = []
    for k, (motion, pose) in enumerate(motion_chunks(video, track, chunk, max_frames)):
        parts.append(encode_motion(models, motion, pose, [ids[k]], chunk=chunk, fps=fps, source_sha256=digest))
        if progress:
            progress(min((k + 1) * chunk, track.num_frames), track.num_frames, "motion")
    return Extracted(concat_performances(parts), len(track.missing), track.warnings)


def portrait_motion(models, source: preprocess.SourceFace) -> PortraitMotion:
    """The portrait's own head rotation and expression tokens (for relative and still edits)."""
    return encode_portrait_motion(models, source.pose_crop, source.motion_crop)


@torch.no_grad()
def expanded(request: RunRequest) -> RunRequest:
    """``request`` with every path's ``~`` expanded, so the checks and the writers see the same files."""
    paths = {name: Path(value).expanduser() for name in ("image", "out", "video", "motion", "audio_file",
                                                         "paste_back", "vae")
             if (value := getattr(request, name)) is not None}
    return replace(request, **paths)


def run(request: RunRequest, progress: StageProgress | None = None) -> RunResult:
    """Animate ``request.image`` with ``request.video`` or ``request.motion``; writes ``request.out`` (and
    ``paste_back``). The portrait's face is found first, so a portrait without one fails in seconds."""
    request = expanded(with_folder_preset(request))
    plan = preflight(request)
    session = Session(request, plan)
    source = session.prepare(plan.source)
    extracted = session.performance(progress)
    return session.animate(source, plan.source, extracted, request.out, request.paste_back, progress)


class Session:
    """Detectors and models loaded once (the networks when first needed), shared by the performance and
    every portrait it drives."""

    def __init__(self, request: RunRequest, plan: Plan):
        self.request, self.plan = request, plan
        self.detector = preprocess.load_yolo_face(plan.weights["yoloface"], device=plan.device)
        self.arcface = preprocess.load_arcface(plan.weights["arcface"]) if request.use_arcface else None

    @functools.cached_property
    def models(self):
        """Every network, verified and loaded on first use."""
        return load_models_from_dirs(self.plan.search_dirs, preset=self.request.preset, device=self.plan.device,
                                     dtypes=self.plan.dtypes, vae=self.request.vae,
                                     fp8=fp8_networks(self.request.precision),
                                     stream_budget=stream_budget(self.request),
                                     offload=self.request.vram_budget is not None)

    def prepare(self, source_rgb: np.ndarray) -> preprocess.SourceFace:
        """The portrait side's preprocessing (face, crop, identity); raises HPError when it has no face."""
        return preprocess.prepare_source(source_rgb, self.detector, arcface=self.arcface)

    def performance(self, progress: StageProgress | None = None) -> Extracted:
        """The request's performance: the saved one, or extracted from the clip."""
        if self.plan.performance is not None:
            return Extracted(self.plan.performance, 0, [])
        return extract_performance(self.request.video, self.models, self.detector,
                                   chunk=self.request.settings.motion_chunk, fps=self.plan.info.fps,
                                   max_frames=self.request.max_frames,
                                   frames_estimate=self.plan.info.frames_estimate, progress=progress)

    @torch.no_grad()
    def animate(self, source: preprocess.SourceFace, source_rgb: np.ndarray, extracted: Extracted, out: Path,
                paste_back: Path | None = None, progress: StageProgress | None = None) -> RunResult:
        """One prepared portrait (``source_rgb`` the image it came from, for paste-back) driven by
        ``extracted``: motion edit, conditions, sampling, outputs."""
        request, models, settings = self.request, self.models, self.request.settings
        own = portrait_motion(models, source) if request.edit.needs_portrait else None
        performance = edit_performance(extracted.performance, request.edit, own)
        if progress:
            progress(0, 1, "conditions")
        portrait = encode_portrait(models, source, (settings.height, settings.width), settings.noise_aug,
                                   settings.seed)
        conditions = build_conditions(portrait.tokens, performance.tokens, portrait.cond_latents, None, settings)
        if progress:
            progress(1, 1, "conditions")
        padded = sample_latents(models, conditions, portrait.ref_latents, settings,
                                progress=stage_progress(progress, "denoise"), keep_padding=True)
        del conditions
        write_outputs(request, models, padded, source.crop_bbox, source_rgb, self.plan.fps, out, paste_back,
                      audio=audio_source(request, self.plan), audio_offset=request.edit.start / self.plan.fps,
                      progress=progress)
        return RunResult(Path(out), Path(paste_back) if paste_back else None, int(padded.shape[0]) - 2 * settings.pad,
                         self.plan.fps, extracted.frames_without_face, source.warnings + extracted.warnings)


@dataclass
class BatchResult:
    """What a run over several portraits wrote, and which portraits failed (with the message)."""

    written: list[RunResult]
    failed: list[tuple[Path, str]]


def portrait_list(paths: list[Path]) -> list[Path]:
    """Image files and the images inside folders (sorted, not recursive), each once, in the order given."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        path = path.expanduser()
        if path.is_dir():
            for child in sorted(path.iterdir()):
                if child.is_file() and child.suffix.lower() in IMAGE_EXTENSIONS:
                    found.setdefault(child, None)
        elif path.is_file():
            found.setdefault(path, None)
        else:
            raise HPError(f"The portrait {path} does not exist.", hint="Check the --image paths.")
    if not found:
        raise HPError("No portrait images found in " + ", ".join(map(str, paths)) + ".",
                      hint=f"Give image files ({', '.join(IMAGE_EXTENSIONS)}) or folders holding them.")
    return list(found)


def batch_outputs(images: list[Path], out_dir: Path) -> dict[Path, Path]:
    """``<out_dir>/<portrait name>.mp4`` per portrait; two portraits of one name get ``-2``, ``-3`` ..."""
    outs: dict[Path, Path] = {}
    taken: set[str] = set()
    for image in images:
        name, n = image.stem, 1
        while name.lower() in taken:
            n += 1
            name = f"{image.stem}-{n}"
        taken.add(name.lower())
        outs[image] = out_dir / f"{name}.mp4"
    return outs


@torch.no_grad()
def run_many(request: RunRequest, images: list[Path], out_dir: Path,
             progress: StageProgress | None = None, log=print) -> BatchResult:
    """One performance (``request.video`` or ``request.motion``) drives every portrait in ``images``: it is
    extracted once, and ``<out_dir>/<portrait name>.mp4`` is written per portrait. A portrait that fails is
    reported and the others still run. ``request.image`` / ``request.out`` are ignored."""
    request = expanded(with_folder_preset(request))
    images = portrait_list(images)
    outs = batch_outputs(images, Path(out_dir).expanduser())
    for image, out in outs.items():  # every output checked before any work, like a single run's
        check_output_paths(replace(request, image=image, out=out, paste_back=None))
    plan = preflight(replace(request, image=images[0], out=outs[images[0]], paste_back=None))
    session = Session(request, plan)
    extracted = session.performance(progress)
    written, failed = [], []
    for k, image in enumerate(images):
        log(f"[{k + 1}/{len(images)}] {image} -> {outs[image]}")
        try:
            source_rgb = preprocess.read_image_file(image)
            written.append(session.animate(session.prepare(source_rgb), source_rgb, extracted, outs[image],
                                           None, progress))
        except HPError as err:
            failed.append((image, str(err)))
            log(f"error: {image}: {err}")
    return BatchResult(written, failed)


def check_new_output(path: Path, flag: str, overwrite: bool, inputs: list[tuple[str, Path]]) -> None:
    """An output file that is no input, in a writable folder, and new unless ``overwrite``."""
    for in_flag, in_path in inputs:
        if _same_file(path, Path(in_path).expanduser()):
            raise HPError(f"The output {flag} {path} is the input {in_flag} {in_path}; writing it would destroy "
                          "the input.", hint=f"Choose another name for {flag}.")
    if path.exists() and not overwrite:
        raise HPError(f"{flag} {path} already exists; it was left as it is.",
                      hint="Choose another name, or pass --overwrite to replace it.")
    check_writable_folder(path.resolve().parent, flag)
    clear_stale_partials(path.resolve().parent)  # left by a killed run


def performance_out(out: Path) -> Path:
    """``--out`` of `motion extract` / `motion edit`: a .safetensors path, checked before any work."""
    out = Path(out).expanduser()
    if out.suffix.lower() != PERFORMANCE_SUFFIX:
        raise HPError(f"--out must name a {PERFORMANCE_SUFFIX} file, got {out.name}.")
    return out


def motion_networks(models_dirs, preset: str, device: str | None, precision: str):
    """(the three motion networks, the face detector), verified and loaded: what making or editing a
    performance needs, without the UNet, DINO or VAE."""
    dev = _device(device)
    search_dirs = list(models_dirs or []) or weights.default_search_dirs(None)
    files = weights.preflight(weights.needed_ids(use_arcface=False, vae=False, networks=MOTION_NETWORKS),
                              search_dirs, preset=preset)
    models = load_models_from_dirs(search_dirs, preset=preset, device=dev, dtypes=precision_dtypes(precision, dev),
                                   components=MOTION_NETWORKS, with_vae=False)
    return models, preprocess.load_yolo_face(files["yoloface"], device=dev)


@torch.no_grad()
def extract_to_file(video: Path, out: Path, *, models_dirs: list[Path] | None = None, preset: str | None = "official",
                    device: str | None = None, precision: str = "auto", max_frames: int | None = None,
                    chunk: int = CHUNK, overwrite: bool = False, progress: StageProgress | None = None) -> Extracted:
    """`motion extract`: the clip's performance, written to ``out`` (.safetensors). Loads only the face
    detector and the three motion networks."""
    out, video = performance_out(out), Path(video).expanduser()
    check_new_output(out, "--out", overwrite, [("--video", video)])
    if preset is None:  # the models folder's own (a random-weights marker), else official
        preset = weights.locations.folder_preset(list(models_dirs or []) or weights.default_search_dirs(None))
    if preset not in PRESET_DIMS:
        raise HPError(f"Unknown preset {preset!r}.", hint=f"Use one of {', '.join(PRESET_DIMS)}.")
    info = probe_video(video)
    models, detector = motion_networks(models_dirs, preset, device, precision)
    extracted = extract_performance(Path(video), models, detector, chunk=chunk, fps=info.fps, max_frames=max_frames,
                                    frames_estimate=info.frames_estimate, progress=progress)
    save_performance(extracted.performance, out, overwrite=overwrite)
    return extracted


@torch.no_grad()
def edit_to_file(motion: Path, out: Path, edit: MotionEdit, *, image: Path | None = None,
                 models_dirs: list[Path] | None = None, device: str | None = None, precision: str = "auto",
                 overwrite: bool = False) -> Performance:
    """`motion edit`: a saved performance with ``edit`` baked in, written to ``out``. The portrait (``image``)
    is read only for the relative and still modes (its head pose through the motion networks)."""
    edit.validate()
    out = performance_out(out)
    inputs = [("--motion", Path(motion))] + ([("--image", Path(image))] if image else [])
    check_new_output(out, "--out", overwrite, inputs)
    perf = load_performance(motion)
    edit.validate(perf.frames)
    portrait = None
    if edit.needs_portrait:
        if image is None:
            raise HPError(f"pose mode {edit.pose_mode} / expression mode {edit.expression_mode} starts from the "
                          "portrait's own pose.", hint="Pass the portrait with --image.")
        source_rgb = preprocess.read_image_file(image)
        models, detector = motion_networks(models_dirs, perf.preset, device, precision)
        portrait = portrait_motion(models, preprocess.prepare_source(source_rgb, detector))
    edited = edit_performance(perf, edit, portrait)
    save_performance(edited, out, overwrite=overwrite)
    return edited


def audio_source(request: RunRequest, plan: Plan) -> Path | None:
    """The sound of the result: ``audio_file``, else the driving clip's when it has one; None without audio."""
    if not request.audio:
        return None
    if request.audio_file is not None:
        return Path(request.audio_file)
    if request.video is not None and plan.info is not None and plan.info.has_audio:
        return Path(request.video)
    return None


def write_outputs(request: RunRequest, models, padded: torch.Tensor, crop_bbox, source_rgb: np.ndarray, fps: float,
                  out: Path, paste_back: Path | None = None, *, audio_offset: float = 0.0,
                  progress: StageProgress | None = None, audio: Path | None = None) -> None:
    """Decode the padded latents (pad + F + pad) as the release does, a decode chunk at a time, straight into
    the video writers (and paste each chunk back into the source); both files appear only when both are
    complete."""
    pad = request.settings.pad
    n = int(padded.shape[0]) - 2 * pad
    writers = [VideoWriter(out, fps, audio=audio, frames=n, audio_offset=audio_offset)]
    if paste_back:
        writers.append(VideoWriter(paste_back, fps, audio=audio, frames=n, audio_offset=audio_offset))
    try:
        done = 0
        for part in iter_decoded(models, padded, request.settings.decode_chunk, pad=pad):
            frames = (part.numpy() * 255).astype(np.uint8)  # truncation, as the release writes frames
            writers[0].write(frames)
            if paste_back:
                writers[1].write(np.stack(list(preprocess.iter_paste_back(source_rgb, frames, crop_bbox))))
            if progress:
                done += frames.shape[0]
                progress(done, n, "decode")
        for writer in writers:
            writer.finish()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    committed: list[Path] = []
    try:
        for writer in writers:
            committed.append(writer.commit(overwrite=request.overwrite))
    except BaseException:
        for writer in writers:
            writer.abort()
        if not request.overwrite:  # both or neither: what this run just claimed is its own, made a moment ago
            for path in filter(None, committed):
                Path(path).unlink(missing_ok=True)
        raise


__all__ = ["BatchResult", "Extracted", "edit_to_file", "extract_to_file", "portrait_list", "run_many", "Plan", "RunRequest", "RunResult", "Session", "audio_source", "check_output_paths",
           "extract_performance", "motion_chunks", "motion_networks", "portrait_motion", "preflight", "run", "weight_files",
           "write_outputs"]
