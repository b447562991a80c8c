"""The lock file: per models folder, the size/sha256 of every file once it has proved good.

``weights.lock.json`` = {"version": 1, "files": {relative path: {size, sha256, mtime_ns, pinned_at, origin,
preset}}}. A file is pinned only after it proved usable (hash equal to the published one, or its structure
matching its component; loading paths pin only after a strict load). A damaged lock only loses pins.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

LOCK_NAME = "weights.lock.json"


def read_lock(base: str | os.PathLike) -> dict:
    """The pins of a models folder: {"version": 1, "files": {local_path: {size, sha256, mtime_ns, ...}}}."""
    path = Path(base) / LOCK_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            return data
    except (OSError, ValueError):
        pass  # missing or damaged: the files are re-checked and pinned again
    return {"version": 1, "files": {}}


def _write_lock(base: Path, data: dict) -> bool:
    try:
        tmp = base / f".{LOCK_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, base / LOCK_NAME)
        return True
    except OSError:
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
