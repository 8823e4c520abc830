"""facekit.io.load_image on real photos and on synthetic files and arrays built here."""

from __future__ import annotations

import io
import os
import socket
import struct
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facekit.errors import FacekitError, ImageError
from facekit.io import ALPHA_BACKGROUND, load_image, max_file_bytes, read_image_file

# (path under data/, (width, height)) as documented in shared/data/README.md
PHOTOS = [
    ("openface/clapton-1.jpg", (624, 420)),
    ("openface/carell.jpg", (601, 891)),
    ("openface/longoria-cooper.jpg", (293, 473)),
    ("mtcnn/ivan.jpg", (561, 561)),
    ("mtcnn/no-faces.jpg", (199, 148)),
    ("insightface_samples/t1.jpg", (1280, 886)),
]


def _encode(pil: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` but whose pixel data is a stub: it can
    only be refused from the header, never decoded."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">II", width, height) + bytes([8, 0, 0, 0, 0])  # 8-bit gray
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _check_rgb(out: np.ndarray, shape: tuple[int, int]) -> None:
    assert out.shape == (*shape, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


# ---------------------------------------------------------------- real photos, all inputs


@pytest.mark.parametrize(("rel", "size"), PHOTOS)
def test_real_photo_every_input_kind(data_dir: Path, rel: str, size: tuple[int, int]) -> None:
    path = data_dir / rel
    width, height = size
    from_str = load_image(str(path))
    _check_rgb(from_str, (height, width))
    np.testing.assert_array_equal(load_image(path), from_str)
    data = path.read_bytes()
    for raw in (data, bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(load_image(raw), from_str)
    with Image.open(path) as pil:
        np.testing.assert_array_equal(load_image(pil), from_str)
    # An independent decoder agrees (JPEG IDCTs differ by a level or two at most).
    reference = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert np.abs(from_str.astype(int) - reference).mean() < 2.0


def test_real_grayscale_png_gives_three_equal_channels(data_dir: Path) -> None:
    path = data_dir / "orl_faces/s1/1.png"
    out = load_image(path)
    _check_rgb(out, (112, 92))
    gray = np.asarray(Image.open(path))
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray)


def test_real_photo_exif_orientation_rotates(data_dir: Path, tmp_path: Path) -> None:
    with Image.open(data_dir / "openface/clapton-1.jpg") as photo:
        photo.load()
    exif = Image.Exif()
    exif[0x0112] = 1
    upright = tmp_path / "upright.jpg"
    upright.write_bytes(_encode(photo, "JPEG", quality=90, exif=exif.tobytes()))
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(_encode(photo, "JPEG", quality=90, exif=exif.tobytes()))
    base = load_image(upright)
    out = load_image(rotated)
    assert base.shape == (420, 624, 3)
    assert out.shape == (624, 420, 3)
    np.testing.assert_array_equal(out, np.rot90(base, k=-1))


# ---------------------------------------------------------------- numpy arrays


def test_uint8_rgb_array_returned_without_copy() -> None:
    array = np.random.default_rng(0).integers(0, 256, (30, 80, 3), dtype=np.uint8)
    out = load_image(array)
    assert np.shares_memory(out, array)
    np.testing.assert_array_equal(out, array)
    view = array[:, ::2]  # not contiguous: copied into a contiguous array
    out = load_image(view)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, view)


@pytest.mark.parametrize("shape", [(20, 30), (20, 30, 1)])
def test_gray_arrays(shape: tuple[int, ...]) -> None:
    gray = np.arange(600, dtype=np.uint8).reshape(shape)
    out = load_image(gray)
    _check_rgb(out, (20, 30))
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], gray.reshape(20, 30))


def test_rgba_array_flattened_onto_background() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., :3] = (10, 200, 40)
    rgba[0, :, 3] = 255  # opaque row
    rgba[1, 0, 3] = 0  # fully transparent
    rgba[1, 1:, 3] = 128
    out = load_image(rgba)
    _check_rgb(out, (2, 3))
    assert (out[0] == (10, 200, 40)).all()
    assert tuple(out[1, 0]) == ALPHA_BACKGROUND
    half = (np.array((10, 200, 40)) * 128 + np.array(ALPHA_BACKGROUND) * 127) / 255
    assert np.abs(out[1, 1] - half).max() <= 1


def test_bgr_channel_order() -> None:
    bgr = np.zeros((4, 5, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    out = load_image(bgr, channel_order="bgr")
    assert (out == (0, 0, 255)).all()
    bgra = np.concatenate([bgr, np.full((4, 5, 1), 255, np.uint8)], axis=2)
    assert (load_image(bgra, channel_order="bgr") == (0, 0, 255)).all()
    assert (load_image(bgr) == (255, 0, 0)).all()  # default is RGB


def test_uint16_and_float_arrays_scaled() -> None:
    values16 = np.array([[0, 257, 32896, 65535]], np.uint16)
    np.testing.assert_array_equal(load_image(values16)[0, :, 0], [0, 1, 128, 255])
    floats = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(load_image(floats)[0, :, 1], [0, 128, 255])
    rgb = np.full((2, 2, 3), 0.25, np.float64)
    assert (load_image(rgb) == 64).all()


# ---------------------------------------------------------------- synthetic files


def test_decoded_by_content_not_extension(data_dir: Path, tmp_path: Path) -> None:
    jpeg = (data_dir / "mtcnn/no-faces.jpg").read_bytes()
    fake_png = tmp_path / "photo.png"
    fake_png.write_bytes(jpeg)
    np.testing.assert_array_equal(load_image(fake_png), load_image(jpeg))
    with Image.open(data_dir / "mtcnn/no-faces.jpg") as photo:
        webp = _encode(photo, "WEBP", lossless=True)
        expected = np.asarray(photo.convert("RGB"))
    fake_jpg = tmp_path / "photo.jpg"
    fake_jpg.write_bytes(webp)
    out = load_image(fake_jpg)
    _check_rgb(out, (148, 199))
    np.testing.assert_array_equal(out, expected)  # lossless WebP: exact


def test_exif_orientation_moves_known_corner(tmp_path: Path) -> None:
    pil = Image.new("RGB", (64, 32), (0, 0, 255))  # 64 wide, 32 high, blue
    pil.paste((255, 0, 0), (0, 0, 16, 16))  # red top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "oriented.jpg"
    path.write_bytes(_encode(pil, "JPEG", quality=95, exif=exif.tobytes()))
    out = load_image(path).astype(int)
    assert out.shape == (64, 32, 3)  # width and height swapped
    # Rotated 90° clockwise: the top-left corner is now top-right.
    assert np.abs(out[4, 27] - (255, 0, 0)).max() < 40
    assert np.abs(out[4, 4] - (0, 0, 255)).max() < 40
    assert np.abs(out[60, 4] - (0, 0, 255)).max() < 40


def test_grayscale_png(tmp_path: Path) -> None:
    gray = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (7, 1))
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path)
    out = load_image(path)
    _check_rgb(out, gray.shape)
    assert (out == gray[:, :, None]).all()


def test_rgba_png_transparent_pixels_flattened(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (0, 0, 0)
    rgba[:2, :, 3] = 255  # top half opaque black, bottom half transparent black
    path = tmp_path / "alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)
    _check_rgb(out, (4, 4))
    assert (out[:2] == 0).all()
    assert (out[2:] == ALPHA_BACKGROUND).all()


def test_16bit_grayscale_png(tmp_path: Path) -> None:
    values = np.array([[0, 65535, 32896, 257 * 200]], np.uint16).repeat(3, axis=0)
    path = tmp_path / "deep.png"
    assert cv2.imwrite(str(path), values)
    with Image.open(path) as pil:
        assert pil.mode.startswith("I")  # really a 16-bit file
    out = load_image(path)
    _check_rgb(out, (3, 4))
    assert (out[..., 0] == out[..., 2]).all()
    np.testing.assert_array_equal(out[0, :, 1], [0, 255, 128, 200])


def test_palette_png(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (17, 34, 51)]
    pil = Image.new("P", (4, 2))
    pil.putpalette([c for colour in colours for c in colour])
    pil.putdata([0, 1, 2, 3, 3, 2, 1, 0])
    path = tmp_path / "palette.png"
    pil.save(path)
    out = load_image(path)
    _check_rgb(out, (2, 4))
    assert [tuple(px) for px in out[0]] == colours
    pil.save(path, transparency=3)  # index 3 transparent → background
    out = load_image(path)
    assert tuple(out[0, 3]) == ALPHA_BACKGROUND
    assert tuple(out[0, 0]) == (255, 0, 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # red
    with Image.open(path) as pil:
        assert pil.mode == "CMYK"
    out = load_image(path).astype(int)
    _check_rgb(out.astype(np.uint8), (16, 16))
    assert np.abs(out - (255, 0, 0)).max() < 30


def test_pil_inputs() -> None:
    assert (load_image(Image.new("RGB", (5, 3), (1, 2, 3))) == (1, 2, 3)).all()
    gray = load_image(Image.new("L", (5, 3), 77))
    _check_rgb(gray, (3, 5))
    assert (gray == 77).all()
    clear = load_image(Image.new("RGBA", (5, 3), (9, 9, 9, 0)))
    assert (clear == ALPHA_BACKGROUND).all()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("missing.jpg", "no such file"),
        ("folder.jpg", "directory"),
        ("empty.jpg", "empty"),
        ("noise.bin", "not an image"),
        ("notes.jpg", "not an image"),
        ("half.jpg", "truncated"),
    ],
)
def test_bad_files_name_the_path(data_dir: Path, tmp_path: Path, name: str, words: str) -> None:
    photo = (data_dir / "openface/clapton-1.jpg").read_bytes()
    contents = {
        "empty.jpg": b"",
        "noise.bin": np.random.default_rng(7).bytes(4096),
        "notes.jpg": b"this is not a picture\n" * 20,
        "half.jpg": photo[: len(photo) // 2],
    }
    path = tmp_path / name
    if name == "folder.jpg":
        path.mkdir()
    elif name in contents:
        path.write_bytes(contents[name])
    for given in (path, str(path)):
        with pytest.raises(ImageError, match=words) as info:
            load_image(given)
        assert str(path) in str(info.value)


def test_bad_bytes_raise_image_error(data_dir: Path) -> None:
    photo = (data_dir / "openface/clapton-1.jpg").read_bytes()
    for data in (b"", np.random.default_rng(3).bytes(999), photo[: len(photo) // 2]):
        with pytest.raises(ImageError) as info:
            load_image(data)
        assert f"<{len(data)} bytes>" in str(info.value)


def test_max_pixels_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (1000, 1000), (5, 5, 5)).save(path)
    with pytest.raises(ImageError, match="too large") as info:
        load_image(path, max_pixels=10_000)
    assert str(path) in str(info.value)
    assert load_image(path, max_pixels=1_000_000).shape == (1000, 1000, 3)
    with pytest.raises(ImageError, match="too large"):
        load_image(np.zeros((101, 100, 3), np.uint8), max_pixels=10_000)
    with pytest.raises(ImageError, match="too large"):
        load_image(Image.new("RGB", (101, 100)), max_pixels=10_000)


@pytest.mark.parametrize(
    ("width", "height", "limit"), [(5000, 5000, 10_000_000), (20000, 20000, 10_000)]
)
def test_max_pixels_checked_from_header(width: int, height: int, limit: int) -> None:
    data = _png_header_only(width, height)
    with pytest.raises(ImageError, match="too large"):
        load_image(data, max_pixels=limit)
    # The same file under a high enough limit gets past the header and fails on its data,
    # so the refusal above came from the header alone.
    if width * height < 80_000_000:
        with pytest.raises(ImageError, match=r"truncated|corrupt|decode"):
            load_image(data, max_pixels=width * height)


def test_max_pixels_above_pillow_limit_is_honoured() -> None:
    with pytest.raises(ImageError) as info:
        load_image(_png_header_only(10000, 9000), max_pixels=200_000_000)
    assert "too large" not in str(info.value)  # header accepted; the stub data fails


@pytest.mark.parametrize("limit", [0, -1, 1.5, None, "x", True])
def test_invalid_max_pixels(limit: object) -> None:
    with pytest.raises(ImageError, match="max_pixels"):
        load_image(np.zeros((2, 2, 3), np.uint8), max_pixels=limit)  # type: ignore[arg-type]


def test_invalid_channel_order() -> None:
    with pytest.raises(ImageError, match="channel_order"):
        load_image(np.zeros((2, 2, 3), np.uint8), channel_order="rgba")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.full((3, 3, 3), 1.5, np.float32), r"\[0, 1\]"),
        (np.full((3, 3), -0.1, np.float64), r"\[0, 1\]"),
        (np.array([[0.2, np.nan]], np.float32), "NaN"),
        (np.array([[0.2, np.inf]], np.float64), "NaN or infinity"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((1, 4, 4, 3), np.uint8), "shape"),
        (np.zeros(12, np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "no pixels"),
        (np.zeros((4, 4, 3), np.int64), "dtype"),
    ],
)
def test_bad_arrays(array: np.ndarray, words: str) -> None:
    with pytest.raises(ImageError, match=words) as info:
        load_image(array)
    assert str(array.shape) in str(info.value)


@pytest.mark.parametrize("thing", [42, [[1, 2], [3, 4]], None, 3.5])
def test_unsupported_objects(thing: object) -> None:
    assert issubclass(ImageError, FacekitError)
    assert issubclass(ImageError, ValueError)
    with pytest.raises(ImageError, match="cannot load an image") as info:
        load_image(thing)
    assert type(thing).__name__ in str(info.value)


# ---------------------------------------------------------------- decoder failures, file reading


def _dds_unknown_pixel_format(data_dir: Path) -> bytes:
    """A real photo saved as DDS, its pixel-format flags then cleared: Pillow identifies the
    file as DDS and raises NotImplementedError("Unknown pixel format flags 0")."""
    with Image.open(data_dir / "mtcnn/no-faces.jpg") as photo:
        dds = bytearray(_encode(photo.convert("RGBA"), "DDS"))
    dds[80:84] = struct.pack("<I", 0)  # DDS_PIXELFORMAT.dwFlags
    return bytes(dds)


def test_dds_named_jpg_raises_image_error(data_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_dds_unknown_pixel_format(data_dir))
    with pytest.raises(ImageError, match="pixel format") as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert info.value.__cause__ is None  # the raw NotImplementedError is not chained


def test_postscript_named_jpg_is_never_handed_to_ghostscript(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import EpsImagePlugin

    opened: list[object] = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append(self))
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n")
    with pytest.raises(ImageError, match="not an image"):
        load_image(path)
    assert opened == []  # the EPS plugin (which runs Ghostscript) was never consulted


class _FailingImage(Image.Image):
    """A PIL image whose pixel data fails to load with a given exception, standing in for a
    lazily opened file whose decoder raises something other than OSError."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self._size = (8, 8)
        self._mode = "RGB"
        self.error = error

    def load(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (NotImplementedError("Unknown pixel format"), "NotImplementedError: Unknown pixel"),
        (struct.error("unpack requires a buffer"), "error: unpack requires a buffer"),
        (EOFError(), "EOFError"),
        (IndexError("list index out of range"), "IndexError: list index"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division"),
        (KeyError("tile"), "KeyError"),
        (cv2.error("decoder failed"), "decoder failed"),
        (MemoryError(), "not enough memory"),
        (OSError("image file is truncated"), r"truncated or corrupt image data \(image file"),
    ],
)
def test_every_decoder_failure_becomes_image_error(error: Exception, words: str) -> None:
    with pytest.raises(ImageError, match=words) as info:
        load_image(_FailingImage(error))
    assert "<_FailingImage>" in str(info.value)


def _load_in_thread(path: Path) -> BaseException | None:
    """load_image(path) in a daemon thread; a regression that blocks opening a FIFO fails
    here after a minute instead of hanging the suite (and the FIFO is then unblocked)."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            load_image(path)
            outcome.append(None)
        except BaseException as exc:  # handed to the test to check
            outcome.append(exc)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # releases the blocked reader
        worker.join(timeout=10)
        pytest.fail(f"load_image({path}) blocked on a FIFO")
    return outcome[0]


def test_fifo_named_jpg_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    link = tmp_path / "link.jpg"
    link.symlink_to(fifo)  # a symlink is followed, then refused the same way
    for path in (fifo, link):
        error = _load_in_thread(path)
        assert isinstance(error, ImageError), error
        assert str(error) == f"{path}: is a named pipe (FIFO), not an image file"


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_character_devices_refused(device: str) -> None:
    with pytest.raises(ImageError) as info:
        load_image(device)
    assert str(info.value) == f"{device}: is a character device, not an image file"
    with pytest.raises(ImageError, match="character device"):
        read_image_file(Path(device))


def test_socket_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short relative name: socket paths are limited to ~100 bytes
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("face.jpg")
        with pytest.raises(ImageError, match=r"face\.jpg: is a socket"):
            load_image("face.jpg")


def test_directory_refused_by_reader(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        read_image_file(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, not an image file"


def test_max_file_bytes_rationale() -> None:
    # 8 bytes a pixel (16-bit RGBA stored raw) plus 64 MiB of headers and metadata.
    assert max_file_bytes() == 8 * 80_000_000 + 64 * 2**20
    assert max_file_bytes(1_000) == 8_000 + 64 * 2**20


@pytest.mark.parametrize("max_pixels", [None, 20_000])
def test_file_over_the_size_cap_refused_unread(
    data_dir: Path, tmp_path: Path, max_pixels: int | None
) -> None:
    """A valid PNG followed by zeros up past the cap (a sparse file: no disk used). Pillow
    would decode it, trailing bytes and all, so only a refusal before reading gives an
    error; with the default limit the file is 3 GB, which was once read whole."""
    options = {} if max_pixels is None else {"max_pixels": max_pixels}
    cap = max_file_bytes(**options)
    path = tmp_path / "huge.png"
    path.write_bytes((data_dir / "orl_faces/s1/1.png").read_bytes())
    size = 3 * 2**30 if max_pixels is None else cap + 1
    assert size > cap
    os.truncate(path, size)
    with pytest.raises(ImageError, match="file too large") as info:
        load_image(path, **options)  # type: ignore[arg-type]
    assert str(info.value).startswith(f"{path}: file too large for an image ({size} bytes;")
    with pytest.raises(ImageError, match="file too large"):
        read_image_file(path, **options)
    if max_pixels is not None:  # exactly at the (64 MiB) cap: read, and the PNG decodes
        os.truncate(path, cap)
        assert load_image(path, max_pixels=max_pixels).shape == (112, 92, 3)


def test_read_image_file_returns_the_bytes(data_dir: Path) -> None:
    path = data_dir / "openface/clapton-1.jpg"
    assert read_image_file(path) == path.read_bytes()
    assert read_image_file(str(path), max_pixels=1) == path.read_bytes()


def test_read_image_file_reads_past_a_zero_stat_size() -> None:
    """Files in /proc report size 0 but have content: read to the end, not to st_size."""
    data = read_image_file("/proc/self/status")
    assert data.startswith(b"Name:")
    with pytest.raises(ImageError, match="not an image"):
        load_image("/proc/self/status")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("missing.jpg", "no such file"),
        ("nul\0byte.jpg", "cannot read file"),
        ("file.jpg/child.jpg", "cannot read file"),
    ],
)
def test_read_image_file_errors_name_the_path(tmp_path: Path, path: str, words: str) -> None:
    (tmp_path / "file.jpg").write_bytes(b"x")
    target = f"{tmp_path}/{path}"
    with pytest.raises(ImageError, match=words) as info:
        read_image_file(target)
    assert str(tmp_path) in str(info.value)


def test_read_image_file_invalid_max_pixels(data_dir: Path) -> None:
    with pytest.raises(ImageError, match="max_pixels"):
        read_image_file(data_dir / "mtcnn/ivan.jpg", max_pixels=0)
