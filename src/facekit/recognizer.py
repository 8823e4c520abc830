"""``FaceRecognizer``: detector → aligner → embedder, and verification on top."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import registry
from .aligners import aligner_for
from .embedders._common import require_thresholds
from .errors import (
    ConfigError,
    FacekitError,
    GalleryError,
    ImageError,
    MultipleFacesError,
    NoFaceError,
)
from .gallery import Aggregate, EmbedderInfo, Gallery
from .gallery.sources import content_sha256, pairs
from .io import DEFAULT_MAX_PIXELS, ImageInput, describe, load_image, read_image_file
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

__all__ = ["ChannelOrder", "FacePolicy", "FaceRecognizer"]

_LOG = logging.getLogger(__name__)

ChannelOrder = Literal["rgb", "bgr"]
"""Channel order of numpy array inputs: ``"rgb"``, or ``"bgr"`` for arrays from OpenCV
(``cv2.imread``). Files, bytes and PIL images are decoded to RGB whatever it says."""

FacePolicy = Literal["largest", "best", "error"] | int
"""Which face of an image to use when one is needed:

- ``"largest"``: the face with the largest box (default; the subject of a portrait);
- ``"best"``: the face with the highest detector score;
- ``"error"``: exactly one face is required, several raise `MultipleFacesError`;
- an ``int`` ``i``: the ``i``-th face in detector order (highest score first).
"""


@dataclass(frozen=True, slots=True)
class _Chosen:
    """The face picked in one image, and how many faces the image had."""

    face: Face
    faces_found: int


@dataclass(frozen=True, slots=True)
class _Enrollable:
    """One input ready to be added to a gallery."""

    identity: str
    source: str
    digest: str
    embedding: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None
    faces_found: int


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
            with this embedder). Needed for `verify` and `identify` when the embedder has
            none (an unlisted model, AdaFace, FaceNet).
        model_dir: directory searched for model files first.
        max_pixels: largest image accepted, in pixels.
        device: "cpu", "cuda" or "cuda:N" for backends built by name.
        download: allow downloading missing zoo files (``None``: unless ``$FACEKIT_OFFLINE``).
        detector_options: extra keyword arguments for a detector built by name.
        embedder_options: extra keyword arguments for an embedder built by name.
        gallery: a gallery file (opened, or created when missing) or a `Gallery`, for
            `enroll` and `identify`; it must have been made by this embedder.
        quality: the filter faces must pass to be enrolled (default `QualityFilter()`).
        channel_order: channel order of numpy array inputs (see `ChannelOrder`): ``"bgr"``
            for arrays from OpenCV. Each method taking images can override it per call.

    When one face per image is wanted (`embed`, `embed_each`, `verify`, `enroll`, and
    `identify` when nothing is found) and the detector finds no face, a second pass made
    for faces that fill the image (tight crops such as passport photos, and already-aligned
    crops) runs on that image.
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
        channel_order: ChannelOrder = "rgb",
    ) -> None:
        _check_policy(face)
        self.channel_order: ChannelOrder = _check_channel_order(channel_order)
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
        """The verification thresholds in force (the override, else the embedder's).

        Raises:
            ConfigError: the embedder has no calibrated thresholds and none were given.
        """
        if self._thresholds is not None:
            return self._thresholds
        return require_thresholds(self.embedder.thresholds, self.embedder.name)

    def load(self, image: ImageInput, *, channel_order: ChannelOrder | None = None) -> np.ndarray:
        """``image`` as ``(H, W, 3)`` uint8 RGB, with this recogniser's pixel limit and
        channel order (``channel_order`` overrides the latter for this call)."""
        order = self.channel_order if channel_order is None else channel_order
        return load_image(image, max_pixels=self.max_pixels, channel_order=order)

    # --- faces -----------------------------------------------------------------------------

    def detect(
        self, image: ImageInput, *, channel_order: ChannelOrder | None = None
    ) -> list[Detection]:
        """Every face the detector finds in ``image`` (boxes, scores, landmarks in pixels),
        highest score first. No embedding, no second pass."""
        return self.detector.detect(self.load(image, channel_order=channel_order))

    def faces(self, image: ImageInput, *, channel_order: ChannelOrder | None = None) -> list[Face]:
        """Every face of ``image`` with its aligned crop and embedding, detector order
        (highest score first)."""
        return self.faces_batch([image], channel_order=channel_order)[0]

    def faces_batch(
        self, images: Sequence[ImageInput], *, channel_order: ChannelOrder | None = None
    ) -> list[list[Face]]:
        """`faces` for several images, detecting and embedding in batches."""
        arrays = [self.load(image, channel_order=channel_order) for image in images]
        detections = self.detector.detect_batch(arrays)
        return self._embed_faces(arrays, detections)

    def embed(
        self,
        image: ImageInput,
        face: FacePolicy | None = None,
        *,
        channel_order: ChannelOrder | None = None,
    ) -> np.ndarray:
        """The ``(D,)`` float32 unit embedding of the chosen face of ``image``.

        Raises:
            NoFaceError: no face in the image.
            MultipleFacesError: several faces and the policy is ``"error"``.
        """
        return self._one_face_each([image], face, channel_order)[0].face.embedding

    def embed_each(
        self,
        images: Sequence[ImageInput],
        *,
        face: FacePolicy | None = None,
        batch_size: int = 16,
        progress: bool = False,
        channel_order: ChannelOrder | None = None,
    ) -> list[np.ndarray | FacekitError]:
        """The embedding of the chosen face of every image, or the error that image gave.

        Images are detected and embedded in batches of ``batch_size``; an input that fails
        (unreadable, no face, several under ``"error"``) gets its error in its place and
        does not stop the others.

        Returns:
            One entry per image: a ``(D,)`` float32 unit vector or a `FacekitError`.
        """
        policy = _check_policy(self.face if face is None else face)
        results: list[np.ndarray | FacekitError] = []
        for batch in _batches(len(images), batch_size, progress, None):
            arrays: list[np.ndarray | FacekitError] = []
            for i in batch:
                try:
                    arrays.append(self.load(images[i], channel_order=channel_order))
                except FacekitError as exc:
                    arrays.append(exc)
            names = [f"image {i + 1} ({describe(images[i])})" for i in batch]
            chosen = self._choose_and_embed(arrays, names, policy)
            results.extend(c if isinstance(c, FacekitError) else c.face.embedding for c in chosen)
        return results

    def embed_aligned(
        self,
        crops: np.ndarray | Sequence[ImageInput],
        *,
        channel_order: ChannelOrder | None = None,
    ) -> np.ndarray:
        """Embed crops that are already aligned to the embedder's template (no detection).

        Args:
            crops: an ``(N, H, W, 3)`` array (or one ``(H, W, 3)`` crop), or a sequence of
                image inputs (paths, bytes, arrays, PIL images), each exactly the template's
                size (`aligner` ``.size``, e.g. 112×112 for ArcFace models), RGB unless
                ``channel_order`` says otherwise.

        Returns:
            ``(N, D)`` float32 unit vectors, in input order.

        Raises:
            ImageError: a crop that cannot be loaded, or is not of the template's size.
        """
        items: list[ImageInput]
        if isinstance(crops, np.ndarray):
            items = list(crops) if crops.ndim == 4 else [crops]
        else:
            items = list(crops)
        arrays = [
            self._aligned_crop(self.load(item, channel_order=channel_order), describe(item))
            for item in items
        ]
        if not arrays:
            return np.zeros((0, self.embedder.dim), np.float32)
        return self.embedder.embed(np.stack(arrays))

    def verify(
        self,
        image_a: ImageInput,
        image_b: ImageInput,
        face: FacePolicy | None = None,
        *,
        thresholds: Thresholds | None = None,
        channel_order: ChannelOrder | None = None,
    ) -> Verification:
        """Compare the chosen face of ``image_a`` with the chosen face of ``image_b``.

        Args:
            thresholds: thresholds for this call (default `thresholds`).

        Returns:
            A `Verification` with the cosine similarity, the decision (at
            ``thresholds.likely``), the tiered verdict ("same" at ``thresholds.same``), the
            thresholds used, both faces and how many faces each image had.

        Raises:
            NoFaceError: an image has no face; the message names which (1 or 2).
            ConfigError: no thresholds (the embedder has none and none were given).
        """
        limits = self.thresholds if thresholds is None else thresholds
        chosen_a, chosen_b = self._one_face_each([image_a, image_b], face, channel_order)
        similarity = float(
            np.clip(np.dot(chosen_a.face.embedding, chosen_b.face.embedding), -1.0, 1.0)
        )
        return Verification(
            similarity=similarity,
            threshold=limits.likely,
            same=similarity >= limits.likely,
            verdict=limits.verdict(similarity),
            thresholds=limits,
            face_a=chosen_a.face,
            face_b=chosen_b.face,
            faces_found=(chosen_a.faces_found, chosen_b.faces_found),
        )

    def _one_face_each(
        self,
        images: Sequence[ImageInput],
        face: FacePolicy | None,
        channel_order: ChannelOrder | None,
    ) -> list[_Chosen]:
        """The chosen face of each image, in one batch; the first failure is raised."""
        policy = _check_policy(self.face if face is None else face)
        arrays = [self.load(image, channel_order=channel_order) for image in images]
        names = [f"image {n} ({describe(image)})" for n, image in enumerate(images, 1)]
        result = []
        for outcome in self._choose_and_embed(arrays, names, policy):
            if isinstance(outcome, FacekitError):
                raise outcome
            result.append(outcome)
        return result

    def _find(self, arrays: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Faces in each image; images where the detector finds none get the second pass
        for faces that fill the image."""
        found = [list(d) for d in self.detector.detect_batch(arrays)] if arrays else []
        empty = [i for i, detections in enumerate(found) if not detections]
        if empty:
            from .detectors.tight import detect_filling

            filling = detect_filling(self.detector, [arrays[i] for i in empty])
            for i, detections in zip(empty, filling, strict=True):
                found[i] = list(detections)
        return found

    def _choose_and_embed(
        self,
        arrays: Sequence[np.ndarray | FacekitError],
        names: Sequence[str],
        policy: FacePolicy,
    ) -> list[_Chosen | FacekitError]:
        """One face per loaded image (`_find`, then ``policy``), embedded in one batch.

        Args:
            arrays: loaded images, or the error loading gave (passed through).
            names: how errors name each image.
        """
        errors = {i: a for i, a in enumerate(arrays) if isinstance(a, FacekitError)}
        loaded = {i: a for i, a in enumerate(arrays) if not isinstance(a, FacekitError)}
        found = dict(zip(loaded, self._find(list(loaded.values())), strict=True))
        picked: dict[int, Detection] = {}
        for i, detections in found.items():
            try:
                picked[i] = _choose(detections, policy, names[i])
            except FacekitError as exc:
                errors[i] = exc
        faces = self._embed_faces([loaded[i] for i in picked], [[d] for d in picked.values()])
        chosen = {i: _Chosen(f[0], len(found[i])) for i, f in zip(picked, faces, strict=True)}
        return [errors[i] if i in errors else chosen[i] for i in range(len(arrays))]

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

    def _aligned_crop(self, array: np.ndarray, name: str) -> np.ndarray:
        """``array`` if it has the template's size, else an `ImageError`."""
        width, height = self.aligner.size
        if array.shape[:2] != (height, width):
            raise ImageError(
                f"{name}: {array.shape[1]}x{array.shape[0]} is not an aligned crop for "
                f"{self.embedder.name} (expects {width}x{height}, template "
                f"{self.embedder.template!r}); detect and align its face instead (embed, "
                "or enroll without aligned=True)"
            )
        return array

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
        aligned: bool = False,
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
            aligned: the images are crops already aligned to the embedder's template
                (`embed_aligned`): no detection, no quality filter.

        Returns:
            An `EnrollReport`. Inputs whose content is already in the gallery are skipped,
            so an interrupted enrolment resumes where it stopped. Per-input problems
            (unreadable, no face, several faces under ``"error"``, quality, an invalid
            identity name) are collected with their reason and logged; they never abort the
            run. Images with several faces are listed in ``several_faces``. Each image's
            faces are committed in their own transaction.
        """
        if face not in ("largest", "best", "error"):
            raise ConfigError(f"face must be 'largest', 'best' or 'error', got {face!r}")
        gallery = self.gallery
        binding = EmbedderInfo.of(self.embedder)
        items = pairs(source)
        added: list[EnrolledFace] = []
        skipped: list[EnrollProblem] = []
        failed: list[EnrollProblem] = []
        for batch in _batches(len(items), batch_size, progress, "enrolling"):
            pending: list[tuple[str, str, np.ndarray, str]] = []
            for identity, image in (items[i] for i in batch):
                name = describe(image)
                try:
                    array, digest = self._load_once(image)
                except FacekitError as exc:
                    failed.append(_problem(name, identity, exc))
                    continue
                if gallery.has_content(digest):
                    skipped.append(EnrollProblem(name, identity, "already enrolled", _SKIPPED))
                    continue
                pending.append((identity, name, array, digest))
            ready = (
                self._aligned_enrollables(pending, failed)
                if aligned
                else self._detected_enrollables(pending, face, failed)
            )
            for item in ready:
                self._add(item, binding, added, skipped, failed)
        for problem in failed:
            _LOG.warning(
                "not enrolled: %s (%s): %s", problem.source, problem.identity, problem.reason
            )
        return EnrollReport(tuple(added), tuple(skipped), tuple(failed))

    def _load_once(self, image: ImageInput) -> tuple[np.ndarray, str]:
        """Decode an input and hash its content, reading a file only once."""
        if isinstance(image, (str, os.PathLike)):
            data = read_image_file(image, max_pixels=self.max_pixels)
            try:
                array = self.load(data)
            except FacekitError as exc:
                raise type(exc)(str(exc).replace(describe(data), str(image))) from None
            return array, hashlib.sha256(data).hexdigest()
        return self.load(image), content_sha256(image)

    def _detected_enrollables(
        self,
        pending: Sequence[tuple[str, str, np.ndarray, str]],
        policy: FacePolicy,
        failed: list[EnrollProblem],
    ) -> list[_Enrollable]:
        """Detect, choose, quality-check and embed one face per pending input."""
        chosen = self._choose_and_embed([p[2] for p in pending], [p[1] for p in pending], policy)
        ok = [c for c in chosen if not isinstance(c, FacekitError)]
        reasons = iter(self.quality.reasons([c.face.detection for c in ok]))
        ready = []
        for (identity, name, _, digest), outcome in zip(pending, chosen, strict=True):
            if isinstance(outcome, FacekitError):
                failed.append(_problem(name, identity, outcome))
                continue
            reason = next(reasons)
            if reason is not None:
                kind = "quality: " + reason.split(" (")[0]
                failed.append(EnrollProblem(name, identity, reason, kind))
                continue
            detection = outcome.face.detection
            ready.append(
                _Enrollable(
                    identity,
                    name,
                    digest,
                    outcome.face.embedding,
                    detection.box,
                    detection.score,
                    outcome.faces_found,
                )
            )
        return ready

    def _aligned_enrollables(
        self,
        pending: Sequence[tuple[str, str, np.ndarray, str]],
        failed: list[EnrollProblem],
    ) -> list[_Enrollable]:
        """Embed each pending input as an already-aligned crop (`embed_aligned`)."""
        crops: list[tuple[str, str, np.ndarray, str]] = []
        for identity, name, array, digest in pending:
            try:
                crops.append((identity, name, self._aligned_crop(array, name), digest))
            except ImageError as exc:
                failed.append(EnrollProblem(name, identity, str(exc), "wrong crop size"))
        if not crops:
            return []
        embeddings = self.embedder.embed(np.stack([c[2] for c in crops]))
        height, width = crops[0][2].shape[:2]
        box = (0.0, 0.0, float(width), float(height))
        return [
            _Enrollable(identity, name, digest, embedding, box, None, 0)
            for (identity, name, _, digest), embedding in zip(crops, embeddings, strict=True)
        ]

    def _add(
        self,
        item: _Enrollable,
        binding: EmbedderInfo,
        added: list[EnrolledFace],
        skipped: list[EnrollProblem],
        failed: list[EnrollProblem],
    ) -> None:
        """Add one input's face to the gallery and record what happened."""
        try:
            count = self.gallery.add(
                item.identity,
                item.embedding,
                embedder=binding,
                sources=[item.source],
                content_sha256=[item.digest],
                boxes=[item.box],
                scores=[item.score],
            )
        except GalleryError as exc:
            failed.append(_problem(item.source, item.identity, exc))
            return
        if count == 0:  # another process enrolled the same content meanwhile
            skipped.append(EnrollProblem(item.source, item.identity, "already enrolled", _SKIPPED))
            return
        added.append(
            EnrolledFace(item.identity, item.source, item.box, item.score, item.faces_found)
        )

    def identify(
        self,
        image: ImageInput,
        *,
        top_k: int = 1,
        threshold: float | None = None,
        aggregate: Aggregate = "max",
        channel_order: ChannelOrder | None = None,
    ) -> list[FaceMatch]:
        """Who is in ``image``: one `FaceMatch` per detected face, largest face first.

        Args:
            top_k: how many nearest identities to list in ``candidates`` (also for unknown
                faces: the nearest identities and their scores).
            threshold: similarity below which a face is "unknown"; default the embedder's
                strict ``thresholds.same``. Identification is open-set: a stranger is compared
                with every enrolled sample and only needs to beat one, so it uses the
                threshold calibrated at the lower false-accept rate.
            aggregate: score identities by their best sample (``"max"``) or their mean
                template (``"mean"``).
        """
        limit = self.thresholds.same if threshold is None else threshold
        array = self.load(image, channel_order=channel_order)
        (found,) = self._find([array])
        faces = sorted(self._embed_faces([array], [found])[0], key=lambda f: -f.detection.area)
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


_SKIPPED = "already enrolled"


def _problem(source: str, identity: str, error: FacekitError) -> EnrollProblem:
    """An `EnrollProblem` for ``error``, grouped by its type (`EnrollProblem.kind`)."""
    if isinstance(error, NoFaceError):
        kind = "no face found"
    elif isinstance(error, MultipleFacesError):
        kind = "several faces"
    elif isinstance(error, ImageError):
        kind = "unreadable image"
    elif isinstance(error, GalleryError):
        kind = "invalid identity name" if "identity" in str(error) else "gallery error"
    else:
        kind = "other"
    return EnrollProblem(source, identity, str(error), kind)


def _batches(count: int, size: int, progress: bool, desc: str | None) -> Iterator[range]:
    """Index ranges of ``size`` over ``count`` inputs, with an optional progress bar."""
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}")
    from tqdm.auto import tqdm

    with tqdm(total=count, unit="image", desc=desc, disable=not progress) as bar:
        for start in range(0, count, size):
            batch = range(start, min(start + size, count))
            yield batch
            bar.update(len(batch))


def _check_channel_order(order: object) -> ChannelOrder:
    if order == "rgb":
        return "rgb"
    if order == "bgr":
        return "bgr"
    raise ConfigError(f"channel_order must be 'rgb' or 'bgr', got {order!r}")


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


def _check_policy(policy: FacePolicy) -> FacePolicy:
    if isinstance(policy, bool) or not (
        policy in ("largest", "best", "error") or (isinstance(policy, int) and policy >= 0)
    ):
        raise ConfigError(
            f"face must be 'largest', 'best', 'error' or a non-negative index, got {policy!r}"
        )
    return policy


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
