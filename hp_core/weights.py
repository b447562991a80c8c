"""Weights: which files the method needs, where they are, fetching them, checking them, loading them.

The list of files lives in ``weights_manifest.json`` at the pack root. Schema (version 1)::

    {"schema": 1,
     "folder_name": "hunyuan_portrait",     # ComfyUI model folder name (models/hunyuan_portrait)
     "files": [                             # one entry per file the method uses
       {"id":          "unet",              # unique key used by the code (load_checkpoint("unet", ...))
        "component":   "unet",              # network/role the file feeds (hp_core.models component name,
                                            #   or vae / scheduler / identity / face_detector / dwpose)
        "description": "...",
        "repo":        "tencent/HunyuanPortrait",  # Hugging Face model repository
        "revision":    "main",              # commit hash where pinned, else a branch name
        "filename":    "hyportrait/unet.pth",      # path inside the repository
        "local_path":  "hyportrait/unet.pth",      # path under a models folder; must END with `filename`
                                            #   (hf_hub_download writes <local_dir>/<filename>)
        "alt_local_paths": [],              # other accepted names for the same file (e.g. non-fp16 VAE)
        "format":      "pth",               # pth | safetensors | json | onnx | torchscript
        "size":        null,                # bytes, or null when not known
        "sha256":      null,                # hex digest, or null when not known (never guessed)
        "licence":     "...",               # what the user agrees to by downloading
        "gated":       false,               # true: the licence must be accepted on the Hub, token needed
        "required":    true,                # false: only for optional features (DWPose, SCRFD)
        "bundled":     null}]}              # file name under hp_core/configs/ when the pack ships a copy

Where the manifest has no size/hash, the first good download or verification pins them in
``weights.lock.json`` in the models folder that holds the file, and later checks compare against it.
A folder written by ``make-random-weights`` carries ``random_weights.json``: its files are not the
released ones, so manifest sizes/hashes are not applied there (the lock file still is).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from .errors import HPError

FOLDER_NAME = "hunyuan_portrait"
MANIFEST_PATH = Path(__file__).resolve().parent.parent / "weights_manifest.json"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LOCK_NAME = "weights.lock.json"
RANDOM_MARKER = "random_weights.json"
CACHE_SUBDIR = ".hp_cache"
ENV_MODELS_DIR = "HP_MODELS_DIR"
ENV_CACHE_DIR = "HP_CACHE_DIR"
DEFAULT_MODELS_DIR = Path("models") / FOLDER_NAME
FORMATS = ("pth", "safetensors", "json", "onnx", "torchscript")
_HASH_CHUNK = 8 << 20


# ----------------------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class WeightEntry:
    """One file of the manifest (see the schema at the top of this module)."""

    id: str
    component: str
    description: str
    repo: str
    revision: str
    filename: str
    local_path: str
    format: str
    licence: str
    gated: bool
    required: bool
    size: int | None = None
    sha256: str | None = None
    alt_local_paths: tuple[str, ...] = ()
    bundled: str | None = None

    @property
    def url(self) -> str:
        """Direct download address on the Hub."""
        return f"https://huggingface.co/{self.repo}/resolve/{self.revision}/{self.filename}"

    @property
    def page(self) -> str:
        """The repository page (where a gated licence is accepted)."""
        return f"https://huggingface.co/{self.repo}"

    @property
    def local_dir_prefix(self) -> str:
        """The part of ``local_path`` before ``filename`` (where hf_hub_download's local_dir points)."""
        return self.local_path[: len(self.local_path) - len(self.filename)].rstrip("/")


_REQUIRED_FIELDS = {"id": str, "component": str, "description": str, "repo": str, "revision": str,
                    "filename": str, "local_path": str, "format": str, "licence": str, "gated": bool,
                    "required": bool}


def validate_manifest(data: dict) -> list[WeightEntry]:
    """Check a parsed manifest against the schema; return its entries or raise ValueError."""
    if not isinstance(data, dict) or data.get("schema") != 1 or not isinstance(data.get("files"), list):
        raise ValueError("manifest must be an object with schema 1 and a list 'files'")
    entries, ids, paths = [], set(), set()
    for raw in data["files"]:
        for key, kind in _REQUIRED_FIELDS.items():
            if not isinstance(raw.get(key), kind):
                raise ValueError(f"manifest entry {raw.get('id')!r}: field {key!r} must be {kind.__name__}")
        if raw["format"] not in FORMATS:
            raise ValueError(f"manifest entry {raw['id']!r}: unknown format {raw['format']!r}")
        size, sha = raw.get("size"), raw.get("sha256")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise ValueError(f"manifest entry {raw['id']!r}: size must be a positive int or null")
        if sha is not None and not (isinstance(sha, str) and re.fullmatch(r"[0-9a-f]{64}", sha)):
            raise ValueError(f"manifest entry {raw['id']!r}: sha256 must be 64 lowercase hex digits or null")
        alts = tuple(raw.get("alt_local_paths") or ())
        for p in (raw["local_path"], raw["filename"], *alts):
            if p.startswith("/") or "\\" in p or ".." in p.split("/"):
                raise ValueError(f"manifest entry {raw['id']!r}: {p!r} must be a relative POSIX path")
        if not (raw["local_path"] == raw["filename"] or raw["local_path"].endswith("/" + raw["filename"])):
            raise ValueError(f"manifest entry {raw['id']!r}: local_path must end with the repository filename")
        if raw["id"] in ids:
            raise ValueError(f"duplicate manifest id {raw['id']!r}")
        for p in (raw["local_path"], *alts):
            if p in paths:
                raise ValueError(f"manifest entry {raw['id']!r}: local path {p!r} used twice")
            paths.add(p)
        ids.add(raw["id"])
        entries.append(WeightEntry(
            id=raw["id"], component=raw["component"], description=raw["description"], repo=raw["repo"],
            revision=raw["revision"], filename=raw["filename"], local_path=raw["local_path"],
            format=raw["format"], licence=raw["licence"], gated=raw["gated"], required=raw["required"],
            size=size, sha256=sha, alt_local_paths=alts, bundled=raw.get("bundled")))
    return entries


_MANIFEST_CACHE: dict[str, list[WeightEntry]] = {}


def load_manifest(path: str | os.PathLike | None = None) -> list[WeightEntry]:
    """The manifest's entries (the pack's own weights_manifest.json by default)."""
    path = Path(path) if path is not None else MANIFEST_PATH
    key = str(path)
    if key not in _MANIFEST_CACHE:
        try:
            _MANIFEST_CACHE[key] = validate_manifest(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as err:
            raise HPError(f"The weights manifest {path} could not be read ({err}).",
                          hint="Reinstall the node pack; weights_manifest.json belongs to it.") from err
    return _MANIFEST_CACHE[key]


def get_entry(entry_id: str) -> WeightEntry:
    """The manifest entry with this id."""
    for entry in load_manifest():
        if entry.id == entry_id:
            return entry
    known = ", ".join(e.id for e in load_manifest())
    raise HPError(f"Unknown weights file id {entry_id!r}.", hint=f"Known ids: {known}.")


# ---------------------------------------------------------------------------------------- locations

def default_search_dirs(models_dir: str | os.PathLike | Sequence[str | os.PathLike] | None = None) -> list[Path]:
    """Model folders outside ComfyUI: --models-dir, else $HP_MODELS_DIR (os.pathsep-separated), else the default."""
    if models_dir:
        dirs = [models_dir] if isinstance(models_dir, (str, os.PathLike)) else list(models_dir)
    elif os.environ.get(ENV_MODELS_DIR):
        dirs = [d for d in os.environ[ENV_MODELS_DIR].split(os.pathsep) if d]
    else:
        dirs = [DEFAULT_MODELS_DIR]
    return [Path(d).expanduser() for d in dirs]


def _as_dirs(search_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    if isinstance(search_dirs, (str, os.PathLike)):
        search_dirs = [search_dirs]
    return [Path(d).expanduser() for d in search_dirs]


def _locate(entry: WeightEntry, search_dirs) -> tuple[Path, Path] | None:
    """(models folder, file) of the first copy found, in search order."""
    for base in _as_dirs(search_dirs):
        for rel in (entry.local_path, *entry.alt_local_paths):
            path = base / rel
            if path.is_file():
                return base, path
    return None


def resolve(entry_id: str, search_dirs) -> Path | None:
    """Path of the file ``entry_id`` in the first search folder that has it (or the pack's bundled copy)."""
    entry = get_entry(entry_id)
    found = _locate(entry, search_dirs)
    if found:
        return found[1]
    if entry.bundled and (CONFIG_DIR / entry.bundled).is_file():
        return CONFIG_DIR / entry.bundled
    return None


def is_random_dir(base: str | os.PathLike) -> dict | None:
    """The marker of a folder written by make-random-weights ({"preset": ...}), or None."""
    marker = Path(base) / RANDOM_MARKER
    if not marker.is_file():
        return None
    try:
        return json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"preset": "unknown"}


# ---------------------------------------------------------------------------------------- lock file

def read_lock(base: str | os.PathLike) -> dict:
    """The pins of a models folder: {"version": 1, "files": {local_path: {size, sha256, mtime_ns, ...}}}."""
    path = Path(base) / LOCK_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("files"), dict):
            return data
    except FileNotFoundError:
        pass
    except (OSError, ValueError):
        # A damaged lock only loses pins; the files are re-hashed and pinned again.
        pass
    return {"version": 1, "files": {}}


def _write_lock(base: Path, data: dict) -> bool:
    try:
        tmp = base / f".{LOCK_NAME}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, base / LOCK_NAME)
        return True
    except OSError:
        return False  # read-only shared folders: verification still works, pins are not kept


def _pin(base: Path, rel: str, path: Path, sha: str, origin: str | None) -> None:
    lock = read_lock(base)
    st = path.stat()
    lock["files"][rel] = {"size": st.st_size, "sha256": sha, "mtime_ns": st.st_mtime_ns,
                          "pinned_at": time.strftime("%Y-%m-%d %H:%M:%S"), "origin": origin}
    _write_lock(base, lock)


def _unpin(base: Path, rel: str) -> None:
    lock = read_lock(base)
    if lock["files"].pop(rel, None) is not None:
        _write_lock(base, lock)


# ------------------------------------------------------------------------------------- verification

def sha256_file(path: str | os.PathLike, *, progress: bool = True) -> str:
    """Hex sha256 of a file, with a progress bar for large files."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    bar = None
    if progress and size > (256 << 20):
        from tqdm.auto import tqdm
        bar = tqdm(total=size, unit="B", unit_scale=True, desc=f"sha256 {path.name}", leave=False)
    with path.open("rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest()


def check_structure(path: str | os.PathLike, fmt: str) -> str | None:
    """None if the file is whole as far as its format can tell (zip CRCs, safetensors header); else why not."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    try:
        if fmt in ("pth", "torchscript"):
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    bad = zf.testzip()
                if bad is not None:
                    return f"record {bad!r} fails its CRC check"
            elif fmt == "torchscript":
                return "it is not a TorchScript archive"
            else:
                return _check_legacy_pickle(path)
        elif fmt == "safetensors":
            with path.open("rb") as f:
                head = f.read(8)
                if len(head) < 8:
                    return "the header is cut short"
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    return "the header is cut short"
                header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end != size:
                return f"the tensors need {8 + n + end} bytes but the file has {size}"
        elif fmt == "json":
            json.loads(path.read_text(encoding="utf-8"))
        elif fmt == "onnx":
            # ONNX is a protobuf without an end marker; the hash pin is the check that matters.
            pass
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, EOFError) as err:
        return f"it cannot be parsed ({type(err).__name__}: {str(err)[:120]})"
    return None


def _check_legacy_pickle(path: Path) -> str | None:
    with path.open("rb") as f:
        if f.read(4) == b"PK\x03\x04":
            return "the zip archive is cut short (its directory at the end is missing)"
    from .checkpoint import read_state_dict
    try:
        read_state_dict(path)
    except HPError as err:
        cause = str(err.__cause__ or "").strip().splitlines()
        return "torch.load cannot read it" + (f" ({cause[0][:120]})" if cause else "")
    return None


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

    @property
    def ok(self) -> bool:
        """True when the file can be used."""
        return self.state in ("ok", "bundled")


def _expected(entry: WeightEntry, base: Path, rel: str) -> tuple[int | None, str | None, dict | None]:
    """Size and hash the file must have: the manifest's (not for random folders), else the lock's."""
    pin = read_lock(base)["files"].get(rel)
    m_size, m_sha = _manifest_expectation(entry, base, rel)
    return m_size or (pin or {}).get("size"), m_sha or (pin or {}).get("sha256"), pin


def _manifest_expectation(entry: WeightEntry, base: Path, rel: str) -> tuple[int | None, str | None]:
    if is_random_dir(base) is not None or rel != entry.local_path:
        return None, None
    return entry.size, entry.sha256


def _size_problem(path: Path, size: int | None) -> str | None:
    actual = path.stat().st_size
    if actual == 0:
        return "the file is empty"
    if size is None or actual == size:
        return None
    if actual < size:
        return f"it is truncated ({actual} of {size} bytes)"
    return f"it has the wrong size ({actual} bytes, expected {size})"


def _bad(entry: WeightEntry, base: Path, path: Path, why: str) -> VerifyResult:
    msg = (f"The {entry.component} weights file {path} is damaged: {why}. It was not loaded. "
           f"Delete it and download it again (`python -m hp_core weights download`), or fetch it from "
           f"{entry.url} into {base / entry.local_path}.")
    return VerifyResult(entry.id, "bad", path, base, None, msg, why)


# Files verified in this process, keyed by path with their size and mtime_ns: a read-only models folder
# keeps no pins, and a multi-GB file should be read once per process, not once per load. Bounded by the
# number of manifest files (times the folders searched).
_HASHED: dict[str, tuple[int, int, str]] = {}


def verify(entry_id: str, search_dirs, *, full: bool = False, repin: bool = False,
           etag: str | None = None, origin: str | None = None, progress: bool = True) -> VerifyResult:
    """Check the first copy of ``entry_id`` found: size, then sha256 (manifest or lock), pinning it when new.

    Without ``full`` a file whose size and mtime equal its pin is trusted without re-hashing (like make
    or rsync, a same-size rewrite within the filesystem's clock resolution needs ``full`` to be seen).
    ``repin`` forgets the old pin (a file replaced on purpose); the manifest's size/hash still apply.
    ``etag`` is the Hub's etag of a fresh download; for large (LFS) files it is their sha256.
    """
    entry = get_entry(entry_id)
    found = _locate(entry, search_dirs)
    if found is None:
        if entry.bundled and (CONFIG_DIR / entry.bundled).is_file():
            return VerifyResult(entry.id, "bundled", CONFIG_DIR / entry.bundled, None, None,
                                "the copy shipped with the pack is used")
        return VerifyResult(entry.id, "missing", None, None, None, missing_message([entry], search_dirs), "missing")
    base, path = found
    rel = path.relative_to(base).as_posix()
    m_size, m_sha = _manifest_expectation(entry, base, rel)
    size, sha, pin = _expected(entry, base, rel)
    if repin:
        size, sha, pin = m_size, m_sha, None
    problem = _size_problem(path, size)
    if problem:
        return _bad(entry, base, path, problem)
    st = path.stat()
    if (not full and pin and sha and pin.get("sha256") == sha and pin.get("size") == st.st_size
            and pin.get("mtime_ns") == st.st_mtime_ns):
        return VerifyResult(entry.id, "ok", path, base, sha, "matches its pin")
    memo = _HASHED.get(str(path))
    trusted = not full and memo is not None and memo[:2] == (st.st_size, st.st_mtime_ns)
    digest = memo[2] if trusted else sha256_file(path, progress=progress)
    if etag and re.fullmatch(r"[0-9a-f]{64}", etag) and digest != etag:
        return _bad(entry, base, path, f"its sha256 {digest[:12]}... differs from the Hub's {etag[:12]}...")
    if sha and digest != sha:
        if not m_sha:
            when = pin.get("pinned_at", "earlier") if pin else "earlier"
            return _bad(entry, base, path, f"its content changed since it was verified ({when}); if you "
                        f"replaced it on purpose, run `python -m hp_core weights verify --repin`")
        return _bad(entry, base, path, f"its sha256 {digest[:12]}... differs from the expected {m_sha[:12]}...")
    if not sha and not trusted:
        why = check_structure(path, entry.format)
        if why:
            return _bad(entry, base, path, why)
    _HASHED[str(path)] = (st.st_size, st.st_mtime_ns, digest)
    _pin(base, rel, path, digest, origin or (pin or {}).get("origin"))
    return VerifyResult(entry.id, "ok", path, base, digest, "verified" if sha else "verified and pinned")


def ensure_verified(entry_id: str, search_dirs, **kwargs) -> VerifyResult:
    """verify(), raising HPError unless the file is present and whole."""
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
    for entry in load_manifest():
        if not entry.required and not include_optional:
            continue
        found = _locate(entry, search_dirs)
        if found is None:
            if entry.bundled and (CONFIG_DIR / entry.bundled).is_file():
                rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, "bundled",
                                         entry.local_path, CONFIG_DIR / entry.bundled, None,
                                         "copy shipped with the pack"))
            else:
                rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, "missing",
                                         entry.local_path, None, None, entry.url))
            continue
        base, path = found
        rel = path.relative_to(base).as_posix()
        size, sha, pin = _expected(entry, base, rel)
        st = path.stat()
        problem = _size_problem(path, size)
        if problem:
            state, detail = "bad", problem
        elif pin and pin.get("size") == st.st_size and pin.get("mtime_ns") == st.st_mtime_ns:
            state, detail = "ok", "pinned " + str(pin.get("pinned_at", ""))
        else:
            state, detail = "unverified", "run `weights verify`" if not pin else "changed since pinned"
        marker = is_random_dir(base)
        if marker:
            detail += f" (random weights, preset {marker.get('preset')})"
        rows.append(WeightStatus(entry.id, entry.component, entry.required, entry.gated, state, rel, path,
                                 st.st_size, detail))
    return rows


# ----------------------------------------------------------------------------------------- download

def missing_message(entries: Sequence[WeightEntry], search_dirs, reason: str | None = None) -> str:
    """Which files are missing and where to put them (for offline use and error messages)."""
    dirs = _as_dirs(search_dirs)
    dest = dirs[0] if dirs else DEFAULT_MODELS_DIR
    lines = [f"{'Missing weights' if reason is None else reason}: " + ", ".join(e.local_path for e in entries) + "."]
    lines.append(f"Run `python -m hp_core weights download` (online), or fetch them by hand into {dest}:")
    for e in entries:
        lines.append(f"  {e.local_path}  <-  {e.url}" + ("  (gated: accept the licence first)" if e.gated else ""))
    if len(dirs) > 1:
        lines.append("Searched: " + ", ".join(str(d) for d in dirs) + ".")
    return "\n".join(lines)


def gated_message(entry: WeightEntry, dest: Path) -> str:
    """How to get a file from a gated repository, or use a copy the user already has."""
    text = (f"{entry.repo} is gated: open {entry.page} while logged in to Hugging Face and accept the licence; "
            f"create a read token at https://huggingface.co/settings/tokens; then run "
            f"`python -m hp_core weights download --token hf_...` (or set HF_TOKEN).")
    if entry.component == "vae":
        text += (f" Or use an SVD VAE you already have: a diffusers folder (config.json + "
                 f"diffusion_pytorch_model(.fp16).safetensors) at {dest / 'vae'}, or a single-file SVD checkpoint "
                 f"or VAE (e.g. ComfyUI's models/checkpoints/svd_xt.safetensors) passed with --vae PATH "
                 f"(the VAE loader node accepts them too).")
    return text


def offline_requested() -> bool:
    """True when HF_HUB_OFFLINE asks huggingface_hub not to touch the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants
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


def _fetch(entry: WeightEntry, dest: Path, token: str | None) -> Path:
    local_dir = dest / entry.local_dir_prefix if entry.local_dir_prefix else dest
    local_dir.mkdir(parents=True, exist_ok=True)
    got = _hub_download(repo_id=entry.repo, filename=entry.filename, revision=entry.revision,
                        local_dir=str(local_dir), token=token)
    return Path(got)


def download(search_dirs, *, ids: Sequence[str] | None = None, include_optional: bool = False,
             token: str | None = None, skip: Iterable[str] = (), log: Callable[[str], None] = print) -> list[Path]:
    """Fetch the files that are missing or damaged into search_dirs[0]; return the paths written.

    Needs huggingface_hub. ``ids`` picks files (default: every required file, plus the optional ones with
    ``include_optional``; files the pack ships a copy of are skipped). ``token`` defaults to HF_TOKEN.
    Raises HPError for gated repositories without access, offline mode and connection failures.
    """
    dirs = _as_dirs(search_dirs)
    if not dirs:
        raise HPError("No models folder to download into.", hint="Pass --models-dir or set HP_MODELS_DIR.")
    dest = dirs[0]
    skip = set(skip)
    if ids is not None:
        entries = [get_entry(i) for i in ids]
    else:
        entries = [e for e in load_manifest() if (e.required or include_optional) and not e.bundled]
    todo = []
    for entry in entries:
        if entry.id in skip:
            continue
        found = _locate(entry, dirs)
        if found is not None:
            res = verify(entry.id, dirs)
            if res.ok:
                continue
            base, path = found
            log(f"{path} is damaged ({res.reason}); fetching it again.")
            if base == dest:
                path.unlink()
                _unpin(base, path.relative_to(base).as_posix())
        todo.append(entry)
    if not todo:
        return []
    if offline_requested():
        raise HPError(missing_message(todo, dirs, "Offline mode (HF_HUB_OFFLINE=1) is on; these files are missing"))
    try:
        from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                            RepositoryNotFoundError, RevisionNotFoundError)
    except ImportError as err:
        raise HPError("Downloading needs the huggingface_hub package.",
                      hint="Install it with `pip install huggingface_hub`, or fetch the files by hand:\n"
                      + missing_message(todo, dirs)) from err
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    gated: list[WeightEntry] = []
    failed: list[str] = []
    for i, entry in enumerate(todo):
        log(f"[{i + 1}/{len(todo)}] {entry.repo}@{entry.revision[:12]} {entry.filename} -> {dest / entry.local_path}")
        try:
            path = _fetch(entry, dest, token or None)
        except Exception as err:  # noqa: BLE001 - sorted below; anything unknown is re-raised
            if _is_connection_error(err):  # checked first: LocalEntryNotFoundError is an EntryNotFoundError
                raise HPError(missing_message(todo[i:], dirs, f"No connection to the Hugging Face Hub "
                                              f"({_short(err)}); these files are still missing")) from err
            if isinstance(err, GatedRepoError) or (isinstance(err, RepositoryNotFoundError) and entry.gated):
                # Without a token some huggingface_hub versions report a gated repository as not found (401).
                gated.append(entry)
            elif isinstance(err, RepositoryNotFoundError):
                failed.append(f"{entry.local_path}: repository {entry.repo} not found ({_short(err)})")
            elif isinstance(err, (EntryNotFoundError, RevisionNotFoundError)):
                failed.append(f"{entry.local_path}: {entry.filename}@{entry.revision} is not in {entry.repo} "
                              f"({_short(err)}); the manifest may be outdated")
            elif isinstance(err, HfHubHTTPError):
                failed.append(f"{entry.local_path}: the Hub answered with an error ({_short(err)}); try again later")
            else:
                raise
            continue
        local_dir = dest / entry.local_dir_prefix if entry.local_dir_prefix else dest
        res = verify(entry.id, [dest], etag=_hub_etag(local_dir, entry.filename),
                     origin=f"{entry.repo}@{entry.revision}")
        if not res.ok:
            path.unlink(missing_ok=True)
            _unpin(dest, entry.local_path)
            failed.append(f"{entry.local_path}: the download failed verification ({res.reason})")
            continue
        written.append(path)
    problems = []
    if gated:
        problems.extend(gated_message(e, dest) for e in {e.repo: e for e in gated}.values())
        problems.append("Still missing: " + ", ".join(e.local_path for e in gated) + ".")
    problems.extend(failed)
    if problems:
        raise HPError("Some weights could not be downloaded:\n" + "\n".join(problems))
    return written


def _short(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def require(entry_ids: Iterable[str], search_dirs) -> dict[str, Path]:
    """Paths of the given files, or one HPError listing every missing one and where it goes."""
    paths, missing = {}, []
    for entry_id in entry_ids:
        path = resolve(entry_id, search_dirs)
        if path is None:
            missing.append(get_entry(entry_id))
        else:
            paths[entry_id] = path
    if missing:
        raise HPError(missing_message(missing, search_dirs))
    return paths


# ------------------------------------------------------------------------------------------ loading

def _cache_dirs(base: Path, cache_dir) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    user = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "hunyuan_portrait"
    return [base / CACHE_SUBDIR, Path(user)]


def cache_path(res: VerifyResult, cache_root: Path) -> Path:
    """Where the safetensors copy of a verified .pth goes: keyed by the file's size, mtime and sha256."""
    st = res.path.stat()
    key = hashlib.sha256(f"{st.st_size}:{st.st_mtime_ns}:{res.sha256}".encode()).hexdigest()[:16]
    return cache_root / f"{_cache_stem(res)}.{key}.safetensors"


def _cache_stem(res: VerifyResult) -> str:
    return res.path.relative_to(res.base).as_posix().replace("/", "__")


def _save_safetensors(state: dict, path: Path, metadata: dict) -> None:
    from safetensors.torch import save_file
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


def load_checkpoint(entry_id: str, search_dirs, *, cache_dir: str | os.PathLike | None = None) -> dict:
    """Verified state dict (name -> CPU tensor) of a .pth/.safetensors file; .pth goes through a safetensors cache.

    The .pth is read once (torch.load weights_only) and written as safetensors next to the models
    (<models>/.hp_cache/) or in $HP_CACHE_DIR / ~/.cache/hunyuan_portrait when that is read-only;
    later loads read the safetensors copy. A damaged or changed file raises HPError and is never loaded.
    """
    from .checkpoint import read_state_dict

    entry = get_entry(entry_id)
    if entry.format not in ("pth", "safetensors"):
        raise HPError(f"{entry.local_path} is a {entry.format} file, not a checkpoint of tensors.")
    res = verify(entry_id, search_dirs)
    if res.state == "missing":
        raise HPError(res.message)
    if not res.ok:
        raise HPError(res.message)
    if entry.format == "safetensors" or res.path.suffix == ".safetensors":
        return read_state_dict(res.path, component=entry.component)
    for root in _cache_dirs(res.base, cache_dir):
        cached = cache_path(res, root)
        if cached.is_file():
            try:
                return read_state_dict(cached, component=entry.component)
            except HPError:
                cached.unlink(missing_ok=True)  # a damaged cache is rebuilt from the verified .pth
    state = read_state_dict(res.path, component=entry.component)
    st = res.path.stat()
    meta = {"source": res.path.relative_to(res.base).as_posix(), "source_size": str(st.st_size),
            "source_mtime_ns": str(st.st_mtime_ns), "source_sha256": res.sha256 or ""}
    for root in _cache_dirs(res.base, cache_dir):
        cached = cache_path(res, root)
        try:
            root.mkdir(parents=True, exist_ok=True)
            _save_safetensors(state, cached, meta)
        except OSError:
            continue  # not writable: try the next cache folder, else just return the state
        for old in root.glob(f"{_cache_stem(res)}.*.safetensors"):
            if old != cached and re.fullmatch(r"[0-9a-f]{16}", old.name[len(_cache_stem(res)) + 1:-12]):
                old.unlink(missing_ok=True)
        break
    return state


# ---------------------------------------------------------------------------------- random weights

def write_random_weights(out: str | os.PathLike, preset: str = "tiny", *, seed: int = 0, dtype: str = "auto",
                         log: Callable[[str], None] = print) -> list[Path]:
    """Random weights of ``preset`` in the official layout (hyportrait/<name>.pth, vae/), for tests and benchmarks.

    The .pth files are plain state dicts written with torch.save, exactly like the release; the VAE is a
    diffusers folder. ``dtype``: auto (official: the release's run precisions; tiny: fp32), fp32 or fp16.
    The folder is marked with random_weights.json so nobody mistakes it for the released model.
    """
    import torch

    from .models import COMPONENTS, DEFAULT_DTYPES, build_component, build_vae

    out = Path(out)
    (out / "hyportrait").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    written = []
    for name in COMPONENTS:
        module = build_component(name, preset)
        want = {"fp32": torch.float32, "fp16": torch.float16}.get(
            dtype, DEFAULT_DTYPES[name] if preset == "official" else torch.float32)
        state = {k: (v.to(want) if v.is_floating_point() else v).contiguous() for k, v in module.state_dict().items()}
        del module
        path = out / "hyportrait" / f"{name}.pth"
        torch.save(state, path)
        del state
        written.append(path)
        log(f"  {path}")
    vae = build_vae(preset)
    vae_dtype = torch.float32 if dtype == "fp32" or (dtype == "auto" and preset == "tiny") else torch.float16
    vae.to(vae_dtype).save_pretrained(str(out / "vae"), safe_serialization=True,
                                      variant="fp16" if vae_dtype == torch.float16 else None)
    weights_file = out / "vae" / ("diffusion_pytorch_model.fp16.safetensors" if vae_dtype == torch.float16
                                  else "diffusion_pytorch_model.safetensors")
    written += [out / "vae" / "config.json", weights_file]
    log(f"  {weights_file}")
    (out / RANDOM_MARKER).write_text(json.dumps(
        {"preset": preset, "seed": seed, "dtype": dtype,
         "note": "random weights for tests and benchmarks; not the released HunyuanPortrait model"}, indent=1),
        encoding="utf-8")
    for entry_id in (*COMPONENTS, "svd_vae", "svd_vae_config"):
        verify(entry_id, [out], origin=f"random {preset} seed {seed}")  # pinned now, so status reads "ok"
    return written


__all__ = ["FOLDER_NAME", "MANIFEST_PATH", "LOCK_NAME", "RANDOM_MARKER", "ENV_MODELS_DIR", "WeightEntry",
           "WeightStatus", "VerifyResult", "validate_manifest", "load_manifest", "get_entry",
           "default_search_dirs", "resolve", "require", "is_random_dir", "read_lock", "sha256_file",
           "check_structure", "verify", "ensure_verified", "status", "download", "missing_message",
           "gated_message", "offline_requested", "load_checkpoint", "cache_path", "write_random_weights"]
