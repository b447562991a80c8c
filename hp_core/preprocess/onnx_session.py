"""Choosing onnxruntime execution providers and opening sessions, with readable failures."""

from __future__ import annotations

import os
import warnings
from importlib import metadata
from typing import Sequence

from ..errors import HPError

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def _installed(dist: str) -> bool:
    try:
        metadata.distribution(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


def _cuda_present() -> bool:
    try:
        import torch  # guarded: a start-up hint must not fail on a broken torch
        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: we cannot tell, so do not warn
        return False


def onnx_providers(*, available: Sequence[str] | None = None, cuda_present: bool | None = None,
                   installed: Sequence[str] | None = None) -> tuple[list[str], str | None]:
    """(providers to use, warning text or None): CUDA when onnxruntime offers it AND a CUDA GPU is there,
    else CPU.

    onnxruntime-gpu lists its CUDA provider whether or not the machine has a GPU; asking for it on a
    CPU-only machine makes onnxruntime print a red "Failed to load library libonnxruntime_providers_cuda.so"
    error on every session, so the GPU is checked first (torch.cuda.is_available(): cheap, it creates no CUDA
    context).

    The warning explains the common trap on CUDA machines: a CPU-only ``onnxruntime`` (often pulled in
    by insightface) installed beside ``onnxruntime-gpu`` shadows it, so everything silently runs on CPU.
    The keyword arguments exist so the decision can be tested without a GPU: with ``available`` given and
    ``cuda_present`` not, the GPU is taken to be there exactly when ``available`` lists CUDA.
    """
    probed = available is None
    if probed:
        try:
            import onnxruntime as ort  # optional: the YOLO detector and the networks run without it
        except ImportError as err:
            raise HPError("onnxruntime is not installed; face detection (SCRFD), ArcFace and DWPose need it.",
                          hint="Install onnxruntime-gpu (CUDA) or onnxruntime (CPU) with pip.") from err
        available = ort.get_available_providers()
    if cuda_present is None:
        cuda_present = _cuda_present() if probed else CUDA in available
    if not cuda_present:
        return [CPU], None
    if CUDA in available:
        return [CUDA, CPU], None
    if installed is None:
        installed = [d for d in ("onnxruntime", "onnxruntime-gpu") if _installed(d)]
    if "onnxruntime-gpu" in installed and "onnxruntime" in installed:
        warning = ("onnxruntime runs on the CPU although this machine has a CUDA GPU: the CPU-only package "
                   "'onnxruntime' is installed next to 'onnxruntime-gpu' and shadows it. Fix: pip uninstall -y "
                   "onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    elif "onnxruntime-gpu" in installed:
        warning = ("onnxruntime-gpu is installed but offers no CUDA provider (CUDA/cuDNN libraries missing or "
                   "not matching this onnxruntime-gpu build); running on the CPU, which is slower.")
    else:
        warning = ("onnxruntime runs on the CPU although this machine has a CUDA GPU. For speed: "
                   "pip uninstall -y onnxruntime && pip install onnxruntime-gpu")
    return [CPU], warning


def open_session(path: str | os.PathLike, providers: Sequence[str] | None = None, *, what: str = "ONNX model"):
    """An onnxruntime InferenceSession for a file, or an HPError that names the file and what to do."""
    import onnxruntime as ort  # optional (see onnx_providers); only ONNX models need it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise HPError(f"The {what} file {path} does not exist.",
                      hint="Download it into the models folder (see README, Weights).")
    if providers is None:
        providers, warning = onnx_providers()
        if warning:
            warnings.warn(warning, stacklevel=2)
    elif CUDA in providers and not _cuda_present():  # asked for by name on a machine without a GPU
        providers = [p for p in providers if p != CUDA] or [CPU]
    try:
        return ort.InferenceSession(path, providers=list(providers))
    except Exception as err:  # onnxruntime raises its own exception types for bad files
        raise HPError(f"The {what} file {path} could not be opened by onnxruntime ({err}).",
                      hint="It may be truncated or not an ONNX file: delete it and download it again.") from err
