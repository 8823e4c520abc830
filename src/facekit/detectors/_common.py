"""Pieces every detector needs: option checks, letterboxing, batching by input shape,
non-maximum suppression, result building, and the base of the letterboxing ONNX detectors."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

import cv2
import numpy as np

from .._onnx import OnnxModel
from ..errors import ConfigError
from ..types import Detection

if TYPE_CHECKING:
    from ..io import ImageInput
    from ..zoo import ModelSpec

__all__ = [
    "Letterbox",
    "LetterboxDetector",
    "check_input_size",
    "check_options",
    "letterbox",
    "nms",
    "nms_per_image",
    "same_shape_batches",
    "to_detections",
]


def check_options(
    *,
    score_threshold: float | None = None,
    nms_threshold: float | None = None,
    max_faces: int | None = None,
    padding: float | None = None,
    batch_size: int | None = None,
) -> None:
    """Validate the options detectors share (``None``: not an option of the caller, or
    no limit for ``max_faces``).

    Raises:
        ConfigError: a score threshold outside [0, 1], an NMS threshold outside (0, 1],
            ``max_faces`` below 1, a padding outside [0, 2] or a batch size below 1.
    """
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if nms_threshold is not None and not 0.0 < nms_threshold <= 1.0:
        raise ConfigError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
    if max_faces is not None and max_faces < 1:
        raise ConfigError(f"max_faces must be at least 1, got {max_faces}")
    if padding is not None and not 0.0 <= padding <= 2.0:
        raise ConfigError(f"padding must be in [0, 2], got {padding}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")


def check_input_size(
    requested: tuple[int, int] | None, spec: ModelSpec | None, multiple: int = 32
) -> tuple[int, int]:
    """The network input ``(width, height)`` of a detector with a free input size.

    Args:
        requested: the caller's ``input_size``; ``None`` for the zoo entry's (``spec``),
            else 640×640.
        multiple: the network's largest stride: both sides must be positive multiples of it.

    Raises:
        ConfigError: ``requested`` is not two positive multiples of ``multiple``.
    """
    if requested is None:
        return spec.input_size if spec is not None else (640, 640)
    try:
        width, height = (int(v) for v in requested)
    except (TypeError, ValueError):
        raise ConfigError(f"input_size must be (width, height), got {requested!r}") from None
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise ConfigError(f"input_size must be positive multiples of {multiple}, got {requested}")
    return width, height


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image was fitted into a network input: resized by ``scale_x, scale_y`` and
    pasted with its top-left corner at ``offset`` (pixels of the input), the rest zero."""

    scale_x: float
    scale_y: float
    offset: int = 0

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map ``(..., 2k)`` interleaved x, y network coordinates back to image pixels."""
        out = points.astype(np.float32, copy=True) - self.offset
        out[..., 0::2] /= self.scale_x
        out[..., 1::2] /= self.scale_y
        return out


def letterbox(
    image: np.ndarray, size: tuple[int, int], padding: float = 0.0, multiple: int | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Fit ``image`` into ``size = (width, height)`` keeping its aspect ratio.

    Args:
        image: ``(h, w, 3)`` uint8.
        size: network input ``(width, height)``.
        padding: black margin added on every side, as a fraction of the image's longer
            side, so faces that fill the whole image still look like faces to the network.
        multiple: crop the canvas to the resized image and its margins, rounded up to a
            multiple of this many pixels (for fully convolutional networks: a 4:3 photo
            in a 640×640 input then costs 640×480); ``None`` keeps the whole ``size``.
            The scale is the same either way.

    Returns:
        The ``(height, width, 3)`` uint8 canvas and the `Letterbox` to undo it.
    """
    width, height = size
    h, w = image.shape[:2]
    margin = padding * max(h, w)
    scale = min(width / (w + 2 * margin), height / (h + 2 * margin))
    offset = round(margin * scale)
    new_w = max(1, min(width - offset, round(w * scale)))
    new_h = max(1, min(height - offset, round(h * scale)))
    if multiple is not None:
        width = min(width, -(-(new_w + 2 * offset) // multiple) * multiple)
        height = min(height, -(-(new_h + 2 * offset) // multiple) * multiple)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    canvas[offset : offset + new_h, offset : offset + new_w] = cv2.resize(
        image, (new_w, new_h), interpolation=interpolation
    )
    return canvas, Letterbox(new_w / w, new_h / h, offset)


def same_shape_batches(inputs: Sequence[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of ``inputs`` in runs of at most ``batch_size`` inputs of one shape (trimmed
    letterboxed inputs of a batch may differ in shape): the indices of each shape in input
    order, shapes in order of first appearance."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, array in enumerate(inputs):
        by_shape.setdefault(array.shape, []).append(index)
    return [
        indices[start : start + batch_size]
        for indices in by_shape.values()
        for start in range(0, len(indices), batch_size)
    ]


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """Greedy non-maximum suppression.

    Args:
        boxes: ``(N, 4)`` ``x1, y1, x2, y2``.
        scores: ``(N,)``.
        iou_threshold: a box overlapping a kept, higher-scoring box by more than this is
            dropped.
        mode: overlap as intersection over union (``"union"``), or over the smaller of the
            two areas (``"min"``, MTCNN's last stage: drops boxes nested in a kept one).

    Returns:
        Indices of the kept boxes, highest score first.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        iw = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        ih = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = iw * ih
        if mode == "min":
            overlap = inter / np.maximum(np.minimum(areas[best], areas[rest]), 1e-9)
        else:
            overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def nms_per_image(
    boxes: np.ndarray,
    scores: np.ndarray,
    image_ids: np.ndarray,
    iou_threshold: float,
    mode: Literal["union", "min"] = "union",
) -> np.ndarray:
    """`nms` within each image of a batch (boxes of different images never suppress each
    other). Each image is suppressed on its own: a greedy pass costs boxes × kept boxes,
    so one pass over the whole batch would cost the square of the batch size.

    Args:
        image_ids: ``(N,)`` integer image index of each box.

    Returns:
        Indices of the kept boxes, grouped by image in ascending image index, highest
        score first within an image.
    """
    kept = [np.zeros(0, dtype=np.int64)]
    for image in np.unique(image_ids):
        mine = np.flatnonzero(image_ids == image)
        kept.append(mine[nms(boxes[mine], scores[mine], iou_threshold, mode)])
    return np.concatenate(kept)


def to_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    landmarks: np.ndarray,
    image_size: tuple[int, int],
    max_faces: int | None,
) -> list[Detection]:
    """Build `Detection` objects, highest score first, boxes clipped to the image.

    Args:
        boxes: ``(N, 4)`` in image pixels, already suppressed and sorted.
        scores: ``(N,)``.
        landmarks: ``(N, 5, 2)`` in image pixels.
        image_size: ``(width, height)`` of the image.
        max_faces: keep at most this many (the highest-scoring).
    """
    if max_faces is not None:
        boxes, scores, landmarks = boxes[:max_faces], scores[:max_faces], landmarks[:max_faces]
    width, height = image_size
    clipped = boxes.copy()
    clipped[:, 0::2] = np.clip(clipped[:, 0::2], 0, width)
    clipped[:, 1::2] = np.clip(clipped[:, 1::2], 0, height)
    return [
        Detection((box[0], box[1], box[2], box[3]), score, kps)
        for box, score, kps in zip(clipped.tolist(), scores.tolist(), landmarks, strict=True)
    ]


_Resized = TypeVar("_Resized", bound="LetterboxDetector")


class LetterboxDetector(OnnxModel, ABC):
    """Base of the ONNX Runtime detectors that letterbox each image into a network input of
    `input_size` (SCRFD, CenterFace, YuNet): checks and keeps the options they share.

    A subclass keeps its own signature, defaults and docstring for these options, passes
    them on, then reads its graph, sets ``input_size = self._choose_size(...)`` and
    implements `detect_batch`.

    Args:
        model, model_dir, device, download, progress, threads: see `OnnxModel`.
        backend: registry name of the subclass, for its default model.
        score_threshold, nms_threshold, max_faces, padding, batch_size: see `check_options`
            (a graph that takes one image a run passes ``batch_size=1``).
        max_pixels: largest image accepted, in pixels (see `load_image`).
        trim: trim each letterboxed input to the resized image (see `letterbox`'s
            ``multiple``).

    Raises:
        ConfigError: an option out of range (see `check_options`).
    """

    input_size: tuple[int, int]
    """Network input ``(width, height)`` in pixels."""

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        *,
        backend: str,
        model_dir: str | os.PathLike[str] | None,
        score_threshold: float,
        nms_threshold: float,
        max_faces: int | None,
        padding: float,
        batch_size: int,
        max_pixels: int,
        device: str,
        download: bool | None,
        progress: bool,
        threads: int | None,
        trim: bool,
    ) -> None:
        check_options(
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_faces=max_faces,
            padding=padding,
            batch_size=batch_size,
        )
        super().__init__(
            model,
            backend=backend,
            task="detection",
            model_dir=model_dir,
            device=device,
            download=download,
            progress=progress,
            threads=threads,
        )
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_faces = max_faces
        self.padding = padding
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.trim = trim

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name!r}, input_size={self.input_size}, "
            f"score_threshold={self.score_threshold}, nms_threshold={self.nms_threshold})"
        )

    def _choose_size(self, requested: tuple[int, int] | None) -> tuple[int, int]:
        """The network input ``(width, height)`` for the caller's ``input_size`` (see
        `check_input_size`: multiples of 32, ``None`` for the zoo entry's).

        Raises:
            ConfigError: not a size this detector can run at.
        """
        return check_input_size(requested, self._model.spec)

    def with_input_size(self: _Resized, input_size: tuple[int, int]) -> _Resized:
        """This detector at another network input size, sharing the loaded model.

        A small input (128–192) finds faces that fill the whole image, which the default
        640 misses (the second pass of `facekit.detectors.tight.detect_filling` runs at
        160×160).

        Args:
            input_size: ``(width, height)``, positive multiples of 32.

        Raises:
            ConfigError: the size is not made of positive multiples of 32, or the graph
                has a fixed input of another size.
        """
        resized = copy.copy(self)
        resized.input_size = self._choose_size(input_size)
        return resized

    def detect(self, image: ImageInput) -> list[Detection]:
        """Faces in one image, highest score first.

        Args:
            image: anything `load_image` accepts; arrays are RGB.

        Returns:
            Detections with boxes and landmarks in pixels of ``image``.
        """
        return self.detect_batch([image])[0]

    def _detections(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        landmarks: np.ndarray,
        box: Letterbox,
        image_size: tuple[int, int],
    ) -> list[Detection]:
        """Detections of one image from candidates in pixels of the network input: mapped
        back to the image, suppressed (`nms` at ``nms_threshold``), at most ``max_faces``,
        highest score first.

        Args:
            boxes: ``(N, 4)`` ``x1, y1, x2, y2``.
            scores: ``(N,)``.
            landmarks: ``(N, 5, 2)`` ``x, y``.
            box: how the image was letterboxed.
            image_size: ``(width, height)`` of the image.
        """
        boxes, landmarks = box.to_image(boxes), box.to_image(landmarks)
        kept = nms(boxes, scores, self.nms_threshold)
        return to_detections(boxes[kept], scores[kept], landmarks[kept], image_size, self.max_faces)

    @abstractmethod
    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image (sizes may differ), one list per image in input order."""
