"""Mutation fuzzing of facekit.io.load_image: whatever the bytes, an RGB array or ImageError.

Small crops of real photos are encoded here in every format Pillow writes and reads back,
then mutated with a fixed seed (bit flips, byte and integer overwrites, truncations, header
splices from other formats, duplicated and deleted chunks). Each mutant must load as a valid
``(H, W, 3)`` uint8 array or raise `ImageError`; any other exception is a failure, and a
watchdog ends the run with a traceback if a decoder hangs. Also here: tiny files whose
headers declare huge images, which must be refused from the header alone.
"""

from __future__ import annotations

import faulthandler
import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekit.errors import ImageError
from facekit.io import load_image

SEED = 20261203
MUTANTS_PER_FORMAT = 400
FUZZ_MAX_PIXELS = 65_536
"""The fuzz runs under a small pixel limit, so a mutated header cannot make a decoder fill a
large image; the refusal path for large headers is part of what is fuzzed."""

WATCHDOG_S = 300
"""A decoder stuck this long is a hang: the run stops with every thread's traceback."""

# Small integers and limits that land in width, height, offset and length fields.
INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF)


def _save(pil: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, fmt, **options)
    return buf.getvalue()


def _crop(path: Path, size: tuple[int, int]) -> Image.Image:
    with Image.open(path) as photo:
        photo.load()
    width, height = photo.size
    side = min(width, height)
    box = ((width - side) // 2, (height - side) // 2, (width + side) // 2, (height + side) // 2)
    return photo.crop(box).resize(size, Image.Resampling.BILINEAR)


@pytest.fixture(scope="module")
def seeds(data_dir: Path) -> dict[str, bytes]:
    """Real photos, cropped small (decoding stays fast), encoded in every format tried."""
    rgb = _crop(data_dir / "mtcnn/ivan.jpg", (48, 40)).convert("RGB")
    rgb2 = _crop(data_dir / "openface/clapton-2.jpg", (40, 40)).convert("RGB")
    gray = _crop(data_dir / "orl_faces/s1/1.png", (32, 40)).convert("L")
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    palette = rgb.quantize(colors=16)
    gray16 = Image.fromarray(np.asarray(gray, np.uint16) * 257)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the orientation code path is fuzzed too
    return {
        "jpeg": _save(rgb, "JPEG", quality=85),
        "jpeg-progressive-exif": _save(
            rgb2, "JPEG", quality=70, progressive=True, exif=exif.tobytes()
        ),
        "jpeg-gray": _save(gray, "JPEG"),
        "jpeg-cmyk": _save(rgb.convert("CMYK"), "JPEG"),
        "png-rgb": _save(rgb, "PNG"),
        "png-rgba": _save(rgba, "PNG"),
        "png-gray16": _save(gray16, "PNG"),
        "png-palette-transparency": _save(palette, "PNG", transparency=0),
        "apng": _save(rgb, "PNG", save_all=True, append_images=[rgb.rotate(90)]),
        "webp-lossy": _save(rgb, "WEBP", quality=70),
        "webp-lossless-alpha": _save(rgba, "WEBP", lossless=True),
        "bmp": _save(rgb, "BMP"),
        "bmp-palette": _save(palette, "BMP"),
        "gif-animated": _save(
            palette, "GIF", save_all=True, append_images=[rgb2.quantize(colors=8)]
        ),
        "tiff-raw": _save(rgb, "TIFF"),
        "tiff-lzw": _save(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-deflate-gray16": _save(gray16, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-jpeg": _save(rgb, "TIFF", compression="jpeg"),
        "ico": _save(rgb, "ICO", sizes=[(32, 32), (16, 16)]),
        "dds": _save(rgba, "DDS"),
        "ppm": _save(rgb, "PPM"),
        "pgm": _save(gray, "PPM"),
        "tga-rle": _save(rgb, "TGA", compression="tga_rle"),
        "sgi": _save(rgb, "SGI"),
        "pcx": _save(rgb, "PCX"),
        "qoi": _save(rgb, "QOI"),
        "jpeg2000": _save(rgb, "JPEG2000"),
        "xbm": _save(gray.convert("1"), "XBM"),
    }


def _flip_bits(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def _position(data: bytearray, rng: random.Random) -> int:
    """A byte offset, half the time within the first 64 bytes, where headers are."""
    if rng.random() < 0.5:
        return rng.randrange(min(len(data), 64))
    return rng.randrange(len(data))


def _overwrite_bytes(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    for _ in range(rng.randint(1, 4)):
        at = _position(data, rng)
        value = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
        data[at : at + rng.randint(1, 4)] = bytes([value]) * rng.randint(1, 4)


def _overwrite_integer(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    layout = rng.choice(("<H", ">H", "<I", ">I"))
    value = rng.choice(INTERESTING) & (0xFFFF if layout.endswith("H") else 0xFFFFFFFF)
    at = _position(data, rng)
    data[at : at + struct.calcsize(layout)] = struct.pack(layout, value)


def _truncate(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    del data[rng.randrange(1, len(data)) :]


def _splice_header(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    """Another format's first bytes onto this body, or this header onto another's body."""
    other = rng.choice(seeds)
    cut = rng.randrange(1, min(len(data), len(other), 96))
    if rng.random() < 0.5:
        data[:cut] = other[:cut]
    else:
        data[cut:] = other[cut:]


def _duplicate_chunk(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    start = rng.randrange(len(data))
    chunk = data[start : start + rng.randint(1, 512)]
    at = rng.randrange(len(data) + 1)
    data[at:at] = chunk * rng.randint(1, 4)


def _delete_chunk(data: bytearray, rng: random.Random, seeds: list[bytes]) -> None:
    start = rng.randrange(len(data))
    del data[start : start + rng.randint(1, 256)]


MUTATIONS: tuple[Callable[[bytearray, random.Random, list[bytes]], None], ...] = (
    _flip_bits,
    _overwrite_bytes,
    _overwrite_integer,
    _truncate,
    _splice_header,
    _duplicate_chunk,
    _delete_chunk,
)


def _mutants(name: str, seeds: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """``MUTANTS_PER_FORMAT`` mutants of ``seeds[name]``: one to three mutations each."""
    rng = random.Random(f"{SEED}:{name}")
    others = list(seeds.values())
    for _ in range(MUTANTS_PER_FORMAT):
        data = bytearray(seeds[name])
        steps = [rng.choice(MUTATIONS) for _ in range(rng.choice((1, 1, 2, 3)))]
        for step in steps:
            if data:
                step(data, rng, others)
        yield "+".join(step.__name__.lstrip("_") for step in steps), bytes(data)


@pytest.fixture
def watchdog() -> Iterator[None]:
    """Stop the whole run, with tracebacks, if the test is stuck (a hang fails, not waits)."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


FORMATS = [
    "jpeg",
    "jpeg-progressive-exif",
    "jpeg-gray",
    "jpeg-cmyk",
    "png-rgb",
    "png-rgba",
    "png-gray16",
    "png-palette-transparency",
    "apng",
    "webp-lossy",
    "webp-lossless-alpha",
    "bmp",
    "bmp-palette",
    "gif-animated",
    "tiff-raw",
    "tiff-lzw",
    "tiff-deflate-gray16",
    "tiff-jpeg",
    "ico",
    "dds",
    "ppm",
    "pgm",
    "tga-rle",
    "sgi",
    "pcx",
    "qoi",
    "jpeg2000",
    "xbm",
]


def test_formats_list_matches_seeds(seeds: dict[str, bytes]) -> None:
    assert sorted(FORMATS) == sorted(seeds)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # Pillow warns about some corrupt data; not the subject
@pytest.mark.parametrize("name", FORMATS)
def test_mutants_load_or_raise_image_error(
    seeds: dict[str, bytes], name: str, tmp_path: Path, watchdog: None
) -> None:
    unmutated = load_image(seeds[name], max_pixels=FUZZ_MAX_PIXELS)
    assert unmutated.ndim == 3
    assert unmutated.shape[2] == 3
    assert unmutated.dtype == np.uint8
    escaped: list[str] = []
    outcomes = {"loaded": 0, "ImageError": 0}
    for index, (steps, data) in enumerate(_mutants(name, seeds)):
        path = tmp_path / "mutant.jpg"
        source: bytes | Path = data
        if index % 8 == 0:  # through the file reader too, under a misleading name
            path.write_bytes(data)
            source = path
        try:
            out = load_image(source, max_pixels=FUZZ_MAX_PIXELS)
        except ImageError:
            outcomes["ImageError"] += 1
            continue
        except Exception as exc:  # anything else escaping load_image is the bug looked for
            escaped.append(f"mutant {index} ({steps}): {type(exc).__name__}: {exc}")
            continue
        valid = (
            isinstance(out, np.ndarray)
            and out.dtype == np.uint8
            and out.ndim == 3
            and out.shape[2] == 3
            and 0 < out.shape[0] * out.shape[1] <= FUZZ_MAX_PIXELS
            and out.flags.c_contiguous
        )
        if not valid:
            escaped.append(f"mutant {index} ({steps}): invalid result {out!r:.80}")
        outcomes["loaded"] += 1
    assert not escaped, f"{len(escaped)} mutants of {name} escaped:\n" + "\n".join(escaped[:20])
    # Both outcomes occur, so the mutants neither all break the file nor all miss it.
    assert outcomes["loaded"] > 0, outcomes
    assert outcomes["ImageError"] > 0, outcomes


# ---------------------------------------------------------------- huge declared sizes


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">II", width, height) + bytes([8, 2, 0, 0, 0])  # 8-bit RGB
    idat = zlib.compress(b"\0" * 256)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gif(width: int, height: int) -> bytes:
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    image = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return b"GIF89a" + screen + image + b";"


def _bmp(width: int, height: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + b"\0" * 64


def _tiff(width: int, height: int) -> bytes:
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: black is zero
        (273, 4, 1, 8),  # StripOffsets
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd_at = 8 + 64
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    return b"II*\0" + struct.pack("<I", ifd_at) + b"\0" * 64 + ifd + b"\0\0\0\0"


def _jpeg(width: int, height: int) -> bytes:
    """A real small JPEG with the frame header's size rewritten."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (90, 60, 30)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _webp(width: int, height: int) -> bytes:
    """A real lossless WebP with the VP8L header's 14-bit sizes rewritten."""
    data = bytearray(_save(Image.new("RGB", (16, 16), (90, 60, 30)), "WEBP", lossless=True))
    vp8l = data.index(b"VP8L") + 8 + 1  # chunk header, then the 0x2f signature byte
    bits = int.from_bytes(data[vp8l : vp8l + 4], "little")
    bits = (bits & ~0xFFFFFFF) | (width - 1) | ((height - 1) << 14)
    data[vp8l : vp8l + 4] = bits.to_bytes(4, "little")
    return bytes(data)


def _dds(width: int, height: int) -> bytes:
    data = bytearray(_save(Image.new("RGBA", (4, 4)), "DDS"))
    data[12:20] = struct.pack("<II", height, width)
    return bytes(data)


def _psd(width: int, height: int) -> bytes:
    header = b"8BPS" + struct.pack(">H6sHIIHH", 1, b"", 3, height, width, 8, 3)
    return header + struct.pack(">I", 0) * 3 + struct.pack(">H", 0) + b"\0" * 64


def _qoi(width: int, height: int) -> bytes:
    return b"qoif" + struct.pack(">IIBB", width, height, 3, 0) + b"\0" * 64 + b"\0" * 7 + b"\1"


def _ppm(width: int, height: int) -> bytes:
    return f"P6\n{width} {height}\n255\n".encode() + b"\0" * 64


def _ico_holding_png(width: int, height: int) -> bytes:
    """An icon whose directory says 16x16 but whose image is a PNG of ``width x height``."""
    png = _png(width, height)
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


BOMBS: dict[str, Callable[[int, int], bytes]] = {
    "png": _png,
    "gif": _gif,
    "bmp": _bmp,
    "tiff": _tiff,
    "jpeg": _jpeg,
    "webp": _webp,
    "dds": _dds,
    "psd": _psd,
    "qoi": _qoi,
    "ppm": _ppm,
}


@pytest.mark.parametrize("fmt", sorted(BOMBS))
@pytest.mark.parametrize(
    ("width", "height", "max_pixels"),
    [
        (16000, 16000, None),  # 256 MP: over the default 80 MP and Pillow's 179 MP limit
        (9000, 9000, None),  # 81 MP: just over the default limit, under Pillow's
        (3000, 3000, 1_000_000),  # 9 MP under a 1 MP limit
    ],
)
def test_huge_declared_size_in_tiny_file_refused_from_header(
    fmt: str, width: int, height: int, max_pixels: int | None, tmp_path: Path
) -> None:
    """A file of a few hundred bytes declaring a huge image is refused as "too large"
    before any pixel buffer is allocated (the message comes only from header checks)."""
    data = BOMBS[fmt](width, height)
    assert len(data) < 1024
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data)
    options = {} if max_pixels is None else {"max_pixels": max_pixels}
    for source in (data, path):
        with pytest.raises(ImageError, match="too large"):
            load_image(source, **options)  # type: ignore[arg-type]


def test_icon_holding_a_huge_png_refused() -> None:
    """An icon's directory says 16x16; the PNG inside declares 16000x16000 (256 MP). Pillow
    decodes an icon's image while opening it, so here only its decompression-bomb check
    (179 MP) stands before the allocation; it refuses this one."""
    with pytest.raises(ImageError, match="too large"):
        load_image(_ico_holding_png(16000, 16000))
