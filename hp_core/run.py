"""The file-level run: an image and a driving video in, an mp4 out (what `python -m hp_core animate` does).

``run(RunRequest(...))`` checks everything knowable up front (``preflight``: settings, output paths, inputs,
weight files) in about a second, before the face detector or any network runs; then it streams: the video
is decoded twice a frame at a time (face tracking, then motion crops a chunk at a time), and the decoded
result goes to the video writer chunk by chunk, so host memory does not grow with the clip's frames.
Outputs are written to temporary files and renamed into place only when every one is complete; an output
path that is one of the inputs is refused. The stages themselves live in hp_core.pipeline.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from . import preprocess as PP
from . import video as V
from . import weights as W
from .errors import HPError
from .models import PRESET_DIMS, precision_dtypes
from .pipeline import (Settings, StageProgress, appearance_at, build_conditions, encode_appearance, encode_motion,
                       encode_reference, iter_decoded, load_models_from_dirs, reference_at, sample_latents,
                       stage_progress)


@dataclass
class RunRequest:
    """One animation run: input and output paths, models, device/precision and the sampling settings."""

    image: Path
    video: Path
    out: Path
    paste_back: Path | None = None
    models_dirs: list[Path] = field(default_factory=list)  # empty: $HP_MODELS_DIR or ./models/hunyuan_portrait
    settings: Settings = field(default_factory=Settings)
    preset: str = "official"
    device: str | None = None                              # None: cuda when available, else cpu
    precision: str = "auto"                                # see hp_core.models.precision
    vae: Path | None = None                                # an SVD VAE folder or file instead of the manifest's
    max_frames: int | None = None
    audio: bool = True                                     # copy the driving clip's audio
    use_arcface: bool = True


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
    """What preflight found: the source image, the clip's description, weight files, device and dtypes."""

    source: np.ndarray
    info: V.VideoInfo
    weights: dict[str, Path]
    search_dirs: list[Path]
    device: torch.device
    dtypes: dict[str, torch.dtype]


# ------------------------------------------------------------------------------------------ preflight

def _same_file(a: Path, b: Path) -> bool:
    """True when two paths name one file: equal after following symlinks, or the same inode (hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_paths(request: RunRequest) -> None:
    """Refuse an output that is an input (or the other output); make sure each output folder is writable."""
    outputs = [("--out", Path(request.out))]
    if request.paste_back is not None:
        outputs.append(("--paste-back", Path(request.paste_back)))
    inputs = [("--image", Path(request.image)), ("--video", Path(request.video))]
    if request.vae is not None:
        inputs.append(("--vae", Path(request.vae)))
    for flag, path in outputs:
        for in_flag, in_path in inputs:
            if _same_file(path.expanduser(), in_path.expanduser()):
                raise HPError(f"The output {flag} {path} is the input {in_flag} {in_path}; writing it would destroy "
                              "the input.", hint=f"Choose another name for {flag}.")
    if len(outputs) == 2 and _same_file(outputs[0][1].expanduser(), outputs[1][1].expanduser()):
        raise HPError(f"--out and --paste-back name the same file ({request.out}).",
                      hint="Give the pasted-back video its own name.")
    for flag, path in outputs:
        if path.expanduser().is_dir():
            raise HPError(f"The output {flag} {path} is a folder.", hint="Give a file name ending in .mp4.")
        parent = path.expanduser().resolve().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".hp-write-test-", dir=parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            raise HPError(f"Cannot write {flag} into the folder {parent} ({err.strerror or err}).",
                          hint="Choose a folder you can write to.") from err


def weight_files(request: RunRequest, search_dirs: list[Path]) -> dict[str, Path]:
    """Every weight file the run needs (the networks, the VAE or ``request.vae``, ArcFace when used, the face
    detector), present and structurally right, else ONE HPError listing every problem."""
    needed = W.needed_ids(use_arcface=request.use_arcface, vae=request.vae is None)
    paths = W.preflight(needed, search_dirs, vae=request.vae, preset=request.preset)
    if request.vae is not None:
        paths["vae"] = Path(request.vae).expanduser()
    return paths


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def preflight(request: RunRequest) -> Plan:
    """Everything knowable before heavy work, cheapest first: settings, output paths, image and video readable,
    weight files present and whole. Raises HPError at the first problem; the face detector has not run."""
    request.settings.validate()
    if request.preset not in PRESET_DIMS:
        raise HPError(f"Unknown preset {request.preset!r}.", hint=f"Use one of {', '.join(PRESET_DIMS)}.")
    if request.max_frames is not None and request.max_frames < 1:
        raise HPError(f"max_frames must be at least 1 (got {request.max_frames}).")
    check_output_paths(request)
    source = PP.read_image_file(request.image)
    info = V.probe_video(request.video)
    device = _device(request.device)
    dtypes = precision_dtypes(request.precision, device)
    search_dirs = list(request.models_dirs) or W.default_search_dirs(None)
    weights = weight_files(request, search_dirs)
    return Plan(source, info, weights, search_dirs, device, dtypes)


# ------------------------------------------------------------------------------------------ streaming

def motion_chunks(video: Path, track: PP.DrivingTrack, chunk: int,
                  max_frames: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Read the video again and yield (expression crops, head-pose crops), uint8 (n, 256, 256, 3), ``chunk``
    frames at a time; only one chunk of crops and one decoded frame are held."""
    motion, pose = [], []
    count = 0
    for t, frame in enumerate(V.iter_frames(video, max_frames=max_frames)):
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


@torch.no_grad()
def run(request: RunRequest, progress: StageProgress | None = None) -> RunResult:
    """Animate ``request.image`` with ``request.video``; writes ``request.out`` (and ``paste_back``)."""
    plan = preflight(request)
    settings, device = request.settings, plan.device
    detector = PP.load_yolo_face(plan.weights["yoloface"], device=device)
    arcface = PP.load_arcface(plan.weights["arcface"]) if request.use_arcface else None
    source = PP.prepare_source(plan.source, detector, arcface=arcface)
    faces = stage_progress(progress, "faces")
    total = plan.info.frames_estimate
    if request.max_frames is not None and total is not None:
        total = min(total, request.max_frames)
    track = PP.track_driving(V.iter_frames(request.video, max_frames=request.max_frames), detector,
                             progress=(lambda i: faces(i, max(total or 0, i))) if faces else None)
    del detector, arcface

    models = load_models_from_dirs(plan.search_dirs, preset=request.preset, device=device, dtypes=plan.dtypes,
                                   vae=request.vae)
    hw = (settings.height, settings.width)
    if progress:
        progress(0, 3, "conditions")
    appearance = encode_appearance(models, appearance_at(source, models.dims.appearance_size),
                                   torch.as_tensor(source.identity, dtype=torch.float32))
    ids = PP.intensity_ids(track.landmarks, settings.motion_chunk)
    tokens = [encode_motion(models, motion, pose, [ids[k]], chunk=settings.motion_chunk).tokens
              for k, (motion, pose) in enumerate(motion_chunks(request.video, track, settings.motion_chunk,
                                                               request.max_frames))]
    if progress:
        progress(2, 3, "conditions")
    ref, cond = encode_reference(models, reference_at(source, hw), settings.noise_aug, settings.seed)
    conditions = build_conditions(appearance, torch.cat(tokens), cond, None, settings)
    del tokens
    if progress:
        progress(3, 3, "conditions")
    padded = sample_latents(models, conditions, ref, settings, progress=stage_progress(progress, "denoise"),
                            keep_padding=True)
    del conditions
    write_outputs(request, models, padded, source.crop_bbox, plan, progress)
    return RunResult(Path(request.out), Path(request.paste_back) if request.paste_back else None,
                     int(padded.shape[0]) - 2 * settings.pad, plan.info.fps, len(track.missing), source.warnings + track.warnings)


def write_outputs(request: RunRequest, models, padded: torch.Tensor, crop_bbox, plan: Plan,
                  progress: StageProgress | None = None) -> None:
    """Decode the padded latents (pad + F + pad) as the release does, a decode chunk at a time, straight into
    the video writers (and paste each chunk back into the source); both files appear only when both are
    complete."""
    pad = request.settings.pad
    n = int(padded.shape[0]) - 2 * pad
    audio = Path(request.video) if request.audio and plan.info.has_audio else None
    writers = [V.VideoWriter(request.out, plan.info.fps, audio=audio, frames=n)]
    if request.paste_back:
        writers.append(V.VideoWriter(request.paste_back, plan.info.fps, audio=audio, frames=n))
    try:
        done = 0
        for part in iter_decoded(models, padded, request.settings.decode_chunk, pad=pad):
            frames = (part.numpy() * 255).astype(np.uint8)  # truncation, as the release writes frames
            writers[0].write(frames)
            if request.paste_back:
                writers[1].write(np.stack(list(PP.iter_paste_back(plan.source, frames, crop_bbox))))
            if progress:
                done += frames.shape[0]
                progress(done, n, "decode")
        for writer in writers:
            writer.finish()
        for writer in writers:
            writer.commit()
    except BaseException:
        for writer in writers:
            writer.abort()
        raise


__all__ = ["Plan", "RunRequest", "RunResult", "check_output_paths", "motion_chunks", "preflight", "run",
           "weight_files", "write_outputs"]
