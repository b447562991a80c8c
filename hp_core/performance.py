"""A performance: the driving side of a run, independent of the portrait, kept as data and saved to disk.

The driving clip's face crops go through the expression encoder, the head-pose network and the
intensity-aware refiner once; what comes out (the refined expression tokens, the head rotation in degrees,
the translation the release multiplies by zero, the intensity ids used per chunk) is a ``Performance``. The
UNet's motion tokens are made from it only at sampling time (``Performance.tokens``), so a performance can
be edited (hp_core.motion_edit), saved (``save_performance``) and drive any number of portraits.

The file is safetensors, never a pickle: tensors ``expression`` (F, N, D) float32, ``rotation`` (F, 3)
float32 degrees, ``translation`` (F, 3) float32, ``intensity_ids`` (chunks, 2) int32; metadata ``format``,
``version``, ``fps``, ``frames``, ``chunk``, ``preset``, ``source_sha256`` (of the clip it came from) and
``pack_version``.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .errors import HPError
from .models.motion_refiner import CHUNK, motion_tokens

FORMAT = "hunyuanportrait.performance"
VERSION = 1
SUFFIX = ".safetensors"
TENSORS = ("expression", "rotation", "translation", "intensity_ids")


@dataclass(frozen=True)
class Performance:
    """The driving side of a run: everything the sampler needs from the clip, nothing from the portrait."""

    expression: torch.Tensor        # (F, N, D) float32 refined expression tokens (before the pose is appended)
    rotation: torch.Tensor          # (F, 3) float32 head rotation in degrees, each in -180..180
    translation: torch.Tensor       # (F, 3) float32 head translation (the release multiplies it by zero)
    intensity_ids: torch.Tensor     # (chunks, 2) int32 (head id, expression id) the refiner used per chunk
    fps: float = 25.0
    chunk: int = CHUNK
    preset: str = "official"
    source_sha256: str = ""         # sha256 of the driving clip, when it came from a file
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def frames(self) -> int:
        return int(self.expression.shape[0])

    @property
    def tokens(self) -> torch.Tensor:
        """The UNet's motion tokens (F, N, D + 6): expression, the rotation on every token, zeros."""
        return motion_tokens(self.expression, self.rotation)

    @property
    def ids(self) -> list[tuple[int, int]]:
        """The intensity ids as (head, expression) pairs, one per chunk."""
        return [(int(h), int(e)) for h, e in self.intensity_ids.tolist()]

    def problem(self) -> str | None:
        """What is wrong with the tensors' shapes, types or values, or None."""
        f = self.expression.shape[0] if self.expression.dim() == 3 else -1
        if f < 1:
            return f"expression has shape {tuple(self.expression.shape)}, expected (frames, tokens, width)"
        for name, t, shape in (("rotation", self.rotation, (f, 3)), ("translation", self.translation, (f, 3))):
            if tuple(t.shape) != shape:
                return f"{name} has shape {tuple(t.shape)}, expected {shape}"
        chunks = -(-f // self.chunk) if self.chunk >= 1 else -1
        if self.chunk < 1 or tuple(self.intensity_ids.shape) != (chunks, 2):
            return (f"intensity_ids has shape {tuple(self.intensity_ids.shape)}, expected ({chunks}, 2) for "
                    f"{f} frames in chunks of {self.chunk}")
        for name in ("expression", "rotation", "translation"):
            t = getattr(self, name)
            if t.dtype != torch.float32:
                return f"{name} is {str(t.dtype).replace('torch.', '')}, expected float32"
            if not bool(torch.isfinite(t).all()):
                return f"{name} holds values that are not finite numbers"
        if self.intensity_ids.dtype != torch.int32:
            return "intensity_ids is not int32"
        if not math.isfinite(self.fps) or self.fps <= 0:
            return f"fps is {self.fps}"
        return None


def from_parts(expression: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor | None,
               ids, *, fps: float, chunk: int, preset: str, source_sha256: str = "") -> Performance:
    """A Performance from encoder outputs (any float dtype, any device): float32 on the CPU."""
    expression = expression.detach().float().cpu()
    rotation = rotation.detach().float().cpu()
    translation = (torch.zeros_like(rotation) if translation is None else translation.detach().float().cpu())
    id_tensor = torch.as_tensor([[int(h), int(e)] for h, e in ids], dtype=torch.int32).reshape(-1, 2)
    return Performance(expression, rotation, translation, id_tensor, float(fps), int(chunk), str(preset),
                       str(source_sha256))


def concat(parts: list[Performance]) -> Performance:
    """Performances of consecutive chunks of one clip (each a whole number of chunks but the last) as one."""
    first = parts[0]
    return Performance(torch.cat([p.expression for p in parts]), torch.cat([p.rotation for p in parts]),
                       torch.cat([p.translation for p in parts]), torch.cat([p.intensity_ids for p in parts]),
                       first.fps, first.chunk, first.preset, first.source_sha256)


# ------------------------------------------------------------------------------------------------ files

def _metadata(perf: Performance) -> dict[str, str]:
    return {"format": FORMAT, "version": str(VERSION), "fps": repr(float(perf.fps)), "frames": str(perf.frames),
            "chunk": str(perf.chunk), "preset": perf.preset, "source_sha256": perf.source_sha256,
            "pack_version": __version__}


def save_performance(perf: Performance, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``perf`` to ``path`` (.safetensors) atomically; an existing file is refused unless ``overwrite``."""
    path = Path(path).expanduser()
    why = perf.problem()
    if why:
        raise HPError(f"This performance cannot be saved: {why}.")
    if path.suffix.lower() != SUFFIX:
        raise HPError(f"A performance file must end in {SUFFIX}, got {path.name}.",
                      hint=f"Name it e.g. {path.with_suffix(SUFFIX).name}.")
    if path.exists() and not overwrite:
        raise HPError(f"{path} already exists; it was left as it is.",
                      hint="Choose another name, or pass --overwrite to replace it.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        tensors = {name: getattr(perf, name).contiguous() for name in TENSORS}
        save_file(tensors, tmp, metadata=_metadata(perf))
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # claims the name atomically: a file that appeared meanwhile is kept
            except FileExistsError:
                raise HPError(f"{path} appeared while this performance was being written; it was left as it is.",
                              hint="Choose another name, or pass --overwrite to replace it.") from None
            Path(tmp).unlink(missing_ok=True)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _refuse(path: Path, what: str, hint: str) -> HPError:
    return HPError(f"{path} cannot be used as a performance: {what}.", hint=hint)


def load_performance(path: str | os.PathLike, *, preset: str | None = None) -> Performance:
    """Read a performance file written by ``save_performance``; anything else is refused with a message that
    says what the file is and what to do (never a traceback, never an unpickling). ``preset``: the models'
    preset the performance must match."""
    path = Path(path).expanduser()
    extract = "Extract it again: `python -m hp_core motion extract --video CLIP --out PERF.safetensors`."
    if not path.is_file():
        raise HPError(f"The performance file {path} does not exist.", hint="Check the path.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            names = set(f.keys())
            if meta.get("format") != FORMAT:
                kind = (f"a safetensors file of {len(names)} tensors (model weights?), not a performance"
                        if names else "an empty safetensors file")
                raise _refuse(path, kind, "Pick a file made by Save Performance or `motion extract`.")
            try:
                version = int(meta.get("version", ""))
            except ValueError:
                raise _refuse(path, f"its version {meta.get('version')!r} is not a number", extract) from None
            if version > VERSION:
                raise _refuse(path, f"it was written by a newer version of the pack (performance format "
                              f"{version}, pack {meta.get('pack_version', '?')}; this pack reads up to {VERSION})",
                              "Update this node pack, or extract the performance again with this version.")
            missing = [n for n in TENSORS if n not in names]
            if missing:
                raise _refuse(path, f"it lacks the tensor(s) {', '.join(missing)}", extract)
            tensors = {n: f.get_tensor(n) for n in TENSORS}
    except HPError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _refuse(path, f"it is damaged or not a safetensors file ({str(err).splitlines()[0][:160]})",
                      extract) from None
    try:
        fps, frames, chunk = float(meta["fps"]), int(meta["frames"]), int(meta["chunk"])
    except (KeyError, ValueError):
        raise _refuse(path, "its fps, frames or chunk record is missing or not a number", extract) from None
    perf = Performance(tensors["expression"], tensors["rotation"], tensors["translation"], tensors["intensity_ids"],
                       fps, chunk, meta.get("preset", ""), meta.get("source_sha256", ""))
    why = perf.problem() or (None if perf.frames == frames else
                             f"it records {frames} frames but holds {perf.frames}")
    if why:
        raise _refuse(path, f"it is damaged: {why}", extract)
    if preset is not None and perf.preset != preset:
        raise _refuse(path, f"it was made with the {perf.preset!r} models, and the {preset!r} models are loaded",
                      f"Load the {perf.preset} models, or extract the performance again with the {preset} ones.")
    return perf


__all__ = ["FORMAT", "VERSION", "Performance", "concat", "from_parts", "load_performance", "save_performance"]
