"""Reading checkpoint files safely and loading them strictly, with errors a user can act on.

.pth files are pickles: they are only ever opened with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import HPError
from .identify import network_of_keys


def read_state_dict(path: str | os.PathLike, *, component: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Read a .pth/.pt/.bin (weights only) or .safetensors file into a CPU state dict."""
    path = Path(path)
    if not path.is_file():
        raise HPError(f"The {component} weights file {path} does not exist.",
                      hint="Run `python -m hp_core weights download` or put the file there (see README, Weights).")
    if path.stat().st_size == 0:
        raise HPError(f"The {component} weights file {path} is empty.", hint="Delete it and download it again.")
    damaged = (f"The {component} weights file {path} could not be read: it looks truncated or corrupted "
               f"({{err}}).")
    again = "Delete it and download it again (`python -m hp_core weights download`)."
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            raise HPError(damaged.format(err=err), hint=again) from err
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
            raise HPError(damaged.format(err=str(err).splitlines()[0] if str(err) else type(err).__name__),
                          hint=again) from err
        except Exception as err:  # pickle.UnpicklingError and friends: not a plain tensor checkpoint
            raise HPError(f"The {component} weights file {path} is not a plain weights checkpoint "
                          f"({type(err).__name__}). It may be a different file or an unsafe pickle; "
                          f"it was not loaded.", hint=again) from err
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise HPError(f"The {component} weights file {path} does not hold a state dict of tensors.",
                      hint=again)
    return dict(state)


def _is_zip(path: Path) -> bool:
    return zipfile.is_zipfile(path)


def key_differences(got: Mapping[str, tuple], expected: Mapping[str, tuple]) -> tuple[list, list, list]:
    """(missing, unexpected, wrong-shape) keys of ``got`` against ``expected`` (key -> shape), each sorted."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    return missing, unexpected, wrong


def check_state_dict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *,
                     component: str, source: str = "the given weights") -> None:
    """Raise HPError unless ``state`` has exactly the keys and shapes of ``module.state_dict()``."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing, unexpected, wrong = key_differences(got, expected)
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        parts.append("shape mismatches (e.g. " + ", ".join(
            f"{k}: file {got[k]} vs model {expected[k]}" for k in wrong[:3]) + ")")
    guessed = network_of_keys(got)
    hint = f"This file looks like the '{guessed}' checkpoint, not '{component}'." if guessed and guessed != component \
        else "Check that you picked the right file for this component and that it is the official release."
    raise HPError(f"{source} does not fit the {component} network: " + "; ".join(parts) + ".", hint=hint)


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], *,
                component: str, source: str = "the given weights") -> torch.nn.Module:
    """Check keys and shapes first (a readable error), then load with ``strict=True``."""
    check_state_dict(module, state, component=component, source=source)
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(state, strict=True, assign=on_meta)
    return module
