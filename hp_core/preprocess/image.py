"""Turning whatever image a user hands us into one kind of array: uint8 RGB, H x W x 3.

``read_image_file`` is the one reader of image files (CLI, library API); the nodes get ComfyUI's IMAGE
tensors and convert them with ``to_rgb_uint8``, the same conversion the file reader ends in.
"""

from __future__ import annotations

import errno
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HPError

# The image files the pack reads (what PIL opens for it), named in the message for a file it cannot read.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")

# Non-uint8 pixels are converted this many rows at a time, so a 16-bit 8K frame never needs a
# full-size float copy.
_ROWS_PER_CHUNK = 256


def _pil_to_array(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("RGB", "L"):
        return np.asarray(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image).astype(np.uint16, copy=False)
    if mode in ("I", "F"):
        return np.asarray(image)
    if mode == "1":
        return np.asarray(image.convert("L"))
    # Palette, RGBA, LA, CMYK, YCbCr, LAB, HSV, ...: PIL knows the colour maths. Alpha is dropped,
    # as the official release does (Image.convert("RGB")).
    return np.asarray(image.convert("RGB"))


def _to_uint8_range(arr: np.ndarray) -> np.ndarray:
    """Map one 2-D or 3-D block of any dtype to uint8 (the block is small, see _ROWS_PER_CHUNK)."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        raise AssertionError("floats are handled by the caller")
    wide = arr.astype(np.int64)
    return ((np.clip(wide, 0, 65535) * 255 + 32767) // 65535).astype(np.uint8)


def _float_block(arr: np.ndarray, scale: float) -> np.ndarray:
    out = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=255.0 / scale, neginf=0.0)
    return np.clip(np.rint(out * scale), 0, 255).astype(np.uint8)


def _convert_dtype(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        # Floats in [0, 1] (ComfyUI IMAGE, PIL "F" from a normalised source) or in [0, 255]. Resampling
        # (ComfyUI's bicubic upscale does not clamp) overshoots 1.0 a little; a 0..255 image peaking
        # below 2 would be black anyway, so up to 2 counts as the unit range (clipped).
        peak = float(np.nanmax(arr)) if arr.size else 0.0
        scale = 255.0 if peak <= 2.0 else 1.0
        convert = lambda block: _float_block(block, scale)  # noqa: E731
    elif np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize > 1:
        # 16-bit (and 32-bit "I" images that hold 16-bit data); 8-bit data stored wide stays as is.
        peak = int(arr.max()) if arr.size else 0
        if peak <= 255 and arr.dtype != np.uint16:
            convert = lambda block: np.clip(block, 0, 255).astype(np.uint8)  # noqa: E731
        else:
            convert = _to_uint8_range
    elif np.issubdtype(arr.dtype, np.integer):  # int8
        convert = lambda block: np.clip(block, 0, 127).astype(np.uint8) * 2  # noqa: E731
    else:
        convert = _to_uint8_range
    out = np.empty(arr.shape, dtype=np.uint8)
    for start in range(0, arr.shape[0], _ROWS_PER_CHUNK):
        out[start:start + _ROWS_PER_CHUNK] = convert(arr[start:start + _ROWS_PER_CHUNK])
    return out


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Any PIL image / numpy array / torch tensor (HW, HWC, 1HWC; any dtype) -> contiguous uint8 RGB H x W x 3."""
    if isinstance(image, Image.Image):
        arr = _pil_to_array(image)
    else:
        if hasattr(image, "detach") and hasattr(image, "cpu"):  # torch tensor, without importing torch here
            image = image.detach().cpu()
            if str(image.dtype) in ("torch.bfloat16", "torch.float16"):
                image = image.float()
            image = image.numpy()
        arr = np.asarray(image)
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (2, 3, 4)):
        raise HPError(f"Expected an image of shape HxW or HxWxC (C = 1, 2, 3 or 4), got {tuple(arr.shape)}.",
                      hint="Pass one image at a time, channels last.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise HPError("The image is empty (zero width or height).", hint="Check the image that was loaded.")
    if arr.ndim == 3 and arr.shape[2] == 2:  # grey + alpha
        arr = arr[:, :, 0]
    if arr.ndim == 3 and arr.shape[2] == 4:  # alpha dropped, as Image.convert("RGB") does
        arr = arr[:, :, :3]
    arr = _convert_dtype(arr)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr)


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info)


def _header_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header, without PIL's pixel limit and without decoding."""
    Image.init()
    try:
        with path.open("rb") as fp:
            prefix = fp.read(16)
            for fmt in Image.ID:
                factory, accept = Image.OPEN[fmt]
                if accept is not None and not accept(prefix):
                    continue
                fp.seek(0)
                try:
                    return tuple(factory(fp, str(path)).size)
                except Exception:  # noqa: BLE001 - not this format: try the next one
                    continue
    except OSError:
        pass
    return None


def _too_large(path: Path, err: Exception) -> HPError:
    """The message for an image over PIL's decompression-bomb limit: its size and the limit."""
    limit = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
    size = _header_size(path)
    if size is not None:
        what = f"{size[0]}x{size[1]} pixels ({size[0] * size[1] / 1e6:.0f} megapixels)"
    else:
        found = re.search(r"\((\d+) pixels\)", str(err))
        what = f"{int(found.group(1)) / 1e6:.0f} megapixels" if found else "too many pixels"
    most = f"{limit / 1e6:.0f} megapixels" if limit else "PIL's limit"
    return HPError(f"The image {path} is {what}, more than the {most} an image may have here (a guard "
                   "against images that would fill the memory when decoded).",
                   hint="Scale it down (the portrait is cropped to 512x512 anyway), e.g. to 4096 pixels on the "
                        "longer side, and use that file.")


def read_image_file(path: str | os.PathLike, *, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB: EXIF rotation applied, transparency flattened on ``background``,
    16-bit, 32-bit and float greys scaled to 8 bits (never clipped to white), CMYK and palettes converted.
    An image over PIL's decompression-bomb limit is refused with its size; one between the warning and the
    limit is read (large camera photos are such)."""
    path = Path(path)
    try:
        path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise HPError(f"The image file {path} is a symbolic link that leads back to itself (a loop of links).",
                          hint="Point the link at the real image file, or give the file's own path.") from err
    if not path.exists():
        raise HPError(f"The image file {path} does not exist.", hint="Check the path.")
    if not path.is_file():
        raise HPError(f"The image file {path} is not a file.", hint="Give the path of a file.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise HPError(f"{path} could not be read as an image ({err}).",
                      hint=f"Use one of {', '.join(IMAGE_EXTENSIONS)}.") from err
    try:
        with img:
            img = ImageOps.exif_transpose(img)
            if _has_alpha(img):
                rgba = img.convert("RGBA")
                flat = Image.new("RGB", rgba.size, background)
                flat.paste(rgba, mask=rgba.getchannel("A"))
                img = flat
            return to_rgb_uint8(img)
    except Image.DecompressionBombError as err:
        raise _too_large(path, err) from err
    except MemoryError as err:
        raise HPError(f"The image {path} is too large to decode in the memory this machine has free.",
                      hint="Scale it down (the portrait is cropped to 512x512 anyway) and use that file.") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise HPError(f"{path} could not be read as an image ({err}).",
                      hint=f"Use one of {', '.join(IMAGE_EXTENSIONS)}.") from err
