"""A second detection pass for faces that fill the image: passport-style tight crops (ORL's
92×112 faces, 160×160 crops) and already-aligned 112×112 crops.

Detectors trained on photos miss a face that fills the frame: at SCRFD's 640 input such a
face is larger than its largest anchors. InsightFace's recognition demo runs SCRFD a second
time at a small input (128) for that reason. `detect_filling` does the equivalent for any
`Detector`: it shrinks the image, surrounds it with a black border so the face is a normal
fraction of the frame, runs the detector (at a small input when the detector can change its
input size, as `SCRFD.with_input_size`), and maps boxes and landmarks back to the original
image. Measured on the shared crops (all 400 ORL faces, the 160×160 and 112×112 crops):
see docs/reliability.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ..errors import ConfigError
from ..protocols import Detector
from ..types import Detection

__all__ = ["FILL_INPUT_SIZE", "FILL_MAX_SIDE", "FILL_PADDING", "Resizable", "detect_filling"]

_LOG = logging.getLogger(__name__)

FILL_PADDING = 0.5
"""Black border added on every side, as a fraction of the image's longer side: the face
then takes about half the padded frame."""

FILL_INPUT_SIZE = (160, 160)
"""Network input ``(width, height)`` of the second pass for detectors that can change it."""

FILL_MAX_SIDE = 320
"""Longer side (pixels) images are shrunk to before padding: plenty for a face that fills
the image, and it keeps the padded image small for detectors without a fixed input."""


@runtime_checkable
class Resizable(Protocol):
    """A detector that can run at another network input size (`SCRFD`)."""

    def with_input_size(self, input_size: tuple[int, int]) -> Detector:
        """The same detector at ``input_size = (width, height)``.

        Raises:
            ConfigError: the model cannot run at that size.
        """
        ...


def detect_filling(
    detector: Detector,
    images: Sequence[np.ndarray],
    *,
    padding: float = FILL_PADDING,
    input_size: tuple[int, int] = FILL_INPUT_SIZE,
    max_side: int = FILL_MAX_SIDE,
) -> list[list[Detection]]:
    """Faces that fill each image, found by a second pass made for them.

    Run it on images where the normal pass found nothing and one face per image is wanted
    (tight or aligned crops). Each image is shrunk to at most ``max_side`` pixels on its
    longer side, surrounded by a black border of ``padding`` × that side and detected
    (``detector.with_input_size(input_size)`` when the detector is `Resizable` and allows it,
    else the detector as it is); boxes and landmarks come back in pixels of the original
    image, boxes clipped to it.

    Args:
        detector: any `Detector`.
        images: ``(H, W, 3)`` uint8 RGB arrays (sizes may differ).
        padding: border on every side as a fraction of the shrunk image's longer side.
        input_size: network input ``(width, height)`` for a `Resizable` detector.
        max_side: longer side (pixels) of the image before padding; larger images are
            shrunk, smaller ones kept.

    Returns:
        One list per image, highest score first, in ``images``' coordinates.

    Raises:
        ConfigError: ``padding`` outside [0, 2], ``max_side`` below 32, or an image that is
            not an ``(H, W, 3)`` uint8 array.
    """
    if not 0.0 <= padding <= 2.0:
        raise ConfigError(f"padding must be in [0, 2], got {padding}")
    if max_side < 32:
        raise ConfigError(f"max_side must be at least 32 pixels, got {max_side}")
    framed = [_framed(image, padding, max_side) for image in images]
    found = _small_input(detector, input_size).detect_batch([canvas for canvas, _, _ in framed])
    return [
        _to_original(detections, scale, margin, (image.shape[1], image.shape[0]))
        for image, (_, scale, margin), detections in zip(images, framed, found, strict=True)
    ]


def _small_input(detector: Detector, input_size: tuple[int, int]) -> Detector:
    if isinstance(detector, Resizable):
        try:
            return detector.with_input_size(input_size)
        except ConfigError as exc:  # e.g. a graph with a fixed input: pad only
            _LOG.debug("second pass at the detector's own input size: %s", exc)
    return detector


def _framed(
    image: np.ndarray, padding: float, max_side: int
) -> tuple[np.ndarray, tuple[float, float], int]:
    """The shrunk image in its black border, the shrink factors ``(x, y)`` and the border
    width in pixels."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or 0 in array.shape:
        raise ConfigError(f"expected an (H, W, 3) uint8 RGB image, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    shrink = max_side / max(height, width)
    if shrink < 1.0:
        size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
        array = cv2.resize(array, size, interpolation=cv2.INTER_AREA)
    margin = round(padding * max(array.shape[:2]))
    canvas = cv2.copyMakeBorder(
        array, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=(0, 0, 0)
    )
    return canvas, (array.shape[1] / width, array.shape[0] / height), margin


def _to_original(
    detections: list[Detection],
    scale: tuple[float, float],
    margin: int,
    image_size: tuple[int, int],
) -> list[Detection]:
    """Detections on the framed image mapped back: minus the border, divided by the shrink
    factors, boxes clipped to ``image_size = (width, height)``; a box left with no area
    (a "face" found in the border only) is dropped."""
    width, height = image_size
    factors = np.asarray(scale, dtype=np.float64)
    mapped = []
    for detection in detections:
        box = (np.asarray(detection.box, dtype=np.float64) - margin) / np.tile(factors, 2)
        box[0::2] = np.clip(box[0::2], 0, width)
        box[1::2] = np.clip(box[1::2], 0, height)
        if box[2] <= box[0] or box[3] <= box[1]:
            continue
        landmarks = (detection.landmarks.astype(np.float64) - margin) / factors
        mapped.append(Detection(tuple(box.tolist()), detection.score, landmarks))
    return mapped
