"""``FaceRecognizer``: detector → aligner → embedder, and verification on top."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from . import registry
from .aligners import SimilarityAligner
from .errors import ConfigError, MultipleFacesError, NoFaceError
from .io import DEFAULT_MAX_PIXELS, ImageInput, describe, load_image
from .protocols import Aligner, Detector, Embedder
from .types import Detection, Face, Thresholds, Verification

__all__ = ["FacePolicy", "FaceRecognizer"]

FacePolicy = Literal["largest", "best", "error"] | int
"""Which face of an image to use when one is needed:

- ``"largest"``: the face with the largest box (default; the subject of a portrait);
- ``"best"``: the face with the highest detector score;
- ``"error"``: exactly one face is required, several raise `MultipleFacesError`;
- an ``int`` ``i``: the ``i``-th face in detector order (highest score first).
"""


class FaceRecognizer:
    """Finds, aligns and embeds faces, and compares them.

    Args:
        detector: a registered detector name (``"scrfd"``) or a `Detector` instance.
        embedder: a registered embedder name (``"arcface"``) or an `Embedder` instance.
        detector_model: zoo name or path for a detector given by name (default: the
            backend's default, buffalo_l's ``det_10g`` for SCRFD).
        embedder_model: zoo name or path for an embedder given by name (default:
            buffalo_l's ``w600k_r50`` for ArcFace).
        aligner: an `Aligner`; default: a similarity aligner to the embedder's template.
        face: which face to use when an image has several (see `FacePolicy`).
        thresholds: override the embedder's verification thresholds.
        model_dir: directory searched for model files first.
        max_pixels: largest image accepted, in pixels.
        device: "cpu", "cuda" or "cuda:N" for backends built by name.
        download: allow downloading missing zoo files (``None``: unless ``$FACEKIT_OFFLINE``).
        detector_options: extra keyword arguments for a detector built by name.
        embedder_options: extra keyword arguments for an embedder built by name.
    """

    def __init__(
        self,
        detector: str | Detector = "scrfd",
        embedder: str | Embedder = "arcface",
        *,
        detector_model: str | os.PathLike[str] | None = None,
        embedder_model: str | os.PathLike[str] | None = None,
        aligner: Aligner | None = None,
        face: FacePolicy = "largest",
        thresholds: Thresholds | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        detector_options: dict[str, Any] | None = None,
        embedder_options: dict[str, Any] | None = None,
    ) -> None:
        _check_policy(face)
        common = {"model_dir": model_dir, "device": device, "download": download}
        self.detector: Detector = _build(
            "detector",
            detector,
            detector_model,
            {**common, "max_pixels": max_pixels, **(detector_options or {})},
        )
        self.embedder: Embedder = _build(
            "embedder", embedder, embedder_model, {**common, **(embedder_options or {})}
        )
        self.aligner: Aligner = (
            aligner if aligner is not None else SimilarityAligner(self.embedder.template)
        )
        self.face = face
        self._thresholds = thresholds
        self.max_pixels = max_pixels

    def __repr__(self) -> str:
        return f"FaceRecognizer(detector={self.detector!r}, embedder={self.embedder!r})"

    @property
    def thresholds(self) -> Thresholds:
        """The verification thresholds in force (the override, else the embedder's)."""
        return self._thresholds if self._thresholds is not None else self.embedder.thresholds

    def load(self, image: ImageInput) -> np.ndarray:
        """``image`` as ``(H, W, 3)`` uint8 RGB, with this recogniser's pixel limit."""
        return load_image(image, max_pixels=self.max_pixels)

    def faces(self, image: ImageInput) -> list[Face]:
        """Every face of ``image`` with its aligned crop and embedding, detector order
        (highest score first)."""
        return self.faces_batch([image])[0]

    def faces_batch(self, images: Sequence[ImageInput]) -> list[list[Face]]:
        """`faces` for several images, detecting and embedding in batches."""
        arrays = [self.load(image) for image in images]
        detections = self.detector.detect_batch(arrays)
        return self._embed_faces(arrays, detections)

    def embed(self, image: ImageInput, face: FacePolicy | None = None) -> np.ndarray:
        """The ``(D,)`` float32 unit embedding of the chosen face of ``image``.

        Raises:
            NoFaceError: no face in the image.
            MultipleFacesError: several faces and the policy is ``"error"``.
        """
        return self._chosen_faces([image], face)[0].embedding

    def verify(
        self, image_a: ImageInput, image_b: ImageInput, face: FacePolicy | None = None
    ) -> Verification:
        """Compare the chosen face of ``image_a`` with the chosen face of ``image_b``.

        Returns:
            A `Verification` with the cosine similarity, the decision, the tiered
            verdict, the thresholds used and both faces.

        Raises:
            NoFaceError: an image has no face; the message names which (1 or 2).
        """
        face_a, face_b = self._chosen_faces([image_a, image_b], face)
        similarity = float(np.clip(np.dot(face_a.embedding, face_b.embedding), -1.0, 1.0))
        thresholds = self.thresholds
        return Verification(
            similarity=similarity,
            threshold=thresholds.likely,
            same=similarity >= thresholds.likely,
            verdict=thresholds.verdict(similarity),
            thresholds=thresholds,
            face_a=face_a,
            face_b=face_b,
        )

    def _chosen_faces(self, images: Sequence[ImageInput], face: FacePolicy | None) -> list[Face]:
        """Detect in all images in one batch, pick one face each, embed them in one batch."""
        policy = self.face if face is None else face
        _check_policy(policy)
        arrays = [self.load(image) for image in images]
        detections = self.detector.detect_batch(arrays)
        chosen = [
            [_choose(found, policy, number, image)]
            for number, (found, image) in enumerate(zip(detections, images, strict=True), 1)
        ]
        return [faces[0] for faces in self._embed_faces(arrays, chosen)]

    def _embed_faces(
        self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]
    ) -> list[list[Face]]:
        crops = [
            self.aligner.align(array, np.stack([d.landmarks for d in found]))
            for array, found in zip(arrays, detections, strict=True)
            if found
        ]
        if not crops:
            return [[] for _ in arrays]
        all_crops = np.concatenate(crops)
        embeddings = self.embedder.embed(all_crops)
        result: list[list[Face]] = []
        position = 0
        for found in detections:
            result.append(
                [
                    Face(det, all_crops[position + i], embeddings[position + i])
                    for i, det in enumerate(found)
                ]
            )
            position += len(found)
        return result


def _build(stage: registry.Stage, value: Any, model: Any, options: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return registry.create(stage, value, model, **options)
    if model is not None:
        raise ConfigError(f"{stage}_model applies to a {stage} given by name, not an instance")
    protocol = Detector if stage == "detector" else Embedder
    if not isinstance(value, protocol):
        raise ConfigError(
            f"{stage} must be a registered name or an object implementing facekit.protocols."
            f"{protocol.__name__}, got {type(value).__name__}"
        )
    return value


def _check_policy(policy: object) -> None:
    if isinstance(policy, bool) or not (
        policy in ("largest", "best", "error") or (isinstance(policy, int) and policy >= 0)
    ):
        raise ConfigError(
            f"face must be 'largest', 'best', 'error' or a non-negative index, got {policy!r}"
        )


def _choose(
    detections: Sequence[Detection], policy: FacePolicy, number: int, image: ImageInput
) -> Detection:
    where = f"image {number} ({describe(image)})"
    if not detections:
        raise NoFaceError(f"no face found in {where}")
    if policy == "largest":
        return max(detections, key=lambda d: d.area)
    if policy == "best":
        return max(detections, key=lambda d: d.score)
    if policy == "error":
        if len(detections) > 1:
            raise MultipleFacesError(f"{len(detections)} faces found in {where}, expected one")
        return detections[0]
    if policy >= len(detections):
        raise NoFaceError(f"face index {policy} requested but {where} has {len(detections)}")
    return detections[policy]
