"""Result types: frozen, slotted dataclasses with documented units and shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from .errors import ConfigError

__all__ = [
    "Box",
    "Detection",
    "EnrollProblem",
    "EnrollReport",
    "EnrolledFace",
    "Face",
    "FaceMatch",
    "Thresholds",
    "Verdict",
    "Verification",
]

Box = tuple[float, float, float, float]
"""Axis-aligned box ``(x1, y1, x2, y2)`` in image pixels, ``x2 > x1``, ``y2 > y1``."""

Verdict = Literal["different", "likely same", "same"]
"""The tiered verification verdict, from least to most certain of a match."""


def _frozen_array(value: npt.ArrayLike, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
    array: np.ndarray = np.array(value, dtype=dtype)
    if array.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, got {array.shape}")
    array.setflags(write=False)
    return array


@dataclass(frozen=True, slots=True, eq=False)
class Detection:
    """One face found by a detector.

    Attributes:
        box: ``(x1, y1, x2, y2)`` in pixels of the original image (float).
        score: detector confidence in ``[0, 1]``.
        landmarks: ``(5, 2)`` float32 array of ``(x, y)`` pixels, in the order left eye,
            right eye, nose tip, left mouth corner, right mouth corner, where "left" is the
            image left (the subject's right eye). Read-only.
    """

    box: Box
    score: float
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "box", tuple(float(v) for v in self.box))
        object.__setattr__(self, "score", float(self.score))
        object.__setattr__(self, "landmarks", _frozen_array(self.landmarks, np.float32, (5, 2)))

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        return max(self.width, 0.0) * max(self.height, 0.0)

    def __repr__(self) -> str:
        x1, y1, x2, y2 = self.box
        return f"Detection(box=({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}), score={self.score:.3f})"


@dataclass(frozen=True, slots=True, eq=False)
class Face:
    """A detected face with its aligned crop and embedding.

    Attributes:
        detection: the `Detection` (box, score, landmarks in image pixels).
        crop: aligned ``(H, W, 3)`` uint8 RGB crop the embedder saw. Read-only.
        embedding: ``(D,)`` float32 unit vector (L2 norm 1). Read-only.
    """

    detection: Detection
    crop: np.ndarray
    embedding: np.ndarray

    def __post_init__(self) -> None:
        crop = np.array(self.crop, dtype=np.uint8)
        crop.setflags(write=False)
        embedding = np.array(self.embedding, dtype=np.float32)
        if embedding.ndim != 1:
            raise ValueError(f"embedding must be 1-D, got shape {embedding.shape}")
        embedding.setflags(write=False)
        object.__setattr__(self, "crop", crop)
        object.__setattr__(self, "embedding", embedding)

    @property
    def box(self) -> Box:
        """Shortcut for ``detection.box``."""
        return self.detection.box

    def __repr__(self) -> str:
        return f"Face({self.detection!r}, dim={self.embedding.shape[0]})"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The two cosine-similarity thresholds of an embedder, and where they come from.

    Attributes:
        likely: similarity at or above which two faces are called the same person
            (``Verification.same``); between ``likely`` and ``same`` the verdict is
            "likely same".
        same: stricter similarity at or above which the verdict is "same".
        protocol: how the values were obtained (data, pairs, operating points).
    """

    likely: float
    same: float
    protocol: str = "set by the user"

    def __post_init__(self) -> None:
        if not (-1.0 <= self.likely <= self.same <= 1.0):
            raise ConfigError(
                f"thresholds must satisfy -1 <= likely <= same <= 1, got likely={self.likely}, "
                f"same={self.same}"
            )

    def verdict(self, similarity: float) -> Verdict:
        """The tiered verdict for a cosine ``similarity``."""
        if similarity >= self.same:
            return "same"
        if similarity >= self.likely:
            return "likely same"
        return "different"


@dataclass(frozen=True, slots=True, eq=False)
class Verification:
    """The result of comparing the faces of two images.

    Attributes:
        similarity: cosine similarity of the two embeddings, in ``[-1, 1]``.
        threshold: the decision threshold (``thresholds.likely``) used for ``same``.
        same: ``similarity >= threshold``.
        verdict: "different", "likely same" or "same" (see `Thresholds`).
        thresholds: both thresholds and their provenance.
        face_a: the face used from the first image.
        face_b: the face used from the second image.
    """

    similarity: float
    threshold: float
    same: bool
    verdict: Verdict
    thresholds: Thresholds
    face_a: Face
    face_b: Face

    def __repr__(self) -> str:
        return (
            f"Verification(similarity={self.similarity:.4f}, same={self.same}, "
            f"verdict={self.verdict!r}, threshold={self.threshold:.4f})"
        )


@dataclass(frozen=True, slots=True, eq=False)
class FaceMatch:
    """Who one detected face is, according to a gallery.

    Attributes:
        face: the detected face.
        identity: the best identity, or ``None`` when its similarity is below the
            threshold ("unknown").
        similarity: cosine similarity of the best identity (even when unknown).
        margin: ``similarity`` minus the runner-up identity's similarity (``inf`` when the
            gallery holds one identity): a small margin means an ambiguous match.
        candidates: the ``top_k`` nearest ``(identity, similarity)`` pairs, best first.
        threshold: the threshold the decision used.
    """

    face: Detection
    identity: str | None
    similarity: float
    margin: float
    candidates: tuple[tuple[str, float], ...]
    threshold: float

    def __repr__(self) -> str:
        who = self.identity if self.identity is not None else "unknown"
        return f"FaceMatch({who!r}, similarity={self.similarity:.3f}, margin={self.margin:.3f})"


@dataclass(frozen=True, slots=True)
class EnrolledFace:
    """A face added to a gallery: whose, from which file, where in it."""

    identity: str
    source: str
    box: Box
    score: float


@dataclass(frozen=True, slots=True)
class EnrollProblem:
    """An input that added nothing, and why."""

    source: str
    identity: str
    reason: str


@dataclass(frozen=True, slots=True)
class EnrollReport:
    """What an enrolment did.

    Attributes:
        added: faces added, in input order.
        skipped: inputs already in the gallery (same content sha256): nothing to do.
        failed: inputs that could not be enrolled (unreadable, no face, several faces under
            the ``"error"`` policy, rejected by the quality filter), with the reason.
    """

    added: tuple[EnrolledFace, ...] = ()
    skipped: tuple[EnrollProblem, ...] = ()
    failed: tuple[EnrollProblem, ...] = ()

    def __str__(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.skipped)} skipped (already enrolled), "
            f"{len(self.failed)} failed"
        )
