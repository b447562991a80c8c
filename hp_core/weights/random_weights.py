"""Random weights of a preset in the release's file layout, for tests and benchmarks (never the model).

Besides the seven networks and the VAE, a random folder gets two small stand-ins for the external files a
run needs, so it can animate on its own (``make-random-weights --preset tiny --out D`` then ``animate
--models-dir D ...``):

- ``yoloface_v5m.pt``: a TorchScript module with the YOLOv5-face call signature ``model(img, grids)`` that
  "detects" a pure red square (the face of the tests' synthetic portraits) and returns decoded rows
  [cx, cy, w, h, obj, 10 landmark coords, cls] in network-input pixels; a real photo has no face for it;
- ``arcface.onnx``: an ONNX recogniser with input ``data`` (1,3,112,112) and a 512-d output (channel means
  times a fixed random matrix). It is written as protobuf bytes directly (no ``onnx`` package at run time).

Both are listed in the folder's random_weights.json (``stand_ins``) and shown as stand-ins by `weights
status`. The test suite's fakes are these same writers.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path
from typing import Callable, List

import numpy as np
import torch

from ..models import COMPONENTS, DEFAULT_DTYPES, build_component, build_vae
from . import locations
from . import verification
from .manifest import get_entry

# make-random-weights --dtype: auto (the release's precisions for official, fp32 for tiny) or one for all.
RANDOM_DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16}

STAND_INS = {
    "yoloface": "stand-in face detector: finds a pure red square only (the tests' synthetic portraits)",
    "arcface": "stand-in ArcFace: channel means times a fixed random matrix (not a face recogniser)",
}


class RedSquareFaceDetector(torch.nn.Module):
    """YOLOv5-face's call ``model(img, grids)`` -> (1, 1, 16) rows; finds the pure red square of ``img``."""

    def forward(self, img: torch.Tensor, grids: List[torch.Tensor]) -> torch.Tensor:
        red = (img[0, 0] > 0.8) & (img[0, 1] < 0.25) & (img[0, 2] < 0.25)
        ys = torch.nonzero(red.any(dim=1)).flatten()
        xs = torch.nonzero(red.any(dim=0)).flatten()
        row = torch.zeros(1, 1, 16)
        if ys.numel() == 0:
            return row
        x1, x2 = xs.min().float(), xs.max().float() + 1
        y1, y2 = ys.min().float(), ys.max().float() + 1
        w, h = x2 - x1, y2 - y1
        fr = torch.tensor([[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]])
        marks = torch.stack([x1 + fr[:, 0] * w, y1 + fr[:, 1] * h], dim=1).flatten()
        row[0, 0, 0] = (x1 + x2) / 2
        row[0, 0, 1] = (y1 + y2) / 2
        row[0, 0, 2] = w
        row[0, 0, 3] = h
        row[0, 0, 4] = 0.95
        row[0, 0, 5:15] = marks
        row[0, 0, 15] = 0.95
        return row


def write_stand_in_yolo(path: str | os.PathLike) -> Path:
    """A TorchScript file with yoloface_v5m.pt's call signature that finds the red square. The bytes do not
    depend on the file name or the time (saved through a buffer), so rewriting it keeps its pin valid."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # torch.jit's deprecation notice: TorchScript is the file's format
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(RedSquareFaceDetector()), buffer)
    path.write_bytes(buffer.getvalue())
    return path


# ------------------------------------------------------------------ a minimal ONNX (protobuf) writer

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, n: int) -> bytes:
    return _varint(field << 3) + _varint(n)


def _msg(field: int, payload: bytes | str) -> bytes:
    payload = payload.encode("utf-8") if isinstance(payload, str) else payload
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


_FLOAT = 1  # TensorProto.FLOAT
_INTS_ATTR, _INT_ATTR = 7, 2  # AttributeProto.INTS, INT


def _value_info(name: str, dims: list[int]) -> bytes:
    shape = b"".join(_msg(1, _int(1, d)) for d in dims)                   # TensorShapeProto.dim.dim_value
    tensor_type = _int(1, _FLOAT) + _msg(2, shape)                        # TypeProto.Tensor
    return _msg(1, name) + _msg(2, _msg(1, tensor_type))                  # ValueInfoProto(name, type)


def _node(op: str, inputs: list[str], outputs: list[str], attributes: bytes = b"") -> bytes:
    return (b"".join(_msg(1, i) for i in inputs) + b"".join(_msg(2, o) for o in outputs) + _msg(4, op)
            + attributes)


def _initializer(name: str, array: np.ndarray) -> bytes:
    array = np.ascontiguousarray(array, dtype="<f4")
    return b"".join(_int(1, d) for d in array.shape) + _int(2, _FLOAT) + _msg(8, name) + _msg(9, array.tobytes())


def write_stand_in_arcface(path: str | os.PathLike, seed: int = 0) -> Path:
    """An ONNX recogniser with input ``data`` (1,3,112,112) -> (1,512): channel means times a fixed matrix.

    The protobuf is written by hand (ONNX IR 8, opset 13: ReduceMean over H, W, then MatMul), the same
    model ``onnx.helper`` builds, so the ``onnx`` package is not needed to write it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weight = np.random.default_rng(seed).standard_normal((3, 512)).astype(np.float32)
    axes = _msg(5, _msg(1, "axes") + _int(8, 2) + _int(8, 3) + _int(20, _INTS_ATTR))
    keepdims = _msg(5, _msg(1, "keepdims") + _int(3, 0) + _int(20, _INT_ATTR))
    graph = (_msg(1, _node("ReduceMean", ["data"], ["m"], axes + keepdims)) + _msg(1, _node("MatMul", ["m", "w"], ["emb"]))
             + _msg(2, "arcface_fake") + _msg(5, _initializer("w", weight))
             + _msg(11, _value_info("data", [1, 3, 112, 112])) + _msg(12, _value_info("emb", [1, 512])))
    model = _int(1, 8) + _msg(7, graph) + _msg(8, _msg(1, "") + _int(2, 13))
    path.write_bytes(model)
    return path


def _write_stand_ins(out: Path, log: Callable[[str], None]) -> dict[str, str]:
    """The stand-ins at their manifest places, {local_path: what it is}; a file there that is not an
    earlier stand-in (e.g. a real detector) is kept and not listed."""
    earlier = (locations.is_random_dir(out) or {}).get("stand_ins") or {}
    writers = {"yoloface": write_stand_in_yolo, "arcface": write_stand_in_arcface}
    written = {}
    for entry_id, note in STAND_INS.items():
        rel = get_entry(entry_id).local_path
        target = out / rel
        if target.exists() and rel not in earlier:
            log(f"  {target} (kept: it is not a stand-in)")
            continue
        writers[entry_id](target)
        written[rel] = note
        log(f"  {target} ({note})")
    return written


def write_random_weights(out: str | os.PathLike, preset: str = "tiny", *, seed: int = 0, dtype: str = "auto",
                         log: Callable[[str], None] = print) -> list[Path]:
    """Random weights of ``preset`` in the official layout (hyportrait/<name>.pth, vae/), for tests and benchmarks.

    The .pth files are plain state dicts written with torch.save, exactly like the release; the VAE is a
    diffusers folder. ``dtype``: auto (official: the release's run precisions; tiny: fp32), fp32 or fp16.
    The folder is marked with random_weights.json so nobody mistakes it for the released model, and so
    verification checks its files against ``preset`` instead of the published hashes. The stand-in face
    detector and ArcFace (see the module's docstring) are written too, and listed in the marker.
    """
    out = Path(out)
    (out / "hyportrait").mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    written = []
    for name in COMPONENTS:
        module = build_component(name, preset)
        want = RANDOM_DTYPES.get(dtype) or (DEFAULT_DTYPES[name] if preset == "official" else torch.float32)
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
    stand_ins = _write_stand_ins(out, log)
    written += [out / rel for rel in stand_ins]
    (out / locations.RANDOM_MARKER).write_text(json.dumps(
        {"preset": preset, "seed": seed, "dtype": dtype,
         "note": "random weights for tests and benchmarks; not the released HunyuanPortrait model",
         "stand_ins": stand_ins}, indent=1),
        encoding="utf-8")
    stand_in_ids = [i for i in STAND_INS if get_entry(i).local_path in stand_ins]
    for entry_id in (*COMPONENTS, "svd_vae", "svd_vae_config", *stand_in_ids):
        # checked against the preset and pinned now, so status reads "ok"
        verification.ensure_verified(entry_id, [out], origin=f"random {preset} seed {seed}")
    return written
