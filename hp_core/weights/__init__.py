"""Weights: which files the method needs, where they are, fetching them, checking them, loading them.

One idea per module: ``manifest`` (the list of files and where each lives upstream), ``locations``
(models folders and the layouts searched), ``lock`` (pins of files that proved good), ``structure``
(cheap checks of what a file holds), ``verification`` (verify/status), ``readiness`` (every problem at
once before a run), ``messages`` (what to tell the user), ``hub`` (downloading), ``cache`` (loading
through a safetensors cache), ``vae`` (locating, verifying and loading the SVD VAE; its file formats are
``hp_core.svd_vae``'s), ``random_weights`` (test weights in the release's layout).
Callers use the names re-exported here: ``from hp_core import weights as W; W.resolve(...)``.
"""

from .cache import CACHE_SUBDIR, ENV_CACHE_DIR, Checkpoint, cache_path, confirm_checkpoint, read_checkpoint
from .hub import download, offline_requested
from .locations import (DEFAULT_MODELS_DIR, ENV_MODELS_DIR, RANDOM_MARKER, RELEASE_DIR, as_dirs, candidates,
                        default_search_dirs, is_random_dir, locate, resolve)
from .lock import LOCK_NAME, read_lock
from .manifest import (CONFIG_DIR, FOLDER_NAME, FORMATS, MANIFEST_PATH, WeightEntry, get_entry, load_manifest,
                       validate_manifest)
from .messages import gated_message, missing_message, problems_message
from .random_weights import write_random_weights
from .readiness import Readiness, check_explicit_vae, check_files, needed_ids, preflight
from .structure import check_component, check_structure, checkpoint_index, onnx_signature
from .vae import load_vae
from .verification import VerifyResult, WeightStatus, confirm, ensure_verified, sha256_file, status, verify

__all__ = ["FOLDER_NAME", "MANIFEST_PATH", "CONFIG_DIR", "FORMATS", "LOCK_NAME", "RANDOM_MARKER", "RELEASE_DIR",
           "ENV_MODELS_DIR", "ENV_CACHE_DIR", "DEFAULT_MODELS_DIR", "CACHE_SUBDIR", "WeightEntry", "WeightStatus",
           "VerifyResult", "Checkpoint", "validate_manifest", "load_manifest", "get_entry", "default_search_dirs",
           "as_dirs", "candidates", "locate", "resolve", "preflight", "check_files", "check_explicit_vae",
           "Readiness", "needed_ids", "is_random_dir",
           "read_lock", "sha256_file", "check_structure", "check_component", "checkpoint_index",
           "onnx_signature", "verify", "confirm", "ensure_verified", "status", "download", "missing_message",
           "gated_message", "problems_message", "offline_requested", "read_checkpoint",
           "confirm_checkpoint", "cache_path", "write_random_weights", "load_vae"]
