"""The batched pipeline engine every `FaceRecognizer` call goes through.

Interface::

    Pipeline(detector, aligner, embedder, *, load, workers=2, batch_size=4)
    Pipeline.run(inputs, *, choose=None, fill=False, embed=True, name=describe)
        -> Iterator[ImageFaces | FacekitError]

``run`` consumes ``inputs`` lazily and yields one result per input, in input order: an
`ImageFaces` (the faces found, embedded when asked) or the `FacekitError` that input gave
(unreadable, no face, several faces under ``"error"``). One bad input never stops the
others. An error that is not about one input (a model that fails, an input iterator that
raises, a bug) ends the run: it is raised to the caller.

Lanes (``workers >= 1``)::

    inputs ─▶ lane 1: take batch_size inputs, decode, detect, align, embed ─┐
          ─▶ lane 2: take the next batch,    decode, detect, align, embed ─┼─▶ reorder ─▶ caller
          ─▶ ... (workers lanes)                                           ┘

Each lane takes the next batch of inputs and carries it through every stage; the caller
gets the batches back in input order. Decoding (Pillow, OpenCV) and ONNX Runtime release
the GIL, so the lanes use as many cores as there are lanes. A model whose ``concurrent``
attribute is true (the ONNX Runtime backends: ``session.run`` is thread-safe) is called by
every lane at once; any other model is called by one lane at a time (a lock), so lanes
then overlap one lane's detection with another's embedding. A concurrent model's work on a
batch is cut into pieces (its images; its crops, at least 4 a piece) that idle lanes take
(`facekit._sharedwork`): a lane with no input left, or waiting for a free slot, helps finish
the batches still in work, oldest first, so a group photo's hundred crops or the last batch
do not leave the other cores idle. At most ``workers + 8``
batches are in flight, whatever the input's length. Closing the result iterator early
(``break``) stops and joins every thread.

``workers=0`` runs everything in the caller's thread, one stage after the other.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from ._sharedwork import SharedWork
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
    "available_cores",
    "check_workers",
    "choose_face",
]

T = TypeVar("T")

FacePolicy = Literal["largest", "best", "error"] | int
"""Which face of an image to use when one is needed (see `facekit.recognizer.FacePolicy`)."""

DEFAULT_BATCH_SIZE = 4
"""Images a lane takes at once (detected together, their crops embedded together).
On CPU a larger batch is no faster per image (ONNX Runtime convolves image by image) and
balances the lanes worse; on a GPU pass a larger one."""

DEFAULT_WORKERS = 2
"""Lanes of the pipeline; chosen by measurement, see docs/benchmarks.md."""

_WAITING_BATCHES = 8
"""Finished batches (their results: crops and embeddings, no images) that may wait for
the caller beyond one per lane, so that lanes go on while one works through a batch with
many faces."""


def check_workers(workers: object) -> int:
    """``workers`` when it is a valid number of lanes (an integer >= 0).

    Raises:
        ConfigError: anything else.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be an integer >= 0, got {workers!r}")
    return workers


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


_POLL_S = 0.05

_PIECES_PER_LANE = 4
"""A batch's images, and its crops, are cut into up to this many pieces per lane, so that
an idle lane can take some (a group photo's crops, the last batch's images)."""

_MIN_SHARED_CROPS = 4
"""Fewer crops than this per piece are not worth sharing (one call per piece)."""
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


class Pipeline(Generic[T]):
    """Decode → detect → align → embed over an iterable of inputs, in batches.

    Args:
        detector: the `Detector` (``detect_batch`` gets one batch at a time).
        aligner: the `Aligner` for the embedder's template.
        embedder: the `Embedder` (one ``embed`` call per batch of crops).
        load: turns one input into an ``(H, W, 3)`` uint8 RGB array, or a `Loaded`;
            raises `FacekitError` for a bad input. Called from decode threads.
        workers: lanes (module docstring); ``0`` runs every stage in the caller's thread,
            one after the other (no threads at all).
        batch_size: images per detector call, and whose crops go in one embedder call.

    Raises:
        ConfigError: ``workers`` below 0 or ``batch_size`` below 1.
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
    ) -> None:
        check_workers(workers)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
        self.detector = detector
        self.aligner = aligner
        self.embedder = embedder
        self.load = load
        self.workers = workers
        self.batch_size = batch_size

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
            inputs: consumed lazily, at most ``workers + 8`` batches ahead.
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
        return _overlapped(stage, numbered, self.workers, self.workers + _WAITING_BATCHES)


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
        self.detect_share: SharedWork | None = None  # set by the lanes for a concurrent model
        self.embed_share: SharedWork | None = None
        self.lanes = 1

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
        found = self._detect(arrays) if arrays else []
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
        embeddings = self._embed(np.concatenate(crops)) if crops else None
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

    def _detect(self, arrays: list[np.ndarray]) -> list[list[Detection]]:
        """The detector's faces for each image; the images shared among idle lanes."""
        detector = self.pipeline.detector

        def piece(images: Sequence[np.ndarray]) -> list[list[Detection]]:
            return [list(found) for found in detector.detect_batch(list(images))]

        if self.detect_share is None:
            return piece(arrays)
        size = -(-len(arrays) // (_PIECES_PER_LANE * self.lanes))
        shared = self.detect_share.map(piece, arrays, size)
        return [found for part in shared for found in part]

    def _embed(self, crops: np.ndarray) -> np.ndarray:
        """The embeddings of ``(N, H, W, 3)`` crops; the crops shared among idle lanes."""
        embedder = self.pipeline.embedder
        if self.embed_share is None:
            return embedder.embed(crops)
        size = max(_MIN_SHARED_CROPS, -(-len(crops) // (_PIECES_PER_LANE * self.lanes)))
        return np.concatenate(self.embed_share.map(embedder.embed, crops, size))

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
    stage: _Stages[T], numbered: Iterator[_Numbered[T]], lanes: int, in_flight: int
) -> Generator[ImageFaces | FacekitError, None, None]:
    """The threaded pipeline (module docstring); its threads stop when it is closed."""
    size = stage.pipeline.batch_size
    stop = threading.Event()
    changed = threading.Condition()
    slots = threading.Semaphore(in_flight)
    taking = threading.Lock()
    finished: dict[int, list[ImageFaces | FacekitError] | _Failure] = {}
    state = {"taken": 0, "end": -1, "busy": 0}  # batches handed out; their count once known;
    # lanes inside a batch
    detect_lock = _lock_unless_concurrent(stage.pipeline.detector)
    embed_lock = _lock_unless_concurrent(stage.pipeline.embedder)
    work = SharedWork(_POLL_S)
    stage.lanes = lanes
    if lanes > 1:
        stage.detect_share = work if isinstance(detect_lock, _NoLock) else None
        stage.embed_share = work if isinstance(embed_lock, _NoLock) else None

    def publish(sequence: int, outcome: list[ImageFaces | FacekitError] | _Failure) -> None:
        with changed:
            finished[sequence] = outcome
            changed.notify_all()

    def idle() -> bool:
        return state["busy"] == 0

    def lane() -> None:
        while not stop.is_set():
            if work.help_one():
                continue
            if not slots.acquire(blocking=False):
                work.wait(stop.is_set)  # until a slot frees (the caller notifies) or work
                continue
            with taking:
                if state["end"] >= 0:
                    slots.release()
                    break
                sequence = state["taken"]
                failure: _Failure | None = None
                try:
                    batch = _take(numbered, size)
                except BaseException as exc:  # the caller's iterator failed: end the run
                    batch, failure = [], _Failure(exc)
                if failure is not None or not batch:
                    with changed:
                        state["end"] = sequence + (failure is not None)
                        changed.notify_all()
                    if failure is not None:
                        publish(sequence, failure)
                        return
                    slots.release()
                    break
                state["taken"] = sequence + 1
                state["busy"] += 1
            try:
                items = [stage.decode(n) for n in batch]
                with detect_lock:
                    items = stage.detect(items)
                with embed_lock:
                    outcome: list[ImageFaces | FacekitError] | _Failure = stage.finish(items)
            except BaseException as exc:  # a model or a bug: end the run
                outcome = _Failure(exc)
            publish(sequence, outcome)
            with taking:
                state["busy"] -= 1
            work.notify()
        # No input left: help the lanes still working until none is.
        while not stop.is_set():
            if not work.help_one():
                if idle():
                    return
                work.wait(idle)

    threads = [
        threading.Thread(target=lane, name=f"facekit-lane-{i}", daemon=True) for i in range(lanes)
    ]
    try:
        for thread in threads:
            thread.start()
        sequence = 0
        while True:
            with changed:
                while sequence not in finished and sequence != state["end"]:
                    changed.wait(_POLL_S)
                outcome = finished.pop(sequence, None)
            if outcome is None:
                return
            slots.release()
            work.notify()
            if isinstance(outcome, _Failure):
                raise outcome.error
            yield from outcome
            sequence += 1
    finally:
        stop.set()
        work.notify()
        for thread in threads:
            if thread.ident is not None:
                thread.join()


class _NoLock:
    """A context manager that does nothing (a stage every lane may run at once)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_exc: object) -> None:
        return None


def _lock_unless_concurrent(model: object) -> threading.Lock | _NoLock:
    """A lock serialising a model's calls across lanes, unless the model says (with a true
    ``concurrent`` attribute) that several threads may call it at once."""
    return _NoLock() if getattr(model, "concurrent", False) is True else threading.Lock()


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
