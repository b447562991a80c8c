"""Is a file what its manifest entry says, without loading it: integrity and structure, read cheaply.

- integrity: the file is whole as far as its format can tell (zip CRCs, safetensors header vs. size);
- checkpoints: keys and shapes from the safetensors header, or from the pickle index of a ``.pth`` zip
  (``data.pkl``, read by an unpickler that knows only state-dict types and records each tensor's shape
  and dtype from its storage record; tensor bytes are never read), compared with the network the
  preset builds on the meta device;
- ONNX: graph input/output names and shapes, read off the protobuf while seeking past the weights;
- the TorchScript face detector: loads and answers the call the pipeline makes.
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import warnings
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

from ..checkpoint import key_differences, read_state_dict
from ..errors import HPError
from ..models import COMPONENTS, PRESETS, build_component, build_vae
from ..identify import network_of_keys, safetensors_header, vae_layout
from ..svd_vae import infer_vae_config, vae_config_for
from . import manifest

# ------------------------------------------------------------------------------------------ integrity


def check_structure(path: str | Path, fmt: str) -> str | None:
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
            header, n = safetensors_header(path)
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if 8 + n + end != size:
                return f"the tensors need {8 + n + end} bytes but the file has {size}"
        elif fmt == "json":
            json.loads(path.read_text(encoding="utf-8"))
        elif fmt == "onnx":
            onnx_signature(path)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, TypeError, EOFError) as err:
        return f"it cannot be parsed ({type(err).__name__}: {str(err)[:120]})"
    return None


def _check_legacy_pickle(path: Path) -> str | None:
    with path.open("rb") as f:
        if f.read(4) == b"PK\x03\x04":
            return "the zip archive is cut short (its directory at the end is missing)"
    try:
        read_state_dict(path)
    except HPError as err:
        cause = str(err.__cause__ or "").strip().splitlines()
        return "torch.load cannot read it" + (f" ({cause[0][:120]})" if cause else "")
    return None


# ------------------------------------------------------------------------------------ checkpoint index

_STORAGE_DTYPES = {"FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
                   "DoubleStorage": "float64", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}


class _Storage:
    def __init__(self, dtype: str):
        self.dtype = dtype


class _StorageType:
    def __init__(self, name: str):
        self.dtype = _STORAGE_DTYPES.get(name, name)


class TensorInfo(tuple):
    """(shape, dtype name) of one tensor as a checkpoint describes it."""

    @property
    def shape(self) -> tuple[int, ...]:
        return self[0]


def _rebuild_tensor(storage, offset, size, stride, *rest):
    return TensorInfo((tuple(int(s) for s in size), storage.dtype))


def _rebuild_parameter(data, *rest):
    return data


class _IndexUnpickler(pickle.Unpickler):
    """Knows only what a plain state dict pickles (like torch's weights_only) and reads no tensor data."""

    _ALLOWED = {("collections", "OrderedDict"): OrderedDict,
                ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
                ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter}

    def find_class(self, module, name):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} has no place in a weights file")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError("unknown persistent record")
        kind = pid[1]
        return _Storage(kind.dtype if isinstance(kind, _StorageType) else str(kind))


def checkpoint_index(path: str | Path) -> dict[str, TensorInfo]:
    """{key: (shape, dtype)} of a .safetensors or .pth file without reading its tensors.

    A ``.pth`` in torch's zip format is read through its ``data.pkl`` only. The old (pre-1.6) pickle
    format has no separate index, so such a file is read whole (weights only), which is rare and slow.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        header, _ = safetensors_header(path)
        return {k: TensorInfo((tuple(v["shape"]), v["dtype"])) for k, v in header.items() if k != "__metadata__"}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
            if not names:
                raise ValueError("no data.pkl record: not a torch checkpoint")
            with zf.open(names[0]) as f:
                obj = _IndexUnpickler(io.BufferedReader(f)).load()
    else:
        obj = {k: TensorInfo((tuple(v.shape), str(v.dtype).replace("torch.", "")))
               for k, v in read_state_dict(path).items()}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, TensorInfo) for v in obj.values()):
        raise ValueError("it does not hold a state dict of tensors")
    return dict(obj)


@functools.lru_cache(maxsize=32)
def expected_shapes(component: str, preset: str) -> dict[str, tuple[int, ...]]:
    """{key: shape} of a network (or the VAE) as ``preset`` builds it, on the meta device (no memory)."""
    module = build_vae(preset, device="meta") if component == "vae" else build_component(component, preset, "meta")
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _vae_keys(index: dict) -> dict:
    return {k: v for k, v in index.items() if k.split(".")[0] in ("encoder", "decoder", "quant_conv")}


def compare_checkpoint(index: dict[str, TensorInfo], component: str, preset: str) -> str | None:
    """None when the keys and shapes are those of ``component`` at ``preset``; else what differs and what
    the file looks like instead."""
    got = {k: v.shape for k, v in (_vae_keys(index) if component == "vae" else index).items()}
    want = expected_shapes(component, preset)
    if got == want:
        return None
    missing, unexpected, wrong = key_differences(got, want)
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its {len(want)} tensors are missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors do not belong to it (e.g. {unexpected[0]})")
    if wrong:
        parts.append(f"{len(wrong)} have other shapes (e.g. {wrong[0]}: {got[wrong[0]]} instead of {want[wrong[0]]})")
    text = f"it is not the {component} checkpoint of the '{preset}' preset: " + "; ".join(parts)
    guess = network_of_keys(index.keys())
    if guess and guess != component:
        what = "an SVD VAE" if guess == "vae" else f"{guess}.pth (the {guess} checkpoint)"
        return text + f"; this file looks like {what}"
    for other in PRESETS:
        if other != preset and got == expected_shapes(component, other):
            return text + f"; it is the {component} checkpoint of the '{other}' preset"
    return text


def check_vae(index: dict[str, TensorInfo], path: str | Path) -> str | None:
    """None when the tensors are a whole SVD temporal VAE in diffusers layout, of whatever width (the
    loader infers the sizes from the weights, so any SVD-style VAE loads)."""
    from diffusers import AutoencoderKLTemporalDecoder  # heavy/optional: diffusers only to check a VAE file

    vae = _vae_keys(index)
    if vae_layout(vae) != "diffusers":
        guess = network_of_keys(index.keys())
        looks = f"; this file looks like {guess}.pth (the {guess} checkpoint)" if guess and guess != "vae" else ""
        return "it holds no Stable Video Diffusion temporal VAE in diffusers layout" + looks
    got = {k: v.shape for k, v in vae.items()}
    try:
        config = infer_vae_config({k: torch.empty(s, device="meta") for k, s in got.items()}, vae_config_for(path, manifest.SHIPPED_VAE_CONFIG))
        with torch.device("meta"):
            want = {k: tuple(v.shape) for k, v in AutoencoderKLTemporalDecoder(**config).state_dict().items()}
    except (KeyError, ValueError, TypeError) as err:
        return f"it is not a whole SVD temporal VAE ({type(err).__name__}: {str(err)[:80]})"
    missing = sorted(set(want) - set(got))
    wrong = sorted(k for k in set(want) & set(got) if want[k] != got[k])
    extra = sorted(set(got) - set(want))
    if missing or wrong or extra:
        first = (missing or wrong or extra)[0]
        return (f"it is not a whole SVD temporal VAE ({len(missing)} tensors missing, {len(wrong)} of other "
                f"shapes, {len(extra)} unexpected; e.g. {first})")
    return None


# ---------------------------------------------------------------------------------------------- ONNX

def _varint(f) -> int:
    shift = result = 0
    while True:
        b = f.read(1)
        if not b:
            raise EOFError("the file ends inside a record")
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("not a protobuf varint")


def _fields(f, end: int):
    """(field number, value) of a protobuf message in f up to ``end``; length-delimited values are
    (start, length) and the reader continues after them whatever the caller read."""
    while f.tell() < end:
        tag = _varint(f)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            yield field, _varint(f)
        elif wire in (1, 5):
            f.seek(8 if wire == 1 else 4, 1)
        elif wire == 2:
            n = _varint(f)
            start = f.tell()
            if start + n > end:
                raise ValueError("a record runs past its end: not an ONNX model or cut short")
            yield field, (start, n)
            f.seek(start + n)
        else:
            raise ValueError(f"wire type {wire}: not an ONNX model")


def _read(f, span) -> bytes:
    f.seek(span[0])
    return f.read(span[1])


def _value_info(data: bytes) -> tuple[str, list]:
    f = io.BytesIO(data)
    name, dims = "", []
    for field, value in _fields(f, len(data)):
        if field == 1:
            name = _read(f, value).decode("utf-8", "replace")
        elif field == 2:  # TypeProto
            for tf, tv in _fields(f, value[0] + value[1]):
                if tf != 1:  # tensor_type
                    continue
                for sf, sv in _fields(f, tv[0] + tv[1]):
                    if sf != 2:  # shape
                        continue
                    for df, dv in _fields(f, sv[0] + sv[1]):
                        if df != 1:
                            continue
                        dim = None
                        for kf, kv in _fields(f, dv[0] + dv[1]):
                            dim = kv if kf == 1 else _read(f, kv).decode("utf-8", "replace") if kf == 2 else dim
                        dims.append(dim)
    return name, dims


def onnx_signature(path: str | Path) -> tuple[list[tuple[str, list]], list[tuple[str, list]]]:
    """(inputs, outputs) of an ONNX model as [(name, dims)]; dims are ints, names of symbolic sizes, or None.

    Inputs exclude initializers (old models list their weights as graph inputs too), as onnxruntime does.
    """
    path = Path(path)
    size = path.stat().st_size
    inputs, outputs, weights = [], [], set()
    graph = False
    with path.open("rb") as f:
        for field, value in _fields(f, size):
            if field != 7:  # ModelProto.graph
                continue
            graph = True
            for gf, gv in _fields(f, value[0] + value[1]):
                if gf in (11, 12):
                    (inputs if gf == 11 else outputs).append(_value_info(_read(f, gv)))
                elif gf == 5:  # initializer: only its name (field 8); its data is skipped
                    for tf, tv in _fields(f, gv[0] + gv[1]):
                        if tf == 8:
                            weights.add(_read(f, tv).decode("utf-8", "replace"))
    if not graph or not outputs:
        raise ValueError("no graph with outputs: not an ONNX model")
    return [i for i in inputs if i[0] not in weights], outputs


def _dims_match(dims: list, want: tuple) -> bool:
    return len(dims) == len(want) and all(w is None or d == w or (i == 0 and not isinstance(d, int))
                                          for i, (d, w) in enumerate(zip(dims, want)))


# entry id -> (input name or None for any, input dims (None = any), outputs count or None, last output dim)
_ONNX_EXPECT = {
    "arcface": ("data", (1, 3, 112, 112), None, 512),
    "dwpose_det": (None, (1, 3, None, None), None, None),
    "dwpose_pose": (None, (1, 3, 384, 288), 2, None),
    "scrfd": (None, (1, 3, None, None), 9, None),
}


def check_onnx(entry_id: str, path: str | Path) -> str | None:
    """None when the ONNX model has the inputs/outputs its role needs (e.g. ArcFace: 'data' 1x3x112x112 -> 512)."""
    try:
        inputs, outputs = onnx_signature(path)
    except (ValueError, EOFError, OSError) as err:
        return f"it is not a readable ONNX model ({err})"
    want = _ONNX_EXPECT.get(entry_id)
    if want is None:
        return None
    name, dims, n_out, last = want
    shown = ", ".join(f"{n} {d}" for n, d in inputs) or "none"
    if name is not None:
        found = [d for n, d in inputs if n == name]
        if not found or not _dims_match(found[0], dims):
            return f"its input is not '{name}' {list(dims)} (it has: {shown})"
    elif not inputs or not _dims_match(inputs[0][1], dims):
        return f"its input is not an image batch {['N' if d is None else d for d in dims]} (it has: {shown})"
    if n_out is not None and len(outputs) != n_out:
        return f"it has {len(outputs)} outputs, not {n_out}"
    if last is not None and not any(d and d[-1] == last for _, d in outputs):
        return f"no output is {last} wide (outputs: {', '.join(f'{n} {d}' for n, d in outputs)})"
    return None


# -------------------------------------------------------------------------------------- TorchScript

def check_detector(path: str | Path) -> str | None:
    """None when the file loads as TorchScript and answers ``model(image, grids)`` with (1, N, 16) rows."""
    from ..preprocess.yolo_face import make_grids  # heavy/optional: hp_core.preprocess pulls in OpenCV

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 64, 64), make_grids(64, 64))
    except Exception as err:  # noqa: BLE001 - any failure means: not the detector the pipeline can call
        text = str(err).strip().splitlines()
        return f"it does not load and run as the YOLOv5-face TorchScript detector ({text[0][:120] if text else type(err).__name__})"
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 3 or out.shape[-1] != 16:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return f"its answer to model(image, grids) is {shape}, not rows of 16 values (box, score, 5 landmarks, class)"
    return None


# ------------------------------------------------------------------------------------------- by entry

def check_component(entry, path: str | Path, preset: str) -> str | None:
    """None when ``path`` has the structure of manifest ``entry`` at ``preset``; else what is wrong."""
    path = Path(path)
    if entry.format in ("pth", "safetensors") and (entry.component == "vae" or _is_network(entry.component)):
        try:
            index = checkpoint_index(path)
        except (pickle.UnpicklingError, ValueError, KeyError, EOFError, OSError, zipfile.BadZipFile,
                AttributeError, TypeError, HPError) as err:
            return f"it is not a plain weights checkpoint ({type(err).__name__}: {str(err)[:120]})"
        if entry.component == "vae":
            return check_vae(index, path)
        return compare_checkpoint(index, entry.component, preset)
    if entry.format == "onnx":
        return check_onnx(entry.id, path)
    if entry.format == "torchscript" and entry.component == "face_detector":
        return check_detector(path)
    return None


def _is_network(component: str) -> bool:
    return component in COMPONENTS
