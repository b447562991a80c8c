"""The manifest: which files the method needs, where each one lives on the Hugging Face Hub, what it is.

The list lives in ``weights_manifest.json`` at the pack root. Schema (version 1)::

    {"schema": 1,
     "folder_name": "hunyuan_portrait",     # ComfyUI model folder name (models/hunyuan_portrait)
     "files": [                             # one entry per file the method uses
       {"id":          "unet",              # unique key used by the code (read_checkpoint("unet", ...))
        "component":   "unet",              # network/role the file feeds (hp_core.models component name,
                                            #   or vae / scheduler / identity / face_detector / dwpose)
        "description": "...",
        "repo":        "tencent/HunyuanPortrait",  # Hugging Face model repository
        "revision":    "main",              # commit hash where pinned, else a branch name
        "filename":    "unet.pth",          # path inside the repository, exactly as the repository has it
        "local_path":  "hyportrait/unet.pth",      # path under a models folder; must END with `filename`
                                            #   (hf_hub_download writes <local_dir>/<filename>)
        "alt_local_paths": [],              # other accepted files for the same role (e.g. the fp32 VAE);
                                            #   these are other files, so the manifest's size/hash skip them
        "format":      "pth",               # pth | safetensors | json | onnx | torchscript
        "size":        null,                # bytes as published, or null when not known
        "sha256":      null,                # hex digest as published, or null when not known (never guessed)
        "licence":     "...",               # what the user agrees to by downloading
        "gated":       false,               # true: the licence must be accepted on the Hub, token needed
        "required":    true,                # false: only for optional features (DWPose, SCRFD)
        "bundled":     null}]}              # file name under hp_core/configs/ when the pack ships a copy

Sizes and hashes come from the repositories' published listings (tests/data/hub_listings.json holds the
recorded listings, and a test keeps every entry equal to them).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import HPError

FOLDER_NAME = "hunyuan_portrait"
MANIFEST_PATH = Path(__file__).resolve().parent.parent.parent / "weights_manifest.json"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
SHIPPED_VAE_CONFIG = CONFIG_DIR / "vae_config.json"  # the SVD XT VAE's config.json, for a VAE folder without one
FORMATS = ("pth", "safetensors", "json", "onnx", "torchscript")


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
