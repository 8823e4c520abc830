"""``FaceRecognizer``: detector → aligner → embedder, and verification on top."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import registry
from .aligners import aligner_for
from .errors import ConfigError, FacekitError, GalleryError, MultipleFacesError, NoFaceError
from .gallery import Aggregate, EmbedderInfo, Gallery
from .gallery.sources import content_sha256, pairs
from .io import DEFAULT_MAX_PIXELS, ImageInput, describe, load_image
from .protocols import Aligner, Detector, Embedder
from .types import (
    Detection,
    EnrolledFace,
    EnrollProblem,
    EnrollReport,
    Face,
    FaceMatch,
    Thresholds,
    Verification,
)

if TYPE_CHECKING:
    from .quality import QualityFilter

__all__ = ["FacePolicy", "FaceRecognizer"]

_LOG = logging.getLogger(__name__)

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
        aligner: an `Aligner`; default: the aligner of the embedder's template (a
            similarity transform to its landmark template, or a box crop).
        face: which face to use when an image has several (see `FacePolicy`).
        thresholds: override the embedder's verification thresholds: a `Thresholds`, or
            the path of a file written by ``facekit calibrate`` (it must have been made
            with this embedder).
        model_dir: directory searched for model files first.
        max_pixels: largest image accepted, in pixels.
        device: "cpu", "cuda" or "cuda:N" for backends built by name.
        download: allow downloading missing zoo files (``None``: unless ``$FACEKIT_OFFLINE``).
        detector_options: extra keyword arguments for a detector built by name.
        embedder_options: extra keyword arguments for an embedder built by name.
        gallery: a gallery file (opened, or created when missing) or a `Gallery`, for
            `enroll` and `identify`; it must have been made by this embedder.
        quality: the filter faces must pass to be enrolled (default `QualityFilter()`).
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
        thresholds: Thresholds | str | os.PathLike[str] | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        detector_options: dict[str, Any] | None = None,
        embedder_options: dict[str, Any] | None = None,
        gallery: str | os.PathLike[str] | Gallery | None = None,
        quality: QualityFilter | None = None,
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
            aligner if aligner is not None else aligner_for(self.embedder.template)
        )
        self.face = face
        if isinstance(thresholds, (str, os.PathLike)):
            from .evaluation.calibration import load_thresholds

            thresholds = load_thresholds(thresholds, self.embedder)
        self._thresholds = thresholds
        self.max_pixels = max_pixels
        if quality is None:
            from .quality import QualityFilter

            quality = QualityFilter()
        self.quality = quality
        binding = EmbedderInfo.of(self.embedder)
        if isinstance(gallery, Gallery):
            if gallery.embedder is not None and gallery.embedder.differences(binding):
                raise GalleryError(
                    f"the gallery was made by another embedder "
                    f"({'; '.join(gallery.embedder.differences(binding))})"
                )
            self._gallery: Gallery | None = gallery
        else:
            self._gallery = Gallery(gallery, embedder=binding) if gallery is not None else None

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

    def embed_each(
        self,
        images: Sequence[ImageInput],
        *,
        face: FacePolicy | None = None,
        batch_size: int = 16,
        progress: bool = False,
    ) -> list[np.ndarray | FacekitError]:
        """The embedding of the chosen face of every image, or the error that image gave.

        Images are detected and embedded in batches of ``batch_size``; an input that fails
        (unreadable, no face, several under ``"error"``) gets its error in its place and
        does not stop the others.

        Returns:
            One entry per image: a ``(D,)`` float32 unit vector or a `FacekitError`.
        """
        policy = self.face if face is None else face
        _check_policy(policy)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        from tqdm.auto import tqdm

        results: list[np.ndarray | FacekitError] = []
        with tqdm(total=len(images), unit="image", disable=not progress) as bar:
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size]
                loaded: list[tuple[int, np.ndarray]] = []
                outcome: list[np.ndarray | FacekitError | None] = [None] * len(batch)
                for index, image in enumerate(batch):
                    try:
                        loaded.append((index, self.load(image)))
                    except FacekitError as exc:
                        outcome[index] = exc
                found = self.detector.detect_batch([array for _, array in loaded])
                chosen: list[tuple[int, np.ndarray, Detection]] = []
                for (index, array), detections in zip(loaded, found, strict=True):
                    try:
                        where = f"image {start + index + 1} ({describe(batch[index])})"
                        chosen.append((index, array, _choose(detections, policy, where)))
                    except FacekitError as exc:
                        outcome[index] = exc
                faces = self._embed_faces([c[1] for c in chosen], [[c[2]] for c in chosen])
                for (index, _, _), (face_found,) in zip(chosen, faces, strict=True):
                    outcome[index] = face_found.embedding
                results.extend(o for o in outcome if o is not None)
                bar.update(len(batch))
        return results

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
            [_choose(found, policy, f"image {number} ({describe(image)})")]
            for number, (found, image) in enumerate(zip(detections, images, strict=True), 1)
        ]
        return [faces[0] for faces in self._embed_faces(arrays, chosen)]

    def _embed_faces(
        self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]
    ) -> list[list[Face]]:
        crops = [
            self.aligner.align(
                array,
                np.stack([d.landmarks for d in found]),
                np.array([d.box for d in found], dtype=np.float64),
            )
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

    # --- galleries -------------------------------------------------------------------------

    @property
    def gallery(self) -> Gallery:
        """The gallery given to the constructor.

        Raises:
            ConfigError: none was given.
        """
        if self._gallery is None:
            raise ConfigError("no gallery: pass gallery=PATH to FaceRecognizer")
        return self._gallery

    def enroll(
        self,
        source: str | os.PathLike[str] | Iterable[tuple[str, ImageInput]],
        *,
        face: Literal["largest", "best", "error"] = "largest",
        batch_size: int = 16,
        progress: bool = True,
    ) -> EnrollReport:
        """Add the faces of ``source`` to the gallery.

        Args:
            source: a folder (folder per person ``root/alice/*.jpg``, or file name =
                identity ``root/alice.jpg``; jpg/jpeg/png/webp/bmp in any case, recursively)
                or an iterable of ``(identity, image)``.
            face: which face of an image with several: ``"largest"``, ``"best"``, or
                ``"error"`` to refuse such images.
            batch_size: images detected and embedded together.
            progress: show a progress bar.

        Returns:
            An `EnrollReport`. Inputs whose content is already in the gallery are skipped,
            so an interrupted enrolment resumes where it stopped. Per-input problems
            (unreadable, no face, several faces under ``"error"``, quality) are collected
            and logged; they never abort the run. Each image's faces are committed in their
            own transaction.
        """
        if face not in ("largest", "best", "error"):
            raise ConfigError(f"face must be 'largest', 'best' or 'error', got {face!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        gallery = self.gallery
        items = pairs(source)
        added: list[EnrolledFace] = []
        skipped: list[EnrollProblem] = []
        failed: list[EnrollProblem] = []
        from tqdm.auto import tqdm

        with tqdm(total=len(items), unit="image", desc="enrolling", disable=not progress) as bar:
            for start in range(0, len(items), batch_size):
                batch = items[start : start + batch_size]
                loaded = []
                for identity, image in batch:
                    name = describe(image)
                    try:
                        array, digest = self._load_once(image)
                    except FacekitError as exc:
                        failed.append(EnrollProblem(name, identity, str(exc)))
                        continue
                    if gallery.has_content(digest):
                        skipped.append(EnrollProblem(name, identity, "already enrolled"))
                        continue
                    loaded.append((identity, name, array, digest))
                self._enroll_loaded(loaded, face, added, failed)
                bar.update(len(batch))
        for problem in failed:
            _LOG.warning(
                "not enrolled: %s (%s): %s", problem.source, problem.identity, problem.reason
            )
        return EnrollReport(tuple(added), tuple(skipped), tuple(failed))

    def _load_once(self, image: ImageInput) -> tuple[np.ndarray, str]:
        """Decode an input and hash its content, reading a file only once."""
        if isinstance(image, (str, os.PathLike)):
            try:
                data = Path(image).read_bytes()
            except OSError as exc:
                raise ConfigError(f"cannot read {image}: {exc.strerror or exc}") from None
            try:
                array = self.load(data)
            except FacekitError as exc:
                raise type(exc)(str(exc).replace(describe(data), str(image))) from None
            return array, hashlib.sha256(data).hexdigest()
        return self.load(image), content_sha256(image)

    def _enroll_loaded(
        self,
        loaded: list[tuple[str, str, np.ndarray, str]],
        policy: FacePolicy,
        added: list[EnrolledFace],
        failed: list[EnrollProblem],
    ) -> None:
        if not loaded:
            return
        detections = self.detector.detect_batch([array for _, _, array, _ in loaded])
        chosen: list[tuple[str, str, np.ndarray, str, Detection]] = []
        for (identity, name, array, digest), found in zip(loaded, detections, strict=True):
            try:
                detection = _choose(found, policy, name)
            except FacekitError as exc:
                failed.append(EnrollProblem(name, identity, str(exc)))
                continue
            chosen.append((identity, name, array, digest, detection))
        reasons = self.quality.reasons([c[4] for c in chosen])
        for item, reason in zip(list(chosen), reasons, strict=True):
            if reason is not None:
                failed.append(EnrollProblem(item[1], item[0], reason))
                chosen.remove(item)
        if not chosen:
            return
        faces = self._embed_faces([c[2] for c in chosen], [[c[4]] for c in chosen])
        binding = EmbedderInfo.of(self.embedder)
        for (identity, name, _, digest, detection), (enrolled,) in zip(chosen, faces, strict=True):
            self.gallery.add(
                identity,
                enrolled.embedding,
                embedder=binding,
                sources=[name],
                content_sha256=[digest],
                boxes=[detection.box],
                scores=[detection.score],
            )
            added.append(EnrolledFace(identity, name, detection.box, detection.score))

    def identify(
        self,
        image: ImageInput,
        *,
        top_k: int = 1,
        threshold: float | None = None,
        aggregate: Aggregate = "max",
    ) -> list[FaceMatch]:
        """Who is in ``image``: one `FaceMatch` per detected face, largest face first.

        Args:
            top_k: how many nearest identities to list in ``candidates``.
            threshold: similarity below which a face is "unknown"; default the embedder's
                strict ``thresholds.same``. Identification is open-set: a stranger is compared
                with every enrolled sample and only needs to beat one, so it uses the
                threshold calibrated at the lower false-accept rate.
            aggregate: score identities by their best sample (``"max"``) or their mean
                template (``"mean"``).
        """
        limit = self.thresholds.same if threshold is None else threshold
        faces = sorted(self.faces(image), key=lambda f: -f.detection.area)
        if not faces:
            return []
        results = self.gallery.search(
            np.stack([f.embedding for f in faces]),
            threshold=limit,
            top_k=top_k,
            aggregate=aggregate,
        )
        return [
            FaceMatch(f.detection, r.identity, r.similarity, r.margin, r.candidates, limit)
            for f, r in zip(faces, results, strict=True)
        ]


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


def _choose(detections: Sequence[Detection], policy: FacePolicy, where: str) -> Detection:
    """The face ``policy`` picks; ``where`` names the image in errors."""
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
