"""Pieces every detector needs: letterboxing, non-maximum suppression, result building."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from ..errors import ConfigError
from ..types import Detection

__all__ = ["Letterbox", "check_options", "letterbox", "nms", "nms_per_image", "to_detections"]


def check_options(
    *,
    score_threshold: float | None = None,
    nms_threshold: float | None = None,
    max_faces: int | None = None,
) -> None:
    """Validate the options detectors share (``None``: not an option of the caller, or
    no limit for ``max_faces``).

    Raises:
        ConfigError: a score threshold outside [0, 1], an NMS threshold outside (0, 1], or
            ``max_faces`` below 1.
    """
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold}")
    if nms_threshold is not None and not 0.0 < nms_threshold <= 1.0:
        raise ConfigError(f"nms_threshold must be in (0, 1], got {nms_threshold}")
    if max_faces is not None and max_faces < 1:
        raise ConfigError(f"max_faces must be at least 1, got {max_faces}")


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
