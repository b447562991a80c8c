"""The lock file: per models folder, the size/sha256 of every file once it has proved good.

``weights.lock.json`` = {"version": 1, "files": {relative path: {size, sha256, mtime_ns, pinned_at, origin,
preset}}}. A file is pinned only after it proved usable (hash equal to the published one, or its structure
matching its component; loading paths pin only after a strict load). A damaged lock only loses pins: a file
that is not a lock at all is set aside (renamed ``weights.lock.json.damaged-<date-time>``, with a note) and
rebuilt, and entries of the wrong shape are dropped, so their files are verified again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

LOCK_NAME = "weights.lock.json"

log = logging.getLogger(__name__)
_NOTED: set[str] = set()  # damaged locks already reported by this process (a read-only folder keeps them)


def _entry_ok(entry) -> bool:
    """True when a pin has the fields and types verification relies on."""
    if not isinstance(entry, dict):
        return False
    size, sha, mtime = entry.get("size"), entry.get("sha256"), entry.get("mtime_ns")
    if type(size) is not int or type(mtime) is not int or size < 0:
        return False
    if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
        return False
    return all(entry.get(k) is None or isinstance(entry.get(k), str) for k in ("pinned_at", "origin", "preset"))


def _set_aside(path: Path, why: str, good: dict | None) -> None:
    """Rename a damaged lock out of the way (keeping it for inspection) and write the usable pins back."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return  # another process set it aside first
    except OSError as err:
        key = str(path)
        if key not in _NOTED:
            _NOTED.add(key)
            log.warning(f"note: the lock file {path} is damaged ({why}) and could not be set aside "
                        f"({err.strerror or err}); its pins are ignored and the files are verified again.")
        return
    if good:
        _write_lock(path.parent, {"version": 1, "files": good})
    log.warning(f"note: the lock file {path} was damaged ({why}); it was set aside as {aside.name} and is "
                f"rebuilt (the affected files are verified again).")


def read_lock(base: str | os.PathLike) -> dict:
    """The pins of a models folder: {"version": 1, "files": {local_path: {size, sha256, mtime_ns, ...}}}.

    Only well-formed pins are returned; a damaged lock is set aside and rebuilt (see the module's doc)."""
    path = Path(base) / LOCK_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {"version": 1, "files": {}}  # missing or unreadable: the files are re-checked and pinned again
    try:
        data = json.loads(text)
    except ValueError:
        _set_aside(path, "not valid JSON", None)
        return {"version": 1, "files": {}}
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        _set_aside(path, "not a lock of pinned files", None)
        return {"version": 1, "files": {}}
    files = data["files"]
    good = {rel: entry for rel, entry in files.items() if _entry_ok(entry)}
    if len(good) != len(files):
        bad = sorted(set(files) - set(good))
        _set_aside(path, f"{len(bad)} entr{'y' if len(bad) == 1 else 'ies'} of the wrong shape, e.g. {bad[0]}", good)
    return {**data, "files": good}


def _write_lock(base: Path, data: dict) -> bool:
    tmp = base / f".{LOCK_NAME}.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, base / LOCK_NAME)
        return True
    except OSError:
        try:
            tmp.unlink(missing_ok=True)  # a full disk must not leave a half-written lock behind
        except OSError:
            pass
        return False  # read-only shared folders: verification still works, pins are not kept


def pin(base: Path, rel: str, path: Path, sha: str, origin: str | None, preset: str | None = None) -> None:
    """Record that ``base/rel`` (with this sha256) proved good."""
    lock = read_lock(base)
    st = path.stat()
    lock["files"][rel] = {"size": st.st_size, "sha256": sha, "mtime_ns": st.st_mtime_ns,
                          "pinned_at": time.strftime("%Y-%m-%d %H:%M:%S"), "origin": origin, "preset": preset}
    _write_lock(base, lock)


def unpin(base: Path, rel: str) -> None:
    """Forget the pin of ``base/rel`` (a file deleted or replaced)."""
    lock = read_lock(base)
    if lock["files"].pop(rel, None) is not None:
        _write_lock(base, lock)
