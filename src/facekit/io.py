"""Image input: everything becomes an ``(H, W, 3)`` uint8 RGB array, or an `ImageError`.

Files and bytes are decoded by their content (a ``.jpg`` that really holds PNG or WebP
loads), EXIF orientation is applied, and grayscale, palette, RGBA/LA (alpha flattened onto
`ALPHA_BACKGROUND`), CMYK and 16-bit images are converted.
The pixel count is checked from the header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import ImageError

__all__ = ["ALPHA_BACKGROUND", "DEFAULT_MAX_PIXELS", "ImageInput", "describe", "load_image"]

DEFAULT_MAX_PIXELS = 80_000_000
"""Largest image accepted by default, in pixels (width × height): 80 MP."""

_EXIF_ORIENTATION = 0x0112

ALPHA_BACKGROUND = (255, 255, 255)
"""RGB colour transparent pixels are flattened onto (white, like a browser page)."""

ImageInput = str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray | Any
"""A path, encoded bytes, a numpy array (RGB order) or a PIL image."""


def describe(image: object) -> str:
    """A short human name for an image input, for error messages."""
    if isinstance(image, (str, os.PathLike)):
        return str(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    if isinstance(image, np.ndarray):
        return f"<array {image.shape} {image.dtype}>"
    return f"<{type(image).__name__}>"


def load_image(
    image: ImageInput,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    channel_order: Literal["rgb", "bgr"] = "rgb",
) -> np.ndarray:
    """Load ``image`` as an ``(H, W, 3)`` uint8 RGB array.

    Args:
        image: a file path, encoded bytes (JPEG, PNG, WebP, BMP, TIFF, GIF ...), a numpy
            array or a PIL image. Arrays may be ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
            ``(H, W, 4)``, of dtype uint8, uint16 (scaled by 1/257) or float with values in
            ``[0, 1]``.
        max_pixels: refuse images with more than this many pixels (width × height), checked
            from the header before decoding. Encoded images are also bound by Pillow's
            decompression-bomb limit (about 179 MP), which this cannot raise.
        channel_order: channel order of a 3/4-channel numpy array input; ``"bgr"`` for
            arrays from OpenCV. Ignored for files, bytes and PIL images.

    Returns:
        A C-contiguous ``(H, W, 3)`` uint8 array in RGB order. A numpy input that is
        already in that form is returned without a copy.

    Raises:
        ImageError: unreadable, empty, truncated or non-image data, an unsupported pixel
            format, or an image larger than ``max_pixels``. The message names the input.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")
    if channel_order not in ("rgb", "bgr"):
        raise ImageError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    name = describe(image)
    if isinstance(image, np.ndarray):
        return _from_array(image, name, max_pixels, channel_order)
    if isinstance(image, (str, os.PathLike)):
        data = _read_file(Path(image), name)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif _is_pil_image(image):
        return _from_pil(image, name, max_pixels)
    else:
        raise ImageError(
            f"cannot load an image from {name}: expected a path, bytes, a numpy array or a "
            "PIL image"
        )
    return _decode(data, name, max_pixels)


def _read_file(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image file") from None
    except OSError as exc:
        raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from None


def _is_pil_image(obj: object) -> bool:
    from PIL import Image

    return isinstance(obj, Image.Image)


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    with warnings.catch_warnings():
        # facekit checks the size itself (in _from_pil, against max_pixels).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            pil = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image (unrecognised format)") from None
        except Image.DecompressionBombError:
            limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
            raise ImageError(
                f"{name}: image too large (over {limit} pixels, Pillow's decompression-bomb "
                "limit, which max_pixels cannot raise for encoded images)"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{name}: cannot decode image ({exc})") from None
    return _from_pil(pil, name, max_pixels)


def _from_pil(pil: Any, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    width, height = pil.size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels}; raise max_pixels to accept it)"
        )
    if width == 0 or height == 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")
    try:
        pil.load()
        if pil.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            pil = ImageOps.exif_transpose(pil)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: truncated or corrupt image data ({exc})") from None
    mode = pil.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        gray16 = np.asarray(pil).astype(np.uint32)
        if gray16.max(initial=0) > 65535:
            raise ImageError(f"{name}: 32-bit integer images are not supported")
        return _gray_to_rgb(_scale16(gray16))
    if mode == "F":
        return _from_array(np.asarray(pil), name, max_pixels, "rgb")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in pil.info):
        rgba = pil.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        pil = Image.alpha_composite(background, rgba)
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return np.ascontiguousarray(np.asarray(pil, dtype=np.uint8))


def _scale16(values: np.ndarray) -> np.ndarray:
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def _from_array(
    array: np.ndarray, name: str, max_pixels: int, channel_order: Literal["rgb", "bgr"]
) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageError(
            f"{name}: expected an array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4)"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"{name}: image has no pixels")
    if height * width > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels})"
        )
    array = _to_uint8(array, name)
    if array.ndim == 2:
        return _gray_to_rgb(array)
    if channel_order == "bgr":
        array = array[:, :, 2::-1] if array.shape[2] == 3 else array[:, :, [2, 1, 0, 3]]
    if array.shape[2] == 4:
        alpha = array[:, :, 3:4].astype(np.uint16)
        background = np.array(ALPHA_BACKGROUND, dtype=np.uint16)
        blended = (array[:, :, :3] * alpha + background * (255 - alpha) + 127) // 255
        array = blended.astype(np.uint8)
    return np.ascontiguousarray(array)


def _to_uint8(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return _scale16(array)
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageError(f"{name}: float image contains NaN or infinity")
        if array.min(initial=0.0) < 0.0 or array.max(initial=0.0) > 1.0:
            raise ImageError(
                f"{name}: float images must hold values in [0, 1]; convert other ranges to "
                "uint8 first"
            )
        return np.rint(array * 255.0).astype(np.uint8)
    raise ImageError(f"{name}: unsupported array dtype {array.dtype} (use uint8)")
