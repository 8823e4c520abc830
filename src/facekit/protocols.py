"""The three stage interfaces. Any object with these methods plugs into `FaceRecognizer`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .types import Detection, Thresholds

__all__ = ["Aligner", "Detector", "Embedder"]


@runtime_checkable
class Detector(Protocol):
    """Finds faces: image → boxes, scores and 5 landmarks.

    A backend that several threads may call at once says so with a class attribute
    ``concurrent = True`` (not part of the protocol: without it the pipeline calls the
    backend from one thread at a time). The same holds for embedders.
    """

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in one ``(H, W, 3)`` uint8 RGB image, highest score first."""
        ...

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each of several RGB images (sizes may differ), one list per image."""
        ...


@runtime_checkable
class Aligner(Protocol):
    """Warps faces onto a landmark template."""

    @property
    def size(self) -> tuple[int, int]:
        """Output crop size ``(width, height)`` in pixels."""
        ...

    def align(
        self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray | None = None
    ) -> np.ndarray:
        """Crops ``(N, H, W, 3)`` uint8 from one RGB image, its faces' ``(N, 5, 2)``
        landmarks and ``(N, 4)`` ``x1, y1, x2, y2`` boxes (pixels). Landmark aligners
        ignore the boxes; box croppers need them."""
        ...


@runtime_checkable
class Embedder(Protocol):
    """Turns aligned crops into L2-normalised embeddings."""

    @property
    def name(self) -> str:
        """Model name (zoo name, or the file name of an unlisted model)."""
        ...

    @property
    def sha256(self) -> str:
        """sha256 of the weights: galleries are bound to it."""
        ...

    @property
    def dim(self) -> int:
        """Embedding dimension ``D``."""
        ...

    @property
    def flip(self) -> bool:
        """Whether embeddings are flip-averaged (crop + mirror)."""
        ...

    @property
    def template(self) -> str:
        """Name of the alignment template the model was trained with (see ``aligners``)."""
        ...

    @property
    def thresholds(self) -> Thresholds | None:
        """The model's verification thresholds on cosine similarity, or ``None`` when the
        model is not calibrated. Must not raise: on Python < 3.12 ``isinstance`` against this
        protocol reads every property."""
        ...

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``(N, H, W, 3)`` uint8 RGB crops → ``(N, D)`` float32 unit vectors."""
        ...
