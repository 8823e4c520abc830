"""Box crops: the face's detector box plus a margin, resized to a square, no rotation.

This is how facenet-pytorch prepares FaceNet's input (``MTCNN(image_size=160, margin=0)``),
so FaceNet weights can be fed the crops they were evaluated on. Alignment to a landmark
template (`SimilarityAligner`) is usually better; this mode exists for fidelity.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import ConfigError

__all__ = ["BoxAligner"]


class BoxAligner:
    """Crops each face's box, widened by ``margin``, and resizes it to ``size``×``size``.

    Args:
        size: output side in pixels.
        margin: pixels of the *output* crop added around the box in all (half on each
            side), as facenet-pytorch's ``margin``: the box is widened by
            ``margin · box_width / (size - margin)`` image pixels (likewise in height).
        name: template name recorded in galleries.
    """

    def __init__(self, size: int = 160, margin: float = 0.0, name: str | None = None) -> None:
        if size < 8:
            raise ConfigError(f"size must be at least 8 pixels, got {size}")
        if not 0.0 <= margin < size:
            raise ConfigError(f"margin must be in [0, size), got {margin}")
        self._size = int(size)
        self.margin = float(margin)
        self.name = name if name is not None else f"box{size}_margin{margin:g}"

    @property
    def size(self) -> tuple[int, int]:
        """Crop ``(width, height)`` in pixels."""
        return self._size, self._size

    def __repr__(self) -> str:
        return f"BoxAligner(size={self._size}, margin={self.margin:g})"

    def align(
        self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray | None = None
    ) -> np.ndarray:
        """Crops of the faces of one image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            landmarks: ``(N, 5, 2)``, unused (the crop follows the box).
            boxes: ``(N, 4)`` ``x1, y1, x2, y2`` detector boxes in image pixels.

        Returns:
            ``(N, size, size, 3)`` uint8 RGB crops.

        Raises:
            ConfigError: no boxes given.
        """
        if boxes is None:
            raise ConfigError("BoxAligner crops detector boxes: pass boxes=")
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        height, width = image.shape[:2]
        grow = self.margin / (self._size - self.margin)
        extra_x = (boxes[:, 2] - boxes[:, 0]) * grow / 2
        extra_y = (boxes[:, 3] - boxes[:, 1]) * grow / 2
        x1 = np.clip(boxes[:, 0] - extra_x, 0, width).astype(int)
        y1 = np.clip(boxes[:, 1] - extra_y, 0, height).astype(int)
        x2 = np.clip(boxes[:, 2] + extra_x, 0, width).astype(int)
        y2 = np.clip(boxes[:, 3] + extra_y, 0, height).astype(int)
        crops = np.zeros((boxes.shape[0], self._size, self._size, 3), dtype=np.uint8)
        for index in range(boxes.shape[0]):  # cv2.resize takes one image
            if x2[index] <= x1[index] or y2[index] <= y1[index]:
                continue  # a box outside the image: a black crop
            face = image[y1[index] : y2[index], x1[index] : x2[index]]
            shrink = face.shape[0] > self._size or face.shape[1] > self._size
            crops[index] = cv2.resize(
                face,
                (self._size, self._size),
                interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
            )
        return crops
