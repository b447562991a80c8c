"""Downloading from the Hugging Face Hub: only what is missing or damaged, verified before it is kept.

Each file is asked for at its path in its repository (``filename``) and fetched into a staging folder
(``STAGING`` inside the models folder, laid out like it: hf_hub_download's local_dir is the part of
``local_path`` before ``filename``). Only once the fetched file is whole and verified does it take its
place at ``local_path``; a file that was there before (damaged, or the user's own) is moved aside, never
deleted, and the log says where. An interrupted or failed download therefore never costs a file.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ..errors import HPError
from . import lock
from . import locations
from . import manifest
from . import verification
from .messages import gated_message, missing_message


def offline_requested() -> bool:
    """True when HF_HUB_OFFLINE asks huggingface_hub not to touch the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants  # guarded: a missing huggingface_hub means not offline, not a crash
        return bool(getattr(constants, "HF_HUB_OFFLINE", False))
    except ImportError:
        return False


def _is_connection_error(err: BaseException) -> bool:
    """Network trouble (no connection, DNS, timeout, offline mode) rather than an answer from the Hub."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        name, module = type(err).__name__, type(err).__module__
        if name in ("OfflineModeIsEnabled", "LocalEntryNotFoundError"):
            return True
        if isinstance(err, (ConnectionError, TimeoutError)):
            return True
        if module.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3") and \
                any(s in name for s in ("Connect", "Timeout", "Network", "Proxy", "Protocol")):
            return True
        err = err.__cause__ or err.__context__
    return False


class NoConnection(ConnectionError):
    """The Hub could not be reached at all (name lookup, refused or timed-out connection)."""


def _is_unreachable(err: BaseException) -> bool:
    """The connection could not even be made (DNS, refused, connect timeout): retrying will not help soon.
    Errors on an open connection (read timeouts, dropped transfers) are not this: those are retried."""
    name, module = type(err).__name__, type(err).__module__
    if module.split(".")[0] in ("httpx", "httpx2", "httpcore", "requests", "urllib3"):
        return "Connect" in name or "NameResolution" in name or "NewConnection" in name
    return isinstance(err, (ConnectionRefusedError, socket.gaierror))


# huggingface_hub logs each failed request and then retries it 5 times over about 25 s before it gives up
# (no setting turns this off). Until the Hub has answered once, the first request that cannot even connect
# ends the download at once: this filter sees huggingface_hub's "... thrown while requesting ..." record,
# emitted inside its except block, and raises NoConnection from the request's error instead of retrying.
_HTTP_LOGGERS = ("huggingface_hub.utils._http",)


class _FailFast(logging.Filter):
    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()
        self.active = True  # off once the Hub has answered: later hiccups get huggingface_hub's retries

    def filter(self, record: logging.LogRecord) -> bool:
        if self.active and record.thread == self.thread and "thrown while requesting" in str(record.msg):
            err = sys.exc_info()[1]
            if err is not None and _is_unreachable(err):
                host = str(record.msg).rsplit(" ", 1)[-1].split("/")[2] if "://" in str(record.msg) else "the Hub"
                raise NoConnection(f"cannot connect to {host}: {_short(err)}") from err
        return True


@contextlib.contextmanager
def _fail_fast():
    guard = _FailFast()
    loggers = [logging.getLogger(name) for name in _HTTP_LOGGERS]
    for logger in loggers:
        logger.addFilter(guard)
    try:
        yield guard
    finally:
        for logger in loggers:
            logger.removeFilter(guard)


def _hub_download(**kwargs) -> str:
    import huggingface_hub  # attribute looked up per call, so tests can patch it
    return huggingface_hub.hf_hub_download(**kwargs)


def _hub_etag(local_dir: Path, filename: str) -> str | None:
    """The etag huggingface_hub recorded for a file it downloaded into local_dir (sha256 for LFS files)."""
    meta = local_dir / ".cache" / "huggingface" / "download" / (filename + ".metadata")
    try:
        lines = meta.read_text(encoding="utf-8").splitlines()
        return lines[1].strip().strip('"') if len(lines) > 1 else None
    except OSError:
        return None


STAGING = ".downloading"


def _local_dir(entry: manifest.WeightEntry, stage: Path) -> Path:
    return stage / entry.local_dir_prefix if entry.local_dir_prefix else stage


def set_aside(path: Path) -> Path:
    """Rename ``path`` to a free ``<name>.replaced-<date-time>[-N]`` beside it and return the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        aside = path.with_name(f"{path.name}.replaced-{stamp}" + (f"-{n}" if n else ""))
        if not aside.exists():
            os.rename(path, aside)
            return aside
    raise HPError(f"Could not move {path} aside: too many earlier copies beside it.",
                  hint="Remove the old *.replaced-* files there.")


def _install(entry: manifest.WeightEntry, staged: Path, local_dir: Path, dest: Path,
             log: Callable[[str], None]) -> Path:
    """Put a verified download at its place in ``dest``; an existing file there is moved aside first."""
    target = dest / entry.local_path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        aside = set_aside(target)
        log(f"Your previous {entry.local_path} was kept as {aside} (delete it once you no longer need it).")
    os.replace(staged, target)
    notes = local_dir / ".cache" / "huggingface" / "download"  # huggingface_hub's notes on the staged copy
    for note in notes.glob(glob.escape(entry.filename) + ".*"):
        note.unlink(missing_ok=True)
    return target


def _prune(stage: Path) -> None:
    """Remove the staging folder's empty folders (a partial download's folder stays, to be continued)."""
    if not stage.is_dir():
        return
    for notes in stage.rglob(".cache/huggingface"):  # huggingface_hub's bookkeeping beside each local_dir
        download = notes / "download"
        kept = [f for f in download.rglob("*") if f.is_file() and f.suffix != ".lock"] if download.is_dir() else []
        if not kept:  # no partial download (nor its metadata) to continue: only locks and tags remain
            for f in [*(download.rglob("*.lock") if download.is_dir() else []), notes / "CACHEDIR.TAG",
                      notes / ".gitignore"]:
                f.unlink(missing_ok=True)
    for d in sorted((p for p in stage.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass  # not empty: holds a partial download
    try:
        stage.rmdir()
    except OSError:
        pass


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def download(search_dirs, *, ids: Sequence[str] | None = None, include_optional: bool = False,
             token: str | None = None, skip: Iterable[str] = (), log: Callable[[str], None] = print) -> list[Path]:
    """Fetch the files that are missing or damaged into search_dirs[0]; return the paths written.

    Needs huggingface_hub. ``ids`` picks files (default: every required file, plus the optional ones with
    ``include_optional``; files the pack ships a copy of are skipped). ``token`` defaults to HF_TOKEN.
    ``skip``: ids not to fetch (e.g. 'svd_vae' when the user has a VAE). Raises HPError for gated
    repositories without access, offline mode and connection failures.
    """
    dirs = locations.as_dirs(search_dirs)
    if not dirs:
        raise HPError("No models folder to download into.", hint="Pass --models-dir or set HP_MODELS_DIR.")
    dest = dirs[0]
    skip = set(skip)
    if ids is not None:
        entries = [manifest.get_entry(i) for i in ids]
    else:
        entries = [e for e in manifest.load_manifest() if (e.required or include_optional) and not e.bundled]
    todo = []
    for entry in entries:
        if entry.id in skip:
            continue
        found = locations.locate(entry, dirs)
        if found is not None:
            res = verification.verify(entry.id, dirs)
            if res.ok:
                continue
            # Kept until a verified replacement is in place (then moved aside, never deleted); a copy in
            # another folder or layout stays, and the fresh one in dest is found before it.
            log(f"{found[1]} is not usable ({res.reason}); fetching the published file.")
        todo.append(entry)
    if not todo:
        return []
    if offline_requested():
        raise HPError(missing_message(todo, dirs, "Offline mode (HF_HUB_OFFLINE=1) is on, so nothing was "
                                      "downloaded; these files are missing", suggest_download=False))
    try:
        import huggingface_hub.errors  # noqa: F401 - only: is it there at all
    except ImportError as err:
        raise HPError("Downloading needs the huggingface_hub package (`pip install huggingface_hub`).\n"
                      + missing_message(todo, dirs, suggest_download=False)) from err
    stage = dest / STAGING
    created = {d for d in (dest, *dest.parents) if not d.exists()}
    try:
        return _fetch_all(todo, dirs, dest, stage, token, log)
    finally:
        _prune(stage)
        for d in (dest, *dest.parents):  # a folder this call made and left empty goes too
            if d in created:
                try:
                    d.rmdir()
                except OSError:
                    break


def _fetch_all(todo: list[manifest.WeightEntry], dirs: list[Path], dest: Path, stage: Path, token: str | None,
               log: Callable[[str], None]) -> list[Path]:
    """Download, verify and install each of ``todo``; raise one HPError naming everything that failed."""
    with _fail_fast() as guard:
        return _fetch_each(todo, dirs, dest, stage, token, log, guard)


def _fetch_each(todo, dirs, dest, stage, token, log, guard: _FailFast) -> list[Path]:
    # download() has checked that huggingface_hub is there
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        RepositoryNotFoundError, RevisionNotFoundError)
    written: list[Path] = []
    gated: list[manifest.WeightEntry] = []
    failed: list[str] = []
    for i, entry in enumerate(todo):
        log(f"[{i + 1}/{len(todo)}] {entry.repo}@{entry.revision[:12]} {entry.filename} -> {dest / entry.local_path}")
        local_dir = _local_dir(entry, stage)
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
            path = Path(_hub_download(repo_id=entry.repo, filename=entry.filename, revision=entry.revision,
                                      local_dir=str(local_dir), token=token or None))
        except Exception as err:  # noqa: BLE001 - sorted below; anything unknown is re-raised
            if _is_connection_error(err):  # checked first: LocalEntryNotFoundError is an EntryNotFoundError
                kept = ("files already fetched are kept; these are still missing" if written
                        else "nothing was downloaded; these files are missing")
                raise HPError(missing_message(todo[i:], dirs, f"No connection to the Hugging Face Hub "
                                              f"({_short(err)}); {kept}", suggest_download=False)) from err
            if isinstance(err, GatedRepoError) or (isinstance(err, RepositoryNotFoundError) and entry.gated):
                # Without a token some huggingface_hub versions report a gated repository as not found (401).
                gated.append(entry)
            elif isinstance(err, RepositoryNotFoundError):
                failed.append(f"{entry.local_path}: repository {entry.repo} not found ({_short(err)})")
            elif isinstance(err, (EntryNotFoundError, RevisionNotFoundError)):
                failed.append(f"{entry.local_path}: {entry.filename}@{entry.revision} is not in {entry.repo} "
                              f"({_short(err)}); the manifest may be outdated: update the node pack")
            elif isinstance(err, HfHubHTTPError):
                failed.append(f"{entry.local_path}: the Hub answered with an error ({_short(err)}); "
                              f"it may be busy, so try again later")
            else:
                raise
            guard.active = False  # the Hub answered (an error of its own): it can be reached
            continue
        guard.active = False
        res = verification.verify(entry.id, [stage], etag=_hub_etag(local_dir, entry.filename),
                                  origin=f"{entry.repo}@{entry.revision}", preset="official", pin=False)
        if not res.ok:
            path.unlink(missing_ok=True)  # our own staged copy; the file in dest, if any, is untouched
            failed.append(f"{entry.local_path}: the download failed verification ({res.reason})")
            continue
        target = _install(entry, path, local_dir, dest, log)
        lock.unpin(dest, entry.local_path)
        verification.confirm(verification.VerifyResult(entry.id, "ok", target, dest, res.sha256, res.message,
                                                       preset=res.preset, origin=res.origin))
        written.append(target)
    problems = []
    if gated:
        problems.extend(gated_message(e, dest) for e in {e.repo: e for e in gated}.values())
        problems.append("Still missing: " + ", ".join(e.local_path for e in gated) + ".")
    problems.extend(failed)
    if problems:
        raise HPError(f"Some weights could not be downloaded into {dest.resolve()}:\n" + "\n".join(problems))
    return written
