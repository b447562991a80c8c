"""Loading a verified checkpoint, through a safetensors cache so a .pth pickle is unpickled only once.

The .pth is read once (torch.load weights_only) and written as safetensors next to the models
(<models>/.hp_cache/), or in $HP_CACHE_DIR / ~/.cache/hunyuan_portrait when that is read-only; later
loads read the safetensors copy. Reading and confirming are two steps, so the file is pinned and cached
only once the caller's strict load succeeded. When the .pth itself is read and the check before trusted its
pin (same size and modification time), its bytes are hashed too: a file replaced since it was pinned is
refused with verify's message rather than loaded. Where no cache folder can be written (a full disk, a
read-only folder and home) the run goes on without a copy, with a note.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import save_file

from ..checkpoint import read_state_dict
from ..errors import HPError
from . import manifest
from . import verification

log = logging.getLogger(__name__)

CACHE_SUBDIR = ".hp_cache"
ENV_CACHE_DIR = "HP_CACHE_DIR"


def _cache_dirs(base: Path, cache_dir) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    user = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "hunyuan_portrait"
    return [base / CACHE_SUBDIR, Path(user)]


def _cache_stem(res: verification.VerifyResult) -> str:
    return res.path.relative_to(res.base).as_posix().replace("/", "__")


def cache_path(res: verification.VerifyResult, cache_root: Path) -> Path:
    """Where the safetensors copy of a verified .pth goes: keyed by the file's size, mtime and sha256."""
    st = res.path.stat()
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{res.sha256}".encode()).hexdigest()[:16]
    return cache_root / f"{_cache_stem(res)}.{key}.safetensors"


def _save_safetensors(state: dict, path: Path, metadata: dict) -> None:
    storages, out = set(), {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr() if v.numel() else None
        # safetensors refuses tensors that share memory; such copies are rare and small.
        out[k] = v.clone() if ptr is not None and ptr in storages else v.contiguous()
        if ptr is not None:
            storages.add(ptr)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        save_file(out, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@dataclass
class Checkpoint:
    """A verified file's state dict, not yet confirmed (pinned and cached) by a successful load."""

    state: dict
    result: verification.VerifyResult
    from_cache: bool
    cache_dir: str | os.PathLike | None = None


def read_checkpoint(entry_id: str, search_dirs, *, cache_dir: str | os.PathLike | None = None,
                    preset: str | None = None) -> Checkpoint:
    """Verify (without pinning) and read a .pth/.safetensors file (or its cached copy) into CPU tensors.

    A damaged or wrong file raises HPError and is never unpickled. Call ``confirm_checkpoint`` after the
    strict load succeeded: only then is the file pinned and its cache written.
    """
    entry = manifest.get_entry(entry_id)
    if entry.format not in ("pth", "safetensors"):
        raise HPError(f"{entry.local_path} is a {entry.format} file, not a checkpoint of tensors.")
    res = verification.verify(entry_id, search_dirs, preset=preset, pin=False)
    if not res.ok:
        raise HPError(res.message)
    if entry.format == "safetensors" or res.path.suffix == ".safetensors":
        return Checkpoint(read_state_dict(res.path, component=entry.component), res, True, cache_dir)
    for root in _cache_dirs(res.base, cache_dir):
        cached = cache_path(res, root)
        if cached.is_file():
            try:
                return Checkpoint(read_state_dict(cached, component=entry.component), res, True, cache_dir)
            except HPError:
                cached.unlink(missing_ok=True)  # a damaged cache is rebuilt from the verified .pth
    if not res.hashed:  # the pin was trusted: the bytes about to be loaded must be the pinned ones
        verification.check_content(res, verification.sha256_file(res.path))
    return Checkpoint(read_state_dict(res.path, component=entry.component), res, False, cache_dir)


def confirm_checkpoint(ckpt: Checkpoint) -> None:
    """The checkpoint loaded strictly: pin its file and, for a .pth, keep the safetensors copy."""
    verification.confirm(ckpt.result)
    if ckpt.from_cache:
        return
    res = ckpt.result
    st = res.path.stat()
    meta = {"source": res.path.relative_to(res.base).as_posix(), "source_size": str(st.st_size),
            "source_mtime_ns": str(st.st_mtime_ns), "source_sha256": res.sha256 or ""}
    stem = _cache_stem(res)
    failures = []
    for root in _cache_dirs(res.base, ckpt.cache_dir):
        cached = cache_path(res, root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            _save_safetensors(ckpt.state, cached, meta)
        except Exception as err:  # noqa: BLE001 - OSError, or safetensors' own error wrapping one (full disk)
            if not isinstance(err, OSError) and type(err).__name__ != "SafetensorError":
                raise
            failures.append((root, err))
            continue  # not writable: try the next cache folder, else keep no copy
        for old in root.glob(f"{stem}.*.safetensors"):
            if old != cached and re.fullmatch(r"[0-9a-f]{16}", old.name[len(stem) + 1:-12]):
                old.unlink(missing_ok=True)
        break
    else:
        if failures:
            full = any(getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(e)
                       for _, e in failures)
            why = "no space left on the disk" if full else "; ".join(
                f"{root}: {getattr(e, 'strerror', None) or e}" for root, e in failures)
            log.warning(f"note: no safetensors copy of {res.path.name} could be kept ({why}); it was loaded "
                        f"without the cache and is read from the .pth again next time (free some space, or set "
                        f"${ENV_CACHE_DIR} to a writable folder, for faster loads).")
