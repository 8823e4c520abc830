"""``FaceRecognizer``: detector → aligner → embedder, and verification on top."""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

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
from .io import DEFAULT_MAX_PIXELS, ImageInput, describe, load_image, read_image_file
from .pipeline import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_WORKERS,
    ImageFaces,
    Loaded,
    Pipeline,
    available_cores,
    check_workers,
)
from .pipeline import FacePolicy as _FacePolicy
from .presets import DEFAULT_PRESET, choose_stage, get_preset
from .protocols import Aligner, Detector, Embedder
from .sources import content_sha256, folder_sources
from .thresholds import load_thresholds
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
    from .stream import FrameResult, VideoSource

__all__ = [
    "ALREADY_ENROLLED",
    "ChannelOrder",
    "EnrollWriter",
    "Enrollable",
    "FacePolicy",
    "FaceRecognizer",
    "enrolled_contents",
    "identify_faces",
]

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

ChannelOrder = Literal["rgb", "bgr"]
"""Channel order of numpy array inputs: ``"rgb"``, or ``"bgr"`` for arrays from OpenCV
(``cv2.imread``). Files, bytes and PIL images are decoded to RGB whatever it says."""

FacePolicy = _FacePolicy
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


ALREADY_ENROLLED = "already enrolled"
"""`EnrollProblem.kind` (and reason) of an input skipped because its content is in the
gallery already."""


@dataclass(frozen=True, slots=True)
class Enrollable:
    """One input ready to be added to a gallery: what `FaceRecognizer.enrollables` gives
    for an image it detected, checked and embedded, and what `EnrollWriter.write` stores.

    Attributes:
        identity: the identity to enrol it under.
        source: the file (or input) it came from (`facekit.io.describe`).
        content_sha256: hex sha256 of the input's content (of a file: its bytes), the key
            by which an enrolment resumes.
        embedding: ``(D,)`` float32 unit embedding of the chosen face.
        box: ``(x1, y1, x2, y2)`` of the face in the image, pixels (the whole crop for
            already-aligned inputs).
        score: the detector's score (``None`` for already-aligned inputs).
        faces_found: faces the detector found in the image (0 for already-aligned inputs).
    """

    identity: str
    source: str
    content_sha256: str
    embedding: np.ndarray
    box: tuple[float, float, float, float]
    score: float | None
    faces_found: int


class FaceRecognizer:
    """Finds, aligns and embeds faces, and compares them.

    Args:
        detector: a registered detector name (``"scrfd"``) or a `Detector` instance
            (default: the preset's).
        embedder: a registered embedder name (``"arcface"``) or an `Embedder` instance
            (default: the preset's).
        preset: a named detector + embedder bundle from `facekit.presets.PRESETS`:
            ``"open"`` (the default: CenterFace + dlib's ResNet, both usable commercially
            and fetched from the package index), ``"buffalo_l"``, ``"buffalo_m"``,
            ``"buffalo_s"`` (InsightFace, non-commercial research only). Explicit
            ``detector``/``embedder``/``*_model`` arguments win over it.
        detector_model: zoo name or path of the detector's weights (default: the backend's
            default for a backend given by name, e.g. buffalo_l's ``det_10g`` for SCRFD). Given
            without ``detector``, a zoo name runs on its zoo backend, a file on SCRFD.
        embedder_model: zoo name or path of the embedder's weights (default likewise, e.g.
            ``w600k_r50`` for ArcFace). Given without ``embedder``, a zoo name runs on its
            zoo backend, a file on ArcFace (ONNX).
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
        gallery: a gallery location (opened, or created when missing: a file path, or a
            ``milvus-lite:///...`` / ``milvus://...`` URI, see `Gallery`) or a `Gallery`,
            for `enroll` and `identify`; it must have been made by this embedder.
        quality: the filter faces must pass to be enrolled (default `QualityFilter()`).
        channel_order: channel order of numpy array inputs (see `ChannelOrder`): ``"bgr"``
            for arrays from OpenCV. Each method taking images can override it per call.
        workers: lanes of the batched pipeline (`facekit.pipeline`): each takes the next
            few inputs through decoding, detection, alignment and embedding, side by side
            with the others; ``0`` runs everything in the calling thread. The default, 2,
            was the fastest on 2 cores (docs/benchmarks.md).
        threads: ONNX Runtime intra-op threads of each session, for backends built by name
            that take a ``threads`` option. ``None``: the machine's cores shared among the
            lanes (``cores // workers``, at least 1), or onnxruntime's own choice with
            ``workers=0``.

    When one face per image is wanted (`embed`, `embed_each`, `verify`, `enroll`, and
    `identify` when nothing is found) and the detector finds no face, a second pass made
    for faces that fill the image (tight crops such as passport photos, and already-aligned
    crops) runs on that image.
    """

    def __init__(
        self,
        detector: str | Detector | None = None,
        embedder: str | Embedder | None = None,
        *,
        preset: str | None = None,
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
        workers: int = DEFAULT_WORKERS,
        threads: int | None = None,
    ) -> None:
        _check_policy(face)
        self.channel_order: ChannelOrder = _check_channel_order(channel_order)
        check_workers(workers)
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
        self.workers = workers
        session_threads = _session_threads(threads, workers)
        common = {"model_dir": model_dir, "device": device, "download": download}
        bundle = get_preset(DEFAULT_PRESET if preset is None else preset)
        detector, detector_model = choose_stage("detector", bundle, detector, detector_model)
        embedder, embedder_model = choose_stage("embedder", bundle, embedder, embedder_model)
        self.detector: Detector = _build(
            "detector",
            detector,
            detector_model,
            {**common, "max_pixels": max_pixels, **(detector_options or {})},
            session_threads,
        )
        self.embedder: Embedder = _build(
            "embedder",
            embedder,
            embedder_model,
            {**common, **(embedder_options or {})},
            session_threads,
        )
        self.aligner: Aligner = (
            aligner if aligner is not None else aligner_for(self.embedder.template)
        )
        self.face = face
        if isinstance(thresholds, (str, os.PathLike)):
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

    def pipeline(
        self,
        *,
        channel_order: ChannelOrder | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        load: Any = None,
    ) -> Pipeline[Any]:
        """The batched engine (`facekit.pipeline.Pipeline`) with this recogniser's models,
        workers and image loading (``load`` replaces the latter)."""
        return Pipeline(
            self.detector,
            self.aligner,
            self.embedder,
            load=load if load is not None else _Loader(self, channel_order),
            workers=self.workers,
            batch_size=batch_size,
        )

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
        self, images: Iterable[ImageInput], *, channel_order: ChannelOrder | None = None
    ) -> list[list[Face]]:
        """`faces` for several images, detecting and embedding in batches.

        Raises:
            ImageError: the first image that cannot be loaded.
        """
        results = self.pipeline(channel_order=channel_order).run(images)
        return [list(_raised(result).faces) for result in results]

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
        images: Iterable[ImageInput],
        *,
        face: FacePolicy | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = False,
        channel_order: ChannelOrder | None = None,
    ) -> list[np.ndarray | FacekitError]:
        """The embedding of the chosen face of every image, or the error that image gave.

        Images are consumed lazily and detected and embedded in batches of ``batch_size``
        (`facekit.pipeline`); an input that fails (unreadable, no face, several under
        ``"error"``) gets its error in its place and does not stop the others.

        Returns:
            One entry per image: a ``(D,)`` float32 unit vector or a `FacekitError`.
        """
        policy = _check_policy(self.face if face is None else face)
        engine = self.pipeline(channel_order=channel_order, batch_size=batch_size)
        results = engine.run(images, choose=policy, name=_numbered_name)
        return [
            r if isinstance(r, FacekitError) else r.faces[0].embedding
            for r in _progress(results, images, progress, None)
        ]

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
        engine = self.pipeline(channel_order=channel_order)
        return [
            _Chosen(found.faces[0], len(found.detections))
            for found in map(_raised, engine.run(images, choose=policy, name=_numbered_name))
        ]

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
        batch_size: int = DEFAULT_BATCH_SIZE,
        progress: bool = True,
        aligned: bool = False,
    ) -> EnrollReport:
        """Add the faces of ``source`` to the gallery.

        Args:
            source: a folder (folder per person ``root/alice/*.jpg``, or file name =
                identity ``root/alice.jpg``; jpg/jpeg/png/webp/bmp in any case, recursively)
                or an iterable of ``(identity, image)``, consumed lazily.
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

        The steps are public for other drivers (`facekit.distributed` runs them on Ray):
        `enrolled_contents`, then `enrollables` per image, then `EnrollWriter.write`.
        """
        gallery = self.gallery
        items: Iterable[tuple[str, ImageInput]] = (
            folder_sources(source) if isinstance(source, (str, os.PathLike)) else source
        )
        outcomes = self.enrollables(
            items,
            face=face,
            known=enrolled_contents(gallery),
            batch_size=batch_size,
            aligned=aligned,
        )
        writer = EnrollWriter(gallery, EmbedderInfo.of(self.embedder))
        for outcome in _progress(outcomes, items, progress, "enrolling"):
            writer.write([outcome])
        return writer.report()

    def enrollables(
        self,
        items: Iterable[tuple[str, ImageInput]],
        *,
        face: Literal["largest", "best", "error"] = "largest",
        known: Collection[str] = frozenset(),
        batch_size: int = DEFAULT_BATCH_SIZE,
        aligned: bool = False,
    ) -> Iterator[Enrollable | EnrollProblem]:
        """The per-image step of `enroll`, writing nothing: per ``(identity, image)``, in
        input order and lazily, its `Enrollable` (decoded, hashed, detected, face chosen,
        quality-checked and embedded in batches), or the `EnrollProblem` saying why not.

        Args:
            items: ``(identity, image)`` pairs (file paths, bytes, arrays, PIL images).
            face: as for `enroll`.
            known: content hashes to skip (`enrolled_contents` of the gallery): such an
                input gives an `EnrollProblem` of kind `ALREADY_ENROLLED`, not embedded.
            batch_size: images detected and embedded together.
            aligned: as for `enroll`.

        Raises:
            ConfigError: an unknown ``face``.
        """
        if face not in ("largest", "best", "error"):
            raise ConfigError(f"face must be 'largest', 'best' or 'error', got {face!r}")
        loader = _EnrollLoader(self, frozenset(known))
        engine = self.pipeline(batch_size=batch_size, load=loader)
        if aligned:
            outcomes = self._aligned_enrollables(loader, items, engine.batch_size)
        else:
            outcomes = self._detected_enrollables(engine, items, face)
        return (_enrollable_or_problem(*outcome) for outcome in outcomes)

    def _detected_enrollables(
        self,
        engine: Pipeline[Any],
        items: Iterable[tuple[str, ImageInput]],
        policy: FacePolicy,
    ) -> Iterator[tuple[str, str, Enrollable | EnrollProblem | FacekitError]]:
        """``(identity, source, outcome)`` per input: detected, chosen, quality-checked and
        embedded by the engine, or why not."""
        sources: deque[tuple[str, str]] = deque()

        def remembered() -> Iterator[tuple[str, ImageInput]]:
            for identity, image in items:
                sources.append((identity, describe(image)))
                yield identity, image

        results = engine.run(remembered(), choose=policy, name=_enroll_name)
        for result in results:
            identity, name = sources.popleft()
            if isinstance(result, FacekitError):
                yield identity, name, result
                continue
            face = result.faces[0]
            (reason,) = self.quality.reasons([face.detection])
            if reason is not None:
                kind = "quality: " + reason.split(" (")[0]
                yield identity, name, EnrollProblem(name, identity, reason, kind)
                continue
            detection = face.detection
            yield (
                identity,
                name,
                Enrollable(
                    identity,
                    name,
                    str(result.tag),
                    face.embedding,
                    detection.box,
                    detection.score,
                    len(result.detections),
                ),
            )

    def _aligned_enrollables(
        self, loader: _EnrollLoader, items: Iterable[tuple[str, ImageInput]], batch_size: int
    ) -> Iterator[tuple[str, str, Enrollable | EnrollProblem | FacekitError]]:
        """``(identity, source, outcome)`` per input: embedded as an already-aligned crop
        (`embed_aligned`) in batches of the engine's size, or why not."""
        iterator = iter(items)
        while batch := list(itertools.islice(iterator, batch_size)):
            crops: list[tuple[str, str, np.ndarray, str]] = []
            for identity, image in batch:
                name = describe(image)
                try:
                    loaded = loader((identity, image))
                except FacekitError as exc:
                    yield identity, name, exc
                    continue
                try:
                    crop = self._aligned_crop(loaded.array, name)
                except ImageError as exc:
                    yield identity, name, EnrollProblem(name, identity, str(exc), "wrong crop size")
                    continue
                crops.append((identity, name, crop, str(loaded.tag)))
            if not crops:
                continue
            embeddings = self.embedder.embed(np.stack([c[2] for c in crops]))
            for (identity, name, crop, digest), embedding in zip(crops, embeddings, strict=True):
                box = (0.0, 0.0, float(crop.shape[1]), float(crop.shape[0]))
                yield (
                    identity,
                    name,
                    Enrollable(identity, name, digest, embedding, box, None, 0),
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

        The steps are public for other drivers (`facekit.distributed` runs them on Ray):
        `faces_to_identify`, then `identify_faces`.
        """
        limit = self.thresholds.same if threshold is None else threshold
        (found,) = self.faces_to_identify([image], batch_size=1, channel_order=channel_order)
        if isinstance(found, FacekitError):
            raise found
        faces = [(face.detection, face.embedding) for face in found]
        return identify_faces(
            self.gallery, faces, threshold=limit, top_k=top_k, aggregate=aggregate
        )

    def faces_to_identify(
        self,
        images: Iterable[ImageInput],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        channel_order: ChannelOrder | None = None,
    ) -> Iterator[list[Face] | FacekitError]:
        """The first step of `identify`, for many images: per image, in input order and
        lazily, every face found and embedded, largest first (the second pass for faces
        that fill the image when none is found), or the error that image gave (unreadable,
        ...), which does not stop the others.

        Args:
            images: image inputs, detected and embedded in batches of ``batch_size``.
        """
        engine = self.pipeline(channel_order=channel_order, batch_size=batch_size)
        for result in engine.run(images, fill=True):
            if isinstance(result, FacekitError):
                yield result
            else:
                yield sorted(result.faces, key=lambda face: -face.detection.area)

    # --- streams -------------------------------------------------------------------------

    def stream(
        self,
        source: VideoSource,
        *,
        every: int = 1,
        gallery: Gallery | None = None,
        **options: Any,
    ) -> Iterator[FrameResult]:
        """The faces of every frame of a video file, camera or URL, tracked and, with a
        gallery (default: this recogniser's, when it has one), identified: see
        `facekit.stream.stream` for ``source`` and the other ``options``."""
        from .stream import stream

        return stream(self, source, every=every, gallery=gallery, **options)


def identify_faces(
    gallery: Gallery,
    faces: Sequence[tuple[Detection, np.ndarray]],
    *,
    threshold: float,
    top_k: int = 1,
    aggregate: Aggregate = "max",
) -> list[FaceMatch]:
    """The second step of `FaceRecognizer.identify`: who each face is, in one gallery
    search.

    Args:
        gallery: the gallery to search.
        faces: ``(detection, (D,) float32 unit embedding)`` per face, e.g. of one or more
            images' `FaceRecognizer.faces_to_identify`.
        threshold: similarity below which a face is "unknown".
        top_k, aggregate: as for `FaceRecognizer.identify`.

    Returns:
        One `FaceMatch` per face, in order (empty for no faces).
    """
    if not faces:
        return []
    results = gallery.search(
        np.stack([embedding for _, embedding in faces]),
        threshold=threshold,
        top_k=top_k,
        aggregate=aggregate,
    )
    return [
        FaceMatch(detection, r.identity, r.similarity, r.margin, r.candidates, threshold)
        for (detection, _), r in zip(faces, results, strict=True)
    ]


def enrolled_contents(gallery: Gallery) -> frozenset[str]:
    """Content hashes of every sample of ``gallery``: the ``known`` of
    `FaceRecognizer.enrollables` (read in the calling thread: the engine's threads must not
    use a gallery's SQLite connection)."""
    return frozenset(
        sample.content_sha256
        for identity in gallery.identities()
        for sample in gallery.samples(identity)
        if sample.content_sha256 is not None
    )


class EnrollWriter:
    """The last step of `FaceRecognizer.enroll`: writes enrolment outcomes into a gallery
    and keeps the `EnrollReport`. The single writer of an enrolment (`facekit.distributed`
    uses it on its driver).

    Args:
        gallery: the gallery written to (created unbound is fine: the first write binds it).
        embedder: the binding of the embedder that made the embeddings.
    """

    def __init__(self, gallery: Gallery, embedder: EmbedderInfo) -> None:
        self._gallery = gallery
        self._embedder = embedder
        self._written: set[str] = set()
        self._count = 0
        self._added: list[tuple[int, EnrolledFace]] = []
        self._skipped: list[tuple[int, EnrollProblem]] = []
        self._failed: list[tuple[int, EnrollProblem]] = []

    def write(self, outcomes: Sequence[Enrollable | EnrollProblem]) -> None:
        """Record the problems of ``outcomes`` (in order) and add its enrollables in ONE
        gallery transaction (`Gallery.add_many`), skipping content the gallery holds:
        written by this writer, or by another process since ``known`` was read. (Content
        another process stores between that check and this write is skipped by the
        gallery and, in a batch of several, reported added: it is in the gallery either
        way.) When the gallery refuses the batch (e.g. an invalid identity name), each
        identity is added on its own so only the refused one's inputs fail. A failure is
        logged as a warning."""
        first = self._count
        self._count += len(outcomes)
        digests = [o.content_sha256 for o in outcomes if isinstance(o, Enrollable)]
        # one input: `add_many`'s count tells whether another process stored it meanwhile
        stored = self._written | (
            self._gallery.known_content(digests) if len(digests) > 1 else set()
        )
        fresh: list[tuple[int, Enrollable]] = []
        for position, outcome in enumerate(outcomes, first):
            if isinstance(outcome, EnrollProblem):
                self._note(position, outcome)
            elif outcome.content_sha256 in stored:
                self._note(position, _already(outcome))
            else:
                stored.add(outcome.content_sha256)
                fresh.append((position, outcome))
        if not fresh:
            return
        try:
            self._add(fresh)
        except GalleryError as exc:
            groups: dict[str, list[tuple[int, Enrollable]]] = {}
            for entry in fresh:
                groups.setdefault(entry[1].identity, []).append(entry)
            if len(groups) == 1:
                self._fail(fresh, exc)
                return
            for group in groups.values():
                try:
                    self._add(group)
                except GalleryError as error:
                    self._fail(group, error)

    def _add(self, entries: list[tuple[int, Enrollable]]) -> None:
        """Add ``entries`` in one transaction and report them added."""
        items = [item for _, item in entries]
        count = self._gallery.add_many(
            [item.identity for item in items],
            np.stack([item.embedding for item in items]),
            embedder=self._embedder,
            sources=[item.source for item in items],
            content_sha256=[item.content_sha256 for item in items],
            boxes=[item.box for item in items],
            scores=[item.score for item in items],
        )
        self._written.update(item.content_sha256 for item in items)
        if count == 0 and len(items) == 1:  # another process enrolled the same content
            self._note(entries[0][0], _already(items[0]))
            return
        for position, item in entries:
            face = EnrolledFace(item.identity, item.source, item.box, item.score, item.faces_found)
            self._added.append((position, face))

    def _fail(self, entries: list[tuple[int, Enrollable]], error: GalleryError) -> None:
        for position, item in entries:
            self._note(position, _problem(item.source, item.identity, error))

    def _note(self, position: int, problem: EnrollProblem) -> None:
        if problem.kind == ALREADY_ENROLLED:
            self._skipped.append((position, problem))
            return
        self._failed.append((position, problem))
        _LOG.warning("not enrolled: %s (%s): %s", problem.source, problem.identity, problem.reason)

    def report(self) -> EnrollReport:
        """Everything written so far, each list in the order the outcomes were written."""
        return EnrollReport(
            _in_order(self._added), _in_order(self._skipped), _in_order(self._failed)
        )


def _enrollable_or_problem(
    identity: str, source: str, outcome: Enrollable | EnrollProblem | FacekitError
) -> Enrollable | EnrollProblem:
    """An input's outcome with its error (if any) turned into an `EnrollProblem`."""
    if isinstance(outcome, _AlreadyEnrolled):
        return EnrollProblem(source, identity, ALREADY_ENROLLED, ALREADY_ENROLLED)
    if isinstance(outcome, FacekitError):
        return _problem(source, identity, outcome)
    return outcome


def _already(item: Enrollable) -> EnrollProblem:
    return EnrollProblem(item.source, item.identity, ALREADY_ENROLLED, ALREADY_ENROLLED)


def _in_order(entries: list[tuple[int, _T]]) -> tuple[_T, ...]:
    return tuple(entry for _, entry in sorted(entries, key=lambda pair: pair[0]))


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


def _check_channel_order(order: object) -> ChannelOrder:
    if order == "rgb":
        return "rgb"
    if order == "bgr":
        return "bgr"
    raise ConfigError(f"channel_order must be 'rgb' or 'bgr', got {order!r}")


def _build(
    stage: registry.Stage, value: Any, model: Any, options: dict[str, Any], threads: int | None
) -> Any:
    if isinstance(value, str):
        takes = registry.options_of(stage, value)
        if threads is not None and "threads" not in options and takes and "threads" in takes:
            options = {**options, "threads": threads}
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


def _session_threads(threads: int | None, workers: int) -> int | None:
    """Intra-op threads of each session: ``threads`` when given; else the cores shared
    among the pipeline's lanes, which run their sessions side by side (more threads per
    session than that oversubscribe the cores: measured in docs/benchmarks.md); else
    (``workers=0``) ``None``, onnxruntime's choice."""
    if threads is not None or workers == 0:
        return threads
    return max(1, available_cores() // workers)


class _Loader:
    """The engine's ``load``: an input as RGB with the recogniser's limits and channel order."""

    def __init__(self, recognizer: FaceRecognizer, channel_order: ChannelOrder | None) -> None:
        self._recognizer = recognizer
        self._channel_order = channel_order

    def __call__(self, image: ImageInput) -> np.ndarray:
        return self._recognizer.load(image, channel_order=self._channel_order)


class _AlreadyEnrolled(FacekitError):
    """An input whose content is in the gallery already (enroll skips it)."""


class _EnrollLoader:
    """Enrol's ``load`` for ``(identity, image)`` inputs: decodes once, hashes the content
    (`Loaded.tag`) and refuses content the gallery had when enrolment started."""

    def __init__(self, recognizer: FaceRecognizer, known: frozenset[str]) -> None:
        self._recognizer = recognizer
        self._known = known

    def __call__(self, item: tuple[str, ImageInput]) -> Loaded:
        image = item[1]
        if isinstance(image, (str, os.PathLike)):
            data = read_image_file(image, max_pixels=self._recognizer.max_pixels)
            digest = hashlib.sha256(data).hexdigest()
            if digest in self._known:
                raise _AlreadyEnrolled(str(image))
            try:
                return Loaded(self._recognizer.load(data), digest)
            except FacekitError as exc:
                raise type(exc)(str(exc).replace(describe(data), str(image))) from None
        digest = content_sha256(image)
        if digest in self._known:
            raise _AlreadyEnrolled(describe(image))
        return Loaded(self._recognizer.load(image), digest)


def _raised(result: ImageFaces | FacekitError) -> ImageFaces:
    """``result``, or its error raised."""
    if isinstance(result, FacekitError):
        raise result
    return result


def _numbered_name(index: int, image: object) -> str:
    return f"image {index + 1} ({describe(image)})"


def _enroll_name(_index: int, item: tuple[str, ImageInput]) -> str:
    return describe(item[1])


_R = TypeVar("_R")


def _progress(
    results: Iterable[_R], inputs: object, progress: bool, desc: str | None
) -> Iterator[_R]:
    """``results`` with a progress bar counting them (total: ``len(inputs)`` when sized)."""
    if not progress:
        yield from results
        return
    from tqdm.auto import tqdm

    total = len(inputs) if isinstance(inputs, Sized) else None
    with tqdm(total=total, unit="image", desc=desc) as bar:
        for result in results:
            yield result
            bar.update(1)
