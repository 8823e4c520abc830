"""The batched pipeline engine every `FaceRecognizer` call goes through.

Interface::

    Pipeline(detector, aligner, embedder, *, load, workers=1, batch_size=16, prefetch=None)
    Pipeline.run(inputs, *, choose=None, fill=False, embed=True, name=describe)
        -> Iterator[ImageFaces | FacekitError]

``run`` consumes ``inputs`` lazily and yields one result per input, in input order: an
`ImageFaces` (the faces found, embedded when asked) or the `FacekitError` that input gave
(unreadable, no face, several faces under ``"error"``). One bad input never stops the
others. An error that is not about one input (a model that fails, an input iterator that
raises, a bug) ends the run: it is raised to the caller.

Stages and queues (``workers >= 1``)::

    inputs ──▶ decode pool (workers threads, ≤ prefetch images ahead)
           ──▶ detector thread (batch_size images: detect, second pass, choose, align)
           ──▶ queue (2 batches) ──▶ embedder thread (one embedder call per batch)
           ──▶ queue (2 batches) ──▶ caller

Decoding (Pillow and OpenCV release the GIL) runs ahead of detection, and the detector
works on batch n + 1 while the embedder works on batch n. Memory is bounded by the queues
(about ``prefetch + 5 × batch_size`` images in flight), not by the input's length. Closing
the result iterator early (``break``) stops and joins every thread.

``workers=0`` runs everything in the caller's thread, one stage after the other.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from .errors import ConfigError, FacekitError, MultipleFacesError, NoFaceError
from .io import describe
from .protocols import Aligner, Detector, Embedder
from .types import Detection, Face

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_WORKERS",
    "FacePolicy",
    "ImageFaces",
    "Loaded",
    "Pipeline",
    "choose_face",
]

T = TypeVar("T")

FacePolicy = Literal["largest", "best", "error"] | int
"""Which face of an image to use when one is needed (see `facekit.recognizer.FacePolicy`)."""

DEFAULT_BATCH_SIZE = 16
"""Images detected and embedded together."""

DEFAULT_WORKERS = 1
"""Decode threads of the overlapped pipeline. Measured on 2 shared cores (SCRFD-2.5G +
MobileFaceNet, 50 shared photos and crops, alternating rounds): overlapped 6-12 % more
images/s than ``workers=0``; 2 decode threads no better than 1 (docs/architecture.md)."""

_QUEUE_BATCHES = 2
"""Batches waiting between the detector and the embedder, and between the embedder and
the caller."""

_POLL_S = 0.05
"""How often a blocked thread checks whether the run was stopped, in seconds."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a ``load`` function may return instead of a bare array: the image and a value
    carried to its result (`ImageFaces.tag`), e.g. the content hash of the file."""

    array: np.ndarray
    tag: object = None


@dataclass(frozen=True, slots=True)
class ImageFaces:
    """The faces of one input.

    Attributes:
        index: position of the input in ``inputs`` (0-based).
        detections: every face found, detector order (highest score first); with
            ``fill`` the second pass's faces when the first found none.
        faces: the embedded faces: one per detection, or only the chosen one when a
            policy was given (then exactly one); empty when ``embed=False``.
        size: ``(width, height)`` of the decoded image in pixels.
        tag: what ``load`` attached to the image (`Loaded.tag`), else ``None``.
    """

    index: int
    detections: tuple[Detection, ...]
    faces: tuple[Face, ...]
    size: tuple[int, int]
    tag: object = None


@dataclass(slots=True)
class _Item(Generic[T]):
    """One input on its way through the stages."""

    index: int
    name: str
    array: np.ndarray | None = None
    tag: object = None
    error: FacekitError | None = None
    detections: list[Detection] | None = None
    embed: list[Detection] | None = None
    crops: np.ndarray | None = None


class _Failure:
    """An error that ends the run, passed downstream to be raised in the caller."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE = object()


class Pipeline(Generic[T]):
    """Decode → detect → align → embed over an iterable of inputs, in batches.

    Args:
        detector: the `Detector` (``detect_batch`` gets one batch at a time).
        aligner: the `Aligner` for the embedder's template.
        embedder: the `Embedder` (one ``embed`` call per batch of crops).
        load: turns one input into an ``(H, W, 3)`` uint8 RGB array, or a `Loaded`;
            raises `FacekitError` for a bad input. Called from decode threads.
        workers: decode threads; ``0`` runs every stage in the caller's thread, one after
            the other (no threads at all).
        batch_size: images per detector call, and whose crops go in one embedder call.
        prefetch: decoded images held ahead of the detector (default ``2 × batch_size``).

    Raises:
        ConfigError: ``workers`` below 0, ``batch_size`` or ``prefetch`` below 1.
    """

    def __init__(
        self,
        detector: Detector,
        aligner: Aligner,
        embedder: Embedder,
        *,
        load: Callable[[T], np.ndarray | Loaded],
        workers: int = DEFAULT_WORKERS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        prefetch: int | None = None,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"workers must be an integer >= 0, got {workers!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        prefetch = 2 * batch_size if prefetch is None else prefetch
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ConfigError(f"prefetch must be at least 1, got {prefetch!r}")
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.load = load
        self.workers = workers
        self.batch_size = batch_size
        self.prefetch = prefetch

    def run(
        self,
        inputs: Iterable[T],
        *,
        choose: FacePolicy | None = None,
        fill: bool = False,
        embed: bool = True,
        name: Callable[[int, T], str] | None = None,
    ) -> Generator[ImageFaces | FacekitError, None, None]:
        """One result per input, in input order (see the module's docstring).

        Args:
            inputs: consumed lazily, at most ``prefetch`` + a few batches ahead.
            choose: pick one face per image with this policy (``"largest"``, ``"best"``,
                ``"error"`` or an index) and embed only it; no face, or several under
                ``"error"``, is that input's error. Implies ``fill``.
            fill: images where the detector finds nothing get the second pass for faces
                that fill the image (`facekit.detectors.tight.detect_filling`).
            embed: align and embed the faces (else `ImageFaces.faces` is empty).
            name: how errors name input ``i`` (default `describe` of the input).

        Raises:
            Whatever is not one input's fault: a model error, an exception raised by the
            ``inputs`` iterator, a ``load`` that raises something else than `FacekitError`.
        """
        stage = _Stages(self, choose, fill or choose is not None, embed)
        namer = name if name is not None else _describe
        numbered = (_Numbered(i, item, namer(i, item)) for i, item in enumerate(inputs))
        if self.workers == 0:
            return stage.sequential(numbered)
        return _overlapped(stage, numbered, self.workers, self.prefetch)


def _describe(_index: int, item: object) -> str:
    return describe(item)


@dataclass(frozen=True, slots=True)
class _Numbered(Generic[T]):
    index: int
    item: T
    name: str


class _Stages(Generic[T]):
    """The work of each stage on one batch; no threading here."""

    def __init__(
        self, pipeline: Pipeline[T], choose: FacePolicy | None, fill: bool, embed: bool
    ) -> None:
        self.pipeline = pipeline
        self.choose = choose
        self.fill = fill
        self.embed = embed

    def decode(self, numbered: _Numbered[T]) -> _Item[T]:
        item: _Item[T] = _Item(numbered.index, numbered.name)
        try:
            loaded = self.pipeline.load(numbered.item)
        except FacekitError as exc:
            item.error = exc
            return item
        if isinstance(loaded, Loaded):
            item.array, item.tag = loaded.array, loaded.tag
        else:
            item.array = loaded
        return item

    def detect(self, batch: list[_Item[T]]) -> list[_Item[T]]:
        """Detect (second pass where needed), choose and align the faces of a batch."""
        ready = [item for item in batch if item.error is None]
        arrays = [_array(item) for item in ready]
        found = [list(d) for d in self.pipeline.detector.detect_batch(arrays)] if arrays else []
        empty = [i for i, detections in enumerate(found) if not detections]
        if self.fill and empty:
            from .detectors.tight import detect_filling

            filling = detect_filling(self.pipeline.detector, [arrays[i] for i in empty])
            for i, detections in zip(empty, filling, strict=True):
                found[i] = list(detections)
        for item, detections in zip(ready, found, strict=True):
            item.detections = detections
            if self.choose is None:
                item.embed = detections
                continue
            try:
                item.embed = [choose_face(detections, self.choose, item.name)]
            except FacekitError as exc:
                item.error = exc
        if self.embed:
            for item in batch:
                if item.error is None and item.embed:
                    item.crops = self.pipeline.aligner.align(
                        _array(item),
                        np.stack([d.landmarks for d in item.embed]),
                        np.array([d.box for d in item.embed], dtype=np.float64),
                    )
        return batch

    def finish(self, batch: list[_Item[T]]) -> list[ImageFaces | FacekitError]:
        """Embed a batch's crops in one call and build its results."""
        crops = [item.crops for item in batch if item.crops is not None]
        embeddings = self.pipeline.embedder.embed(np.concatenate(crops)) if crops else None
        results: list[ImageFaces | FacekitError] = []
        position = 0
        for item in batch:
            if item.error is not None:
                results.append(item.error)
                continue
            faces: tuple[Face, ...] = ()
            if item.crops is not None and embeddings is not None:
                count = len(item.crops)
                faces = tuple(
                    Face(detection, crop, embedding)
                    for detection, crop, embedding in zip(
                        item.embed or (),
                        item.crops,
                        embeddings[position : position + count],
                        strict=True,
                    )
                )
                position += count
            array = _array(item)
            results.append(
                ImageFaces(
                    item.index,
                    tuple(item.detections or ()),
                    faces,
                    (array.shape[1], array.shape[0]),
                    item.tag,
                )
            )
            item.array = item.crops = None  # the image is not needed any more
        return results

    def sequential(
        self, numbered: Iterator[_Numbered[T]]
    ) -> Generator[ImageFaces | FacekitError, None, None]:
        """Every stage in the caller's thread, one batch at a time."""
        size = self.pipeline.batch_size
        while True:
            batch = [self.decode(n) for n in _take(numbered, size)]
            if not batch:
                return
            yield from self.finish(self.detect(batch))


def _array(item: _Item[T]) -> np.ndarray:
    assert item.array is not None
    return item.array


def _take(iterator: Iterator[_Numbered[T]], count: int) -> list[_Numbered[T]]:
    taken = []
    for numbered in iterator:
        taken.append(numbered)
        if len(taken) == count:
            break
    return taken


def _overlapped(
    stage: _Stages[T], numbered: Iterator[_Numbered[T]], workers: int, prefetch: int
) -> Generator[ImageFaces | FacekitError, None, None]:
    """The threaded pipeline (module docstring); its threads stop when it is closed."""
    stop = threading.Event()
    to_embed: queue.Queue[object] = queue.Queue(_QUEUE_BATCHES)
    results: queue.Queue[object] = queue.Queue(_QUEUE_BATCHES)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="facekit-decode")
    size = stage.pipeline.batch_size

    def detecting() -> None:
        pending: deque[Future[_Item[T]]] = deque()
        exhausted = False
        try:
            while not stop.is_set():
                batch: list[_Item[T]] = []
                while len(batch) < size and not stop.is_set():
                    while not exhausted and len(pending) < prefetch:
                        following = next(numbered, None)
                        if following is None:
                            exhausted = True
                        else:
                            pending.append(pool.submit(stage.decode, following))
                    if not pending:
                        break
                    batch.append(pending.popleft().result())
                if not batch:
                    break
                if not _put(to_embed, stage.detect(batch), stop):
                    return
            _put(to_embed, _DONE, stop)
        except BaseException as exc:
            _put(to_embed, _Failure(exc), stop)
        finally:
            for future in pending:
                future.cancel()

    def embedding() -> None:
        try:
            while True:
                batch = _get(to_embed, stop)
                if batch is None:
                    return
                if batch is _DONE or isinstance(batch, _Failure):
                    _put(results, batch, stop)
                    return
                if not _put(results, stage.finish(batch), stop):  # type: ignore[arg-type]
                    return
        except BaseException as exc:
            _put(results, _Failure(exc), stop)

    threads = [
        threading.Thread(target=detecting, name="facekit-detect", daemon=True),
        threading.Thread(target=embedding, name="facekit-embed", daemon=True),
    ]
    try:
        for thread in threads:
            thread.start()
        while True:
            got = _get(results, stop)
            if got is _DONE or got is None:
                return
            if isinstance(got, _Failure):
                raise got.error
            yield from got  # type: ignore[misc]
    finally:
        stop.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join()
        pool.shutdown(wait=True, cancel_futures=True)


def _put(target: queue.Queue[object], value: object, stop: threading.Event) -> bool:
    """Put ``value`` unless the run stops first; whether it was put."""
    while not stop.is_set():
        try:
            target.put(value, timeout=_POLL_S)
        except queue.Full:
            continue
        return True
    return False


def _get(source: queue.Queue[object], stop: threading.Event) -> object | None:
    """The next value, or ``None`` when the run stops first."""
    while not stop.is_set():
        try:
            return source.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return None


def choose_face(detections: Sequence[Detection], policy: FacePolicy, where: str) -> Detection:
    """The face ``policy`` picks; ``where`` names the image in errors.

    Raises:
        NoFaceError: no face, or fewer faces than an index policy asks for.
        MultipleFacesError: several faces under ``"error"``.
    """
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
    if isinstance(policy, str) or policy >= len(detections):
        raise NoFaceError(f"face index {policy} requested but {where} has {len(detections)}")
    return detections[policy]
