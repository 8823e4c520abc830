"""Pictures for people: detections with labels, side-by-side matches, atomic saving.

All functions take and return ``(H, W, 3)`` uint8 RGB arrays and never modify their input.
Labels are drawn with OpenCV's Hershey font, which has ASCII glyphs only: other characters
are drawn as ``?``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageError
from .types import Detection, FaceMatch

__all__ = [
    "SAVE_EXTENSIONS",
    "draw_faces",
    "draw_matches",
    "match_label",
    "save_image",
    "side_by_side",
]

Color = tuple[int, int, int]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WRITERS = {
    ".png": [],
    ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".jpeg": [cv2.IMWRITE_JPEG_QUALITY, 95],
    ".webp": [cv2.IMWRITE_WEBP_QUALITY, 95],
    ".bmp": [],
}
SAVE_EXTENSIONS = frozenset(_WRITERS)
"""The file extensions `save_image` writes (lower case, with the dot)."""


def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _label(canvas: np.ndarray, text: str, x: int, y: int, color: Color, scale: float) -> None:
    """A filled strip with ``text`` whose bottom-left corner is at ``(x, y)``, moved inside
    the image when it would leave it."""
    thickness = max(1, round(scale * 2))
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    pad = max(2, round(height * 0.3))
    top = y - height - baseline - 2 * pad
    if top < 0:
        y, top = y - top, 0
    x = int(np.clip(x, 0, max(0, canvas.shape[1] - width - 2 * pad)))
    cv2.rectangle(canvas, (x, top), (x + width + 2 * pad, y), color, cv2.FILLED)
    brightness = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if brightness > 140 else (255, 255, 255)
    cv2.putText(
        canvas, text, (x + pad, y - baseline - pad), _FONT, scale, ink, thickness, cv2.LINE_AA
    )


def draw_faces(
    image: np.ndarray,
    detections: Sequence[Detection],
    labels: Sequence[str | None] | None = None,
    *,
    color: Color = (0, 200, 0),
    unknown_color: Color = (220, 0, 0),
) -> np.ndarray:
    """A copy of ``image`` with each face's box, 5 landmarks and label.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        detections: the faces.
        labels: one per face; ``None`` draws "unknown" in ``unknown_color``. Without
            labels only boxes and landmarks are drawn.
        color: RGB of labelled faces.
        unknown_color: RGB of unknown faces.

    Line width and text size follow the image size, so they stay readable on large photos.
    """
    if labels is None:
        return _draw(image, detections, [""] * len(detections), [color] * len(detections))
    if len(labels) != len(detections):
        raise ValueError(f"{len(labels)} labels for {len(detections)} faces")
    return _draw(
        image,
        detections,
        [label if label is not None else "unknown" for label in labels],
        [color if label is not None else unknown_color for label in labels],
    )


def match_label(match: FaceMatch) -> str:
    """The label of an identified face: ``"alice 0.62"``, or for an unknown face its nearest
    candidate, ``"unknown (nearest bob 0.31)"`` (``"unknown"`` when the gallery is empty)."""
    if match.identity is not None:
        return f"{match.identity} {match.similarity:.2f}"
    if match.candidates:
        name, similarity = match.candidates[0]
        return f"unknown (nearest {name} {similarity:.2f})"
    return "unknown"


def draw_matches(
    image: np.ndarray,
    matches: Sequence[FaceMatch],
    *,
    color: Color = (0, 200, 0),
    unknown_color: Color = (220, 0, 0),
) -> np.ndarray:
    """A copy of ``image`` with each identified face's box, landmarks and `match_label`:
    known faces in ``color``, unknown ones in ``unknown_color`` (RGB)."""
    return _draw(
        image,
        [m.face for m in matches],
        [match_label(m) for m in matches],
        [color if m.identity is not None else unknown_color for m in matches],
    )


def _draw(
    image: np.ndarray,
    detections: Sequence[Detection],
    texts: Sequence[str],
    tints: Sequence[Color],
) -> np.ndarray:
    """A copy of ``image`` with each box and its landmarks in its tint, and its text (none
    when empty) in a strip above it."""
    canvas: np.ndarray = np.ascontiguousarray(image, dtype=np.uint8).copy()
    side = max(canvas.shape[:2])
    thickness = max(1, round(side / 400))
    scale = max(0.35, side / 1500)
    for detection, text, tint in zip(detections, texts, tints, strict=True):
        x1, y1, x2, y2 = (round(v) for v in detection.box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), tint, thickness, cv2.LINE_AA)
        if np.isfinite(detection.landmarks).all():
            for x, y in detection.landmarks:
                cv2.circle(
                    canvas, (round(float(x)), round(float(y))), thickness + 1, tint, cv2.FILLED
                )
        if text:
            _label(canvas, _ascii(text), x1, y1, tint, scale)
    return canvas


def side_by_side(
    query: np.ndarray,
    match: np.ndarray,
    *,
    similarity: float,
    query_label: str = "query",
    match_label: str = "match",
    height: int = 224,
) -> np.ndarray:
    """Two images at the same ``height``, side by side, with a caption under them naming
    both and giving the similarity.

    Returns:
        ``(height + caption, W, 3)`` uint8 RGB.
    """
    resized = [
        cv2.resize(
            np.ascontiguousarray(im, dtype=np.uint8),
            (max(1, round(im.shape[1] * height / im.shape[0])), height),
            interpolation=cv2.INTER_AREA if im.shape[0] > height else cv2.INTER_LINEAR,
        )
        for im in (query, match)
    ]
    gap = max(4, height // 28)
    caption = max(28, height // 5)
    width = resized[0].shape[1] + gap + resized[1].shape[1]
    canvas = np.full((height + caption, max(width, 2 * height), 3), 255, dtype=np.uint8)
    canvas[:height, : resized[0].shape[1]] = resized[0]
    canvas[:height, resized[0].shape[1] + gap : width] = resized[1]
    scale = caption / 60
    thickness = max(1, round(scale * 2))
    text = _ascii(f"{query_label} | {match_label} | similarity {similarity:.3f}")
    (text_width, _), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    if text_width > canvas.shape[1] - 8:
        scale *= (canvas.shape[1] - 8) / text_width
    cv2.putText(
        canvas,
        text,
        (4, height + round(caption * 0.7)),
        _FONT,
        scale,
        (0, 0, 0),
        thickness,
        cv2.LINE_AA,
    )
    return canvas


def save_image(path: str | os.PathLike[str], image: np.ndarray, *, overwrite: bool = True) -> None:
    """Write an RGB image by extension (.png, .jpg/.jpeg, .webp, .bmp), atomically: to a
    temporary file in the same folder, then renamed into place. The file is created like
    any other (permissions ``0o666`` less the umask).

    Args:
        overwrite: replace an existing file; ``False`` refuses to (`ImageError`).

    Raises:
        ImageError: unsupported extension, the file exists and ``overwrite`` is false, or
            the image could not be written.
    """
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in _WRITERS:
        raise ImageError(f"{target}: unsupported image extension (use {', '.join(_WRITERS)})")
    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"{target}: expected an (H, W, 3) RGB image, got {array.shape}")
    ok, encoded = cv2.imencode(suffix, array[:, :, ::-1], _WRITERS[suffix])
    if not ok:
        raise ImageError(f"{target}: could not encode the image")
    temp: Path | None = None
    reserved = False
    try:
        temp, fd = _new_file(target)
        with os.fdopen(fd, "wb") as handle:
            handle.write(encoded.tobytes())
        if not overwrite:
            # Reserve the name: fails if the file exists, even if made by another process.
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            reserved = True
        os.replace(temp, target)
        temp = None
    except FileExistsError:
        raise ImageError(f"{target}: already exists (not replaced)") from None
    except OSError as exc:
        if reserved:
            target.unlink(missing_ok=True)
        raise ImageError(f"{target}: cannot write ({exc.strerror or exc})") from None
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)


def _new_file(target: Path) -> tuple[Path, int]:
    """A new hidden temporary file beside ``target``, opened for writing with mode
    ``0o666`` (the umask applies, unlike `tempfile.mkstemp`'s ``0o600``)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            return temp, os.open(temp, flags, 0o666)
        except FileExistsError:
            continue
    raise OSError(f"no free temporary name beside {target}")
