"""Result types: frozen, slotted dataclasses with documented units and shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

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


JSONValue = Any
"""A value `json.dumps` accepts: str, int, float, bool, None, or lists/dicts of them."""


def _text(value: str) -> str:
    """``value`` safe to encode as UTF-8: lone surrogates (undecodable bytes of a file name,
    kept by ``os.fsdecode``) become ``\\xNN`` escapes of the original bytes."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _finite(value: float) -> float | None:
    """``value``, or ``None`` for inf/NaN (not valid JSON)."""
    return value if math.isfinite(value) else None


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

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: ``{"box": [x1, y1, x2, y2], "score": s, "landmarks": [[x, y] * 5]}``
        (pixels)."""
        return {
            "box": list(self.box),
            "score": self.score,
            "landmarks": self.landmarks.astype(float).tolist(),
        }


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

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: the detection's fields plus ``"embedding"`` (list of ``D`` floats); the
        crop's pixels are left out."""
        return {**self.detection.to_dict(), "embedding": self.embedding.astype(float).tolist()}


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

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: ``{"likely": ..., "same": ..., "protocol": ...}``."""
        return {"likely": self.likely, "same": self.same, "protocol": self.protocol}


@dataclass(frozen=True, slots=True, eq=False)
class Verification:
    """The result of comparing the faces of two images.

    Attributes:
        similarity: cosine similarity of the two embeddings, in ``[-1, 1]``.
        threshold: the decision threshold (``thresholds.likely``) used for ``same``.
        same: ``similarity >= threshold``.
        verdict: "different", "likely same" or "same": "same" at or above
            ``thresholds.same``, "likely same" from ``thresholds.likely`` (see `Thresholds`).
        thresholds: both thresholds and their provenance.
        face_a: the face used from the first image.
        face_b: the face used from the second image.
        faces_found: how many faces were detected in the first and the second image; more
            than 1 means the face policy chose one of several (check it was the right one).
    """

    similarity: float
    threshold: float
    same: bool
    verdict: Verdict
    thresholds: Thresholds
    face_a: Face
    face_b: Face
    faces_found: tuple[int, int] = (1, 1)

    def __repr__(self) -> str:
        return (
            f"Verification(similarity={self.similarity:.4f}, verdict={self.verdict!r}, "
            f"same={self.same}, thresholds=(likely={self.thresholds.likely:.4f}, "
            f"same={self.thresholds.same:.4f}))"
        )

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: similarity, verdict, same, the decision ``threshold``, both
        ``thresholds``, ``faces_found`` and both faces (`Face.to_dict`)."""
        return {
            "similarity": self.similarity,
            "verdict": self.verdict,
            "same": self.same,
            "threshold": self.threshold,
            "thresholds": self.thresholds.to_dict(),
            "faces_found": list(self.faces_found),
            "face_a": self.face_a.to_dict(),
            "face_b": self.face_b.to_dict(),
        }


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
        candidates: the ``top_k`` nearest ``(identity, similarity)`` pairs, best first;
            kept for unknown faces too (the nearest identity and its score).
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

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: ``identity`` (``None`` = unknown), similarity, margin (``None`` when
        infinite: one identity in the gallery), threshold, ``candidates`` as
        ``[{"identity", "similarity"}]`` and the ``face`` (`Detection.to_dict`)."""
        return {
            "identity": None if self.identity is None else _text(self.identity),
            "similarity": self.similarity,
            "margin": _finite(self.margin),
            "threshold": self.threshold,
            "candidates": [
                {"identity": _text(name), "similarity": float(score)}
                for name, score in self.candidates
            ],
            "face": self.face.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class EnrolledFace:
    """A face added to a gallery: whose, from which file, where in it.

    Attributes:
        identity: the name it was enrolled under.
        source: the file (or input) it came from.
        box: ``(x1, y1, x2, y2)`` in pixels of that image (the whole crop for inputs
            enrolled with ``aligned=True``).
        score: detector score (``None`` for ``aligned=True`` inputs: not detected).
        faces_found: faces detected in the image (more than 1: the face policy chose one,
            check it was the right person; 0: an aligned input, not detected).
    """

    identity: str
    source: str
    box: Box
    score: float | None
    faces_found: int = 1

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: identity, source, box, score, faces_found."""
        return {
            "identity": _text(self.identity),
            "source": _text(self.source),
            "box": [float(v) for v in self.box],
            "score": None if self.score is None else float(self.score),
            "faces_found": self.faces_found,
        }


@dataclass(frozen=True, slots=True)
class EnrollProblem:
    """An input that added nothing, and why.

    Attributes:
        source: the file (or input) concerned.
        identity: the identity it was to be enrolled under.
        reason: the full reason, naming the input.
        kind: the reason's group (`EnrollReport.failures_by_reason`): "no face found",
            "unreadable image", "several faces", "quality: <check>", "invalid identity name",
            "gallery error", "already enrolled" or "other".
    """

    source: str
    identity: str
    reason: str
    kind: str = "other"

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: source, identity, reason, kind."""
        return {
            "source": _text(self.source),
            "identity": _text(self.identity),
            "reason": _text(self.reason),
            "kind": self.kind,
        }


@dataclass(frozen=True, slots=True)
class EnrollReport:
    """What an enrolment did.

    Attributes:
        added: faces added, in input order.
        skipped: inputs already in the gallery (same content sha256): nothing to do.
        failed: inputs that could not be enrolled (unreadable, no face, several faces under
            the ``"error"`` policy, rejected by the quality filter, an invalid identity
            name), with the reason.
    """

    added: tuple[EnrolledFace, ...] = ()
    skipped: tuple[EnrollProblem, ...] = ()
    failed: tuple[EnrollProblem, ...] = ()

    @property
    def several_faces(self) -> tuple[EnrolledFace, ...]:
        """Added faces whose image had more than one face: the face policy picked one of
        them; check it was the right person."""
        return tuple(face for face in self.added if face.faces_found > 1)

    def failures_by_reason(self) -> dict[str, list[EnrollProblem]]:
        """``failed`` grouped by `EnrollProblem.kind`, largest group first."""
        groups: dict[str, list[EnrollProblem]] = {}
        for problem in self.failed:
            groups.setdefault(problem.kind, []).append(problem)
        return dict(sorted(groups.items(), key=lambda item: -len(item[1])))

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: the counts, ``failures_by_reason`` as counts per kind, and the
        ``added``, ``several_faces``, ``skipped`` and ``failed`` entries."""
        return {
            "counts": {
                "added": len(self.added),
                "skipped": len(self.skipped),
                "failed": len(self.failed),
                "several_faces": len(self.several_faces),
            },
            "failures_by_reason": {
                kind: len(problems) for kind, problems in self.failures_by_reason().items()
            },
            "added": [face.to_dict() for face in self.added],
            "several_faces": [face.to_dict() for face in self.several_faces],
            "skipped": [problem.to_dict() for problem in self.skipped],
            "failed": [problem.to_dict() for problem in self.failed],
        }

    def __str__(self) -> str:
        several = len(self.several_faces)
        return (
            f"{len(self.added)} added"
            + (f" ({several} from images with several faces)" if several else "")
            + f", {len(self.skipped)} skipped (already enrolled), {len(self.failed)} failed"
        )
