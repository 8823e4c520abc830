"""Image input: everything becomes an ``(H, W, 3)`` uint8 RGB array, or an `ImageError`.

Files and bytes are decoded by their content (a ``.jpg`` that really holds PNG or WebP
loads), EXIF orientation is applied, and grayscale, palette, RGBA/LA (alpha flattened onto
`ALPHA_BACKGROUND`), CMYK and 16-bit images are converted.
The pixel count is checked from the header, before any pixel is decoded, and files are
checked (regular file, size) before they are read: see `read_image_file`.
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from .errors import ImageError

__all__ = [
    "ALPHA_BACKGROUND",
    "DEFAULT_MAX_PIXELS",
    "ImageInput",
    "describe",
    "load_image",
    "max_file_bytes",
    "read_image_file",
]

DEFAULT_MAX_PIXELS = 80_000_000
"""Largest image accepted by default, in pixels (width × height): 80 MP."""

_MAX_BYTES_PER_PIXEL = 8
"""Most bytes one pixel takes in an image file worth reading: 16-bit RGBA stored uncompressed
(TIFF, SGI, PSD, PNG at compression level 0); see `max_file_bytes`."""

_HEADER_SLACK_BYTES = 64 * 1024 * 1024
"""Bytes allowed on top of the pixels for headers, metadata (EXIF, ICC, XMP, thumbnails) and
small extra frames or layers: 64 MiB."""

_READ_CHUNK_BYTES = 1024 * 1024
"""Read size once a file has more bytes than `os.stat` said (a file that grows, /proc)."""

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_BINARY", 0)  # Windows: no newline translation
    | getattr(os, "O_NONBLOCK", 0)  # never wait on a FIFO swapped in after the stat
    | getattr(os, "O_NOCTTY", 0)  # never become the controlling terminal of a tty
)

_NOT_REGULAR: tuple[tuple[Callable[[int], bool], str], ...] = (
    (stat.S_ISDIR, "is a directory, not an image file"),
    (stat.S_ISFIFO, "is a named pipe (FIFO), not an image file"),
    (stat.S_ISCHR, "is a character device, not an image file"),
    (stat.S_ISBLK, "is a block device, not an image file"),
    (stat.S_ISSOCK, "is a socket, not an image file"),
)

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
            format, or an image larger than ``max_pixels``; a path that is not a regular
            file or is larger than `max_file_bytes` allows (see `read_image_file`). Every
            failure of the decoder, whatever Pillow raises, becomes an `ImageError`. The
            message names the input.
    """
    _check_max_pixels(max_pixels)
    if channel_order not in ("rgb", "bgr"):
        raise ImageError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
    name = describe(image)
    if isinstance(image, np.ndarray):
        return _from_array(image, name, max_pixels, channel_order)
    if isinstance(image, (str, os.PathLike)):
        data = read_image_file(image, max_pixels=max_pixels)
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


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Largest file, in bytes, that `read_image_file` reads for a ``max_pixels`` limit.

    ``8 * max_pixels + 64 MiB``: 8 bytes is the widest pixel stored uncompressed by a format
    Pillow reads (16-bit RGBA in TIFF, SGI or PSD; 8-bit RGB is 3, 16-bit gray 2), and
    compressed formats (JPEG, PNG, WebP, GIF) take less per pixel for real photos; the
    64 MiB cover headers and metadata (EXIF, ICC profiles, XMP, embedded thumbnails) and a
    few extra frames or layers. A larger file cannot hold an image of at most ``max_pixels``
    pixels in any reasonable encoding, so it is refused unread. For the default 80 MP
    limit this is 704 MiB.
    """
    return _MAX_BYTES_PER_PIXEL * max_pixels + _HEADER_SLACK_BYTES


def read_image_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Read an image file's bytes, refusing anything that is not a plausible image file.

    The path is checked with `os.stat` (symlinks followed) before it is opened: a FIFO, a
    directory, a character or block device or a socket is refused without being opened (so
    a FIFO never blocks), and so is a file larger than ``max_file_bytes(max_pixels)``
    (``8 * max_pixels + 64 MiB``, see `max_file_bytes`), without reading it. The file is then
    opened non-blocking, checked again by `os.fstat` (it may have been swapped since) and
    read with that cap, so a file that grows while being read is refused too.

    Args:
        path: the file to read.
        max_pixels: the pixel limit the image will be decoded under; it sets the size cap.

    Returns:
        The file's content.

    Raises:
        ImageError: the path does not exist or cannot be read, is not a regular file, or is
            larger than the cap. The message names the path.
    """
    _check_max_pixels(max_pixels)
    name = describe(path)
    cap = max_file_bytes(max_pixels)
    try:
        _check_file(os.stat(path), name, cap, max_pixels)
        fd = os.open(path, _OPEN_FLAGS)
        try:
            info = os.fstat(fd)
            _check_file(info, name, cap, max_pixels)
            return _read_capped(fd, info.st_size, name, cap, max_pixels)
        finally:
            os.close(fd)
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL or unencodable character
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ImageError(f"{name}: cannot read file ({reason})") from None


def _check_file(info: os.stat_result, name: str, cap: int, max_pixels: int) -> None:
    for is_kind, what in _NOT_REGULAR:
        if is_kind(info.st_mode):
            raise ImageError(f"{name}: {what}")
    if not stat.S_ISREG(info.st_mode):
        raise ImageError(f"{name}: not a regular file, not an image file")
    if info.st_size > cap:
        raise _too_big(name, info.st_size, cap, max_pixels)


def _read_capped(fd: int, expected: int, name: str, cap: int, max_pixels: int) -> bytes:
    """Read ``fd`` to its end, refusing it once it holds more than ``cap`` bytes."""
    chunks = []
    size = 0
    want = expected + 1  # one read for a file whose size stat told right, one to see the end
    while chunk := os.read(fd, min(want, cap + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise _too_big(name, size, cap, max_pixels)
        want = _READ_CHUNK_BYTES
    return b"".join(chunks)


def _too_big(name: str, size: int, cap: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"{name}: file too large for an image ({size} bytes; at most {cap} bytes are read "
        f"for max_pixels={max_pixels}; raise max_pixels to accept it)"
    )


def _check_max_pixels(max_pixels: object) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ImageError(f"max_pixels must be a positive integer, got {max_pixels!r}")


def _is_pil_image(obj: object) -> bool:
    from PIL import Image

    return isinstance(obj, Image.Image)


def _decode(data: bytes, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image

    if not data:
        raise ImageError(f"{name}: empty file, not an image")
    with warnings.catch_warnings():
        # facekit checks the size itself (in _from_pil, against max_pixels).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with _decoder_errors(name, "cannot decode image"):
            pil = Image.open(io.BytesIO(data), formats=_safe_formats())
        return _from_pil(pil, name, max_pixels)


_EXTERNAL_PROGRAM_FORMATS = frozenset({"EPS"})
"""Pillow formats never opened: EPS is rendered by running Ghostscript on the file, which
would hand untrusted PostScript to an interpreter."""


def _safe_formats() -> list[str]:
    """The Pillow formats `load_image` may decode: every registered one but
    `_EXTERNAL_PROGRAM_FORMATS`."""
    from PIL import Image

    Image.init()
    return [name for name in Image.OPEN if name not in _EXTERNAL_PROGRAM_FORMATS]


@contextmanager
def _decoder_errors(name: str, what: str) -> Iterator[None]:
    """Turn whatever Pillow raises into an `ImageError` naming the input.

    Pillow's format plugins raise far more than `OSError` on crafted or damaged data
    (`NotImplementedError`, `struct.error`, `EOFError`, `IndexError`, `ZeroDivisionError`,
    `MemoryError` from a forged header ...), so every `Exception` is mapped here.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image (unrecognised format)") from None
    except Image.DecompressionBombError:
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(
            f"{name}: image too large (over {limit} pixels, Pillow's decompression-bomb "
            "limit, which max_pixels cannot raise for encoded images)"
        ) from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode the image") from None
    except Exception as exc:  # see the docstring: a plugin may raise anything
        reason = str(exc) or type(exc).__name__
        if not isinstance(exc, (OSError, ValueError, SyntaxError)):
            reason = f"{type(exc).__name__}: {reason}"
        raise ImageError(f"{name}: {what} ({reason})") from None


def _from_pil(pil: Any, name: str, max_pixels: int) -> np.ndarray:
    from PIL import Image, ImageOps

    _check_size(pil.size, name, max_pixels)
    with _decoder_errors(name, "truncated or corrupt image data"):
        pil.load()
        if pil.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            pil = ImageOps.exif_transpose(pil)
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


def _check_size(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """Refuse a ``(width, height)`` over ``max_pixels`` pixels, or one without pixels."""
    width, height = size
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: image too large ({width}x{height} = {width * height} pixels, "
            f"limit {max_pixels}; raise max_pixels to accept it)"
        )
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: image has no pixels ({width}x{height})")


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
    _check_size((width, height), name, max_pixels)
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
