"""Verification: a file is usable when its size and sha256 equal the published ones, or, where nothing
is published, when it is whole and its structure is that of its component (keys and shapes, ONNX
inputs/outputs, the detector's call). Only then is it pinned in the lock, so later checks are cheap.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import HPError
from . import lock
from . import locations
from . import manifest
from . import structure
from .messages import missing_message

_HASH_CHUNK = 8 << 20


def sha256_file(path: str | os.PathLike, *, progress: bool = True) -> str:
    """Hex sha256 of a file, with a progress bar for large files."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    bar = None
    if progress and size > (256 << 20):
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest()


@dataclass
class VerifyResult:
    """Outcome of checking one file: state is ok | missing | bad | bundled."""

    id: str
    state: str
    path: Path | None = None
    base: Path | None = None
    sha256: str | None = None
    message: str = ""
    reason: str = ""
    preset: str | None = None
    origin: str | None = None
    hashed: bool = False          # the content was read and hashed by this check (not trusted from a pin)
    pinned_at: str | None = None  # when the pin this check relied on was made

    @property
    def ok(self) -> bool:
        """True when the file can be used."""
        return self.state in ("ok", "bundled")


def folder_preset(base: Path, preset: str | None) -> str:
    """The preset a folder's networks are checked against: the caller's, else a random-weights folder's
    marker, else the release's ('official')."""
    if preset:
        return preset
    marker = locations.is_random_dir(base)
    return str(marker.get("preset")) if marker and marker.get("preset") not in (None, "unknown") else "official"


def _size_problem(path: Path, size: int | None) -> str | None:
    actual = path.stat().st_size
    if actual == 0:
        return "the file is empty"
    if size is None or actual == size:
        return None
    if actual < size:
        return f"it is truncated ({actual} of {size} bytes)"
    return f"it has the wrong size ({actual} bytes, expected {size})"


def _bad(entry: manifest.WeightEntry, base: Path, path: Path, why: str, *, wrong_file: bool = False) -> VerifyResult:
    what = "is not the right file" if wrong_file else "is damaged"
    msg = (f"The {entry.component} weights file {path} {what}: {why}. It was not loaded. "
           f"Replace it with {entry.url} at {(base / entry.local_path).resolve()} "
           f"(`python -m hp_core weights download` fetches it).")
    return VerifyResult(entry.id, "bad", path, base, None, msg, why)


# What `weights verify` says of a file it did not re-read: the cheap check trusts size and modification time.
TRUSTED_PIN = ("size and modification time match its pin ({when}); content not re-read "
               "(`weights verify --full` re-hashes it)")

# Files checked in this process, keyed by path with their size and mtime_ns: a read-only models folder
# keeps no pins, and a multi-GB file should be read once per process, not once per load. Bounded by the
# number of manifest files times the folders searched (and presets, for structure).
_HASHED: dict[str, tuple[int, int, str]] = {}
_STRUCTURE_OK: set[tuple[str, int, int, str]] = set()


def verify(entry_id: str, search_dirs, *, full: bool = False, repin: bool = False, etag: str | None = None,
           origin: str | None = None, progress: bool = True, preset: str | None = None,
           pin: bool = True) -> VerifyResult:
    """Check the first copy of ``entry_id`` found and pin it when it proves good (``pin=False``: check only).

    Published size/sha256 (the manifest) decide for the published file; otherwise the lock's pin, and
    for a file not yet pinned its integrity and its structure against ``preset`` (default: the folder's
    random-weights marker, else 'official'). Without ``full`` a file whose size and mtime equal its pin is
    not re-hashed. ``repin`` forgets the old pin (a file replaced on purpose). ``etag`` is the Hub's etag
    of a fresh download (the sha256 of LFS files).
    """
    entry = manifest.get_entry(entry_id)
    found = locations.locate(entry, search_dirs)
    if found is None:
        if entry.bundled and (manifest.CONFIG_DIR / entry.bundled).is_file():
            return VerifyResult(entry.id, "bundled", manifest.CONFIG_DIR / entry.bundled, None, None,
                                "the copy shipped with the pack is used")
        return VerifyResult(entry.id, "missing", None, None, None, missing_message([entry], search_dirs), "missing")
    base, path, published = found
    rel = path.relative_to(base).as_posix()
    # a release folder inside a models folder carries its own random-weights marker, if any
    home = base / locations.RELEASE_DIR if rel.startswith(locations.RELEASE_DIR + "/") else base
    use_preset = folder_preset(home, preset)
    random = locations.is_random_dir(home) is not None
    m_size, m_sha = (entry.size, entry.sha256) if published and not random else (None, None)
    old = None if repin else lock.read_lock(base)["files"].get(rel)
    size = m_size or (old or {}).get("size")
    sha = m_sha or (old or {}).get("sha256")
    problem = _size_problem(path, size)
    if problem:
        return _bad(entry, base, path, problem)
    st = path.stat()
    same_as_pin = bool(not full and old and sha and old.get("sha256") == sha and old.get("size") == st.st_size
                       and old.get("mtime_ns") == st.st_mtime_ns)
    if same_as_pin and (m_sha or old.get("preset") == use_preset):
        when = old.get("pinned_at") or "earlier"
        return VerifyResult(entry.id, "ok", path, base, sha, TRUSTED_PIN.format(when=when), preset=use_preset,
                            origin=old.get("origin"), pinned_at=old.get("pinned_at"))
    memo = _HASHED.get(str(path))
    trusted = not full and memo is not None and memo[:2] == (st.st_size, st.st_mtime_ns)
    digest = sha if same_as_pin else memo[2] if trusted else sha256_file(path, progress=progress)
    if etag and re.fullmatch(r"[0-9a-f]{64}", etag) and digest != etag:
        return _bad(entry, base, path, f"its sha256 {digest[:12]}... differs from the Hub's {etag[:12]}...")
    if sha and digest != sha:
        return _changed(entry, base, path, digest, m_sha, (old or {}).get("pinned_at"))
    if not m_sha:  # nothing published vouches for the content: it must at least be what its role needs
        if not (trusted or same_as_pin):
            why = structure.check_structure(path, entry.format)
            if why:
                return _bad(entry, base, path, why)
        key = (str(path), st.st_size, st.st_mtime_ns, use_preset)
        if key not in _STRUCTURE_OK:
            why = structure.check_component(entry, path, use_preset)
            if why:
                return _bad(entry, base, path, why, wrong_file=True)
            _STRUCTURE_OK.add(key)
    _HASHED[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    res = VerifyResult(entry.id, "ok", path, base, digest, "verified" if sha else "verified and pinned",
                       preset=use_preset, origin=origin or (old or {}).get("origin"),
                       hashed=not (same_as_pin or trusted), pinned_at=(old or {}).get("pinned_at"))
    if pin:
        confirm(res)
    elif not sha:
        res.message = "verified"
    return res


def _changed(entry: manifest.WeightEntry, base: Path, path: Path, digest: str, published: str | None,
             pinned_at: str | None) -> VerifyResult:
    if not published:
        return _bad(entry, base, path, f"its content changed since it was verified ({pinned_at or 'earlier'}); if "
                    f"you replaced it on purpose, run `python -m hp_core weights verify --repin`")
    return _bad(entry, base, path, f"its sha256 {digest[:12]}... differs from the published {published[:12]}...")


def check_content(res: VerifyResult, digest: str) -> None:
    """Raise HPError (verify's message) when ``digest``, the sha256 of what was just read from ``res.path``,
    is not the content ``res`` vouched for: a file replaced after it was pinned, keeping its size and
    modification time, passes the cheap check but not this one."""
    if res.sha256 is None or digest == res.sha256 or res.path is None or res.base is None:
        if res.path is not None:
            st = res.path.stat()
            _HASHED[str(res.path)] = (st.st_size, st.st_mtime_ns, digest)
        return
    entry = manifest.get_entry(res.id)
    _HASHED.pop(str(res.path), None)
    published = entry.sha256 if locations.is_random_dir(res.base) is None and entry.sha256 == res.sha256 else None
    raise HPError(_changed(entry, res.base, res.path, digest, published, res.pinned_at).message)


def confirm(res: VerifyResult) -> None:
    """Pin a file that verify(pin=False) passed, once it has proved itself (e.g. a strict load)."""
    if res.state == "ok" and res.base is not None and res.path is not None and res.sha256:
        lock.pin(res.base, res.path.relative_to(res.base).as_posix(), res.path, res.sha256, res.origin, res.preset)


def ensure_verified(entry_id: str, search_dirs, **kwargs) -> VerifyResult:
    """verify(), raising HPError unless the file is present and usable."""
    res = verify(entry_id, search_dirs, **kwargs)
    if not res.ok:
        raise HPError(res.message)
    return res


@dataclass
class WeightStatus:
    """One row of `weights status`: state is ok | unverified | missing | bad | bundled."""

    id: str
    component: str
    required: bool
    gated: bool
    state: str
    local_path: str
    path: Path | None
    size: int | None
    detail: str = ""


def status(search_dirs, *, include_optional: bool = True) -> list[WeightStatus]:
    """A cheap look at every manifest file (no hashing): present, pinned, plausibly whole."""
    rows = []
    for entry in manifest.load_manifest():
        if not entry.required and not include_optional:
            continue
        found = locations.locate(entry, search_dirs)
        if found is None:
            if entry.bundled and (manifest.CONFIG_DIR / entry.bundled).is_file():
                rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, "bundled",
                                         entry.local_path, manifest.CONFIG_DIR / entry.bundled, None,
                                         "copy shipped with the pack"))
            else:
                rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, "missing",
                                         entry.local_path, None, None, entry.url))
            continue
        base, path, published = found
        rel = path.relative_to(base).as_posix()
        marker = locations.is_random_dir(base)
        pin = lock.read_lock(base)["files"].get(rel)
        size = (entry.size if published and not marker else None) or (pin or {}).get("size")
        st = path.stat()
        problem = _size_problem(path, size)
        if problem:
            state, detail = "bad", problem
        elif pin and pin.get("size") == st.st_size and pin.get("mtime_ns") == st.st_mtime_ns:
            state, detail = "ok", "pinned " + str(pin.get("pinned_at", ""))
        else:
            state, detail = "unverified", "run `weights verify`" if not pin else "changed since pinned"
        if marker:
            detail += f" (random weights, preset {marker.get('preset')})"
        rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, state, rel, path,
                                 st.st_size, detail))
    return rows
