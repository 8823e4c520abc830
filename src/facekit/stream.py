"""Faces in a video: `stream` over a file, a camera or a network stream, with tracks that
keep a face's identity between frames, and `summarize` for one line per track.

Frames are read by ``cv2.VideoCapture`` in a background thread (a source that stops sending
frames raises `StreamError` after ``timeout`` seconds instead of hanging). The frames to
analyse (every ``every``-th) are the inputs of the batched engine (`facekit.pipeline`, one
frame per batch, detection only): its lanes convert and detect the next frames while the
caller tracks and embeds the current one. Each analysed frame's faces are matched to tracks
by an `IoUTracker`, and only the tracks that are due (new, old, moved, rescaled or looking
different, see `facekit.tracking`) are embedded and searched in the gallery, in one batch
per frame. A person walking through a 30 fps video is therefore embedded a few times, not
30 times a second. At most ``every + 8`` frames are read ahead of the caller.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

import cv2
import numpy as np

from .errors import ConfigError, FacekitError, StreamError
from .pipeline import ImageFaces, Loaded
from .tracking import IoUTracker, Track, appearance
from .types import Detection, FaceMatch, JSONValue

if TYPE_CHECKING:
    from .gallery import Aggregate, Gallery, Identification
    from .recognizer import FaceRecognizer

__all__ = [
    "Capture",
    "FrameResult",
    "TrackLog",
    "TrackSummary",
    "TrackedFace",
    "VideoSource",
    "stream",
    "summarize",
]

_LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "udp://", "tcp://", "srt://")
_QUEUE_FRAMES = 4
_AHEAD_FRAMES = 8
"""Analysed frames that may be read ahead of the caller (in the engine's lanes), beyond
the skipped frames of one ``every`` period."""
_POLL_S = 0.1
"""How often a thread waiting for a frame checks whether the stream was closed, in s."""
_END = object()


class Capture(Protocol):
    """What `stream` needs of a video source; ``cv2.VideoCapture`` has it. ``read`` returns
    ``(ok, frame)`` with an ``(H, W, 3)`` uint8 BGR frame, ``ok`` false at the end."""

    def isOpened(self) -> bool: ...  # OpenCV's name

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def get(self, prop_id: int) -> float: ...

    def release(self) -> None: ...


VideoSource = int | str | os.PathLike[str] | Capture
"""A camera index, a video file, an ``rtsp://`` / ``http://`` ... URL, or an opened `Capture`
(kept open: the caller releases it)."""


@dataclass(frozen=True, slots=True, eq=False)
class TrackedFace:
    """One face of one frame.

    Attributes:
        track_id: its track (the same number in every frame the face is followed in).
        detection: the face in this frame (box, score, landmarks in pixels).
        embedding: the track's latest ``(D,)`` float32 unit embedding (made on this frame
            when ``fresh``, else on an earlier one).
        fresh: whether the embedding was computed on this frame.
        match: with a gallery, who the track's latest embedding is (the `FaceMatch`'s
            ``face`` is this frame's detection); ``None`` without one.
    """

    track_id: int
    detection: Detection
    embedding: np.ndarray
    fresh: bool
    match: FaceMatch | None

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: ``track``, ``fresh``, the detection's fields, and with a gallery
        ``identity``, ``similarity``, ``margin`` and ``candidates`` (`FaceMatch.to_dict`)."""
        entry: dict[str, JSONValue] = {"track": self.track_id, "fresh": self.fresh}
        entry.update(self.detection.to_dict())
        if self.match is not None:
            entry.update({k: v for k, v in self.match.to_dict().items() if k != "face"})
        return entry


@dataclass(frozen=True, slots=True, eq=False)
class FrameResult:
    """What one frame of a stream gave.

    Attributes:
        index: frame number from 0.
        timestamp: seconds: ``index / fps`` for files, time since the stream started for
            cameras and live streams (and sources that report no frame rate).
        image: the frame, ``(H, W, 3)`` uint8 RGB.
        faces: its faces, in detector order.
        analysed: ``False`` for frames skipped by ``every``: their ``faces`` are those of
            the last analysed frame (same boxes), none ``fresh``.
    """

    index: int
    timestamp: float
    image: np.ndarray
    faces: tuple[TrackedFace, ...]
    analysed: bool = True

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: ``frame``, ``time`` (s), ``analysed`` and ``faces`` (no pixels)."""
        return {
            "frame": self.index,
            "time": self.timestamp,
            "analysed": self.analysed,
            "faces": [face.to_dict() for face in self.faces],
        }


@dataclass(frozen=True, slots=True)
class TrackSummary:
    """One track over a whole stream.

    Attributes:
        track_id: the track's number.
        identity: the identity of its best known match (highest similarity over its
            embeddings), ``None`` when never identified (or without a gallery).
        first_frame: first frame index it was seen in; ``first_time`` its timestamp (s).
        last_frame: last analysed frame index it was seen in; ``last_time`` its timestamp.
        best_similarity: its highest gallery similarity, ``None`` without a gallery.
        embeddings: how many times it was embedded.
    """

    track_id: int
    identity: str | None
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    best_similarity: float | None
    embeddings: int

    def to_dict(self) -> dict[str, JSONValue]:
        """JSON-ready: every field, ``track_id`` as ``track``."""
        return {
            "track": self.track_id,
            "identity": self.identity,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "best_similarity": self.best_similarity,
            "embeddings": self.embeddings,
        }


class TrackLog:
    """Collects `TrackSummary`'s from frames as they come (`add`), for callers that also
    use the frames (drawing them); `summarize` does it for a whole stream."""

    def __init__(self) -> None:
        self._summaries: dict[int, TrackSummary] = {}

    def add(self, frame: FrameResult) -> None:
        """Count ``frame``'s faces in their tracks (frames skipped by ``every`` are not)."""
        if not frame.analysed:
            return
        for face in frame.faces:
            old = self._summaries.get(face.track_id)
            if old is None:
                old = TrackSummary(
                    face.track_id, None, frame.index, frame.index, frame.timestamp,
                    frame.timestamp, None, 0,
                )  # fmt: skip
            best, identity = old.best_similarity, old.identity
            match = face.match
            if face.fresh and match is not None and (best is None or match.similarity > best):
                best = match.similarity
                if match.identity is not None:
                    identity = match.identity
            self._summaries[face.track_id] = dataclasses.replace(
                old,
                identity=identity,
                last_frame=frame.index,
                last_time=frame.timestamp,
                best_similarity=best,
                embeddings=old.embeddings + face.fresh,
            )

    def summaries(self) -> list[TrackSummary]:
        """The tracks seen so far, by first frame."""
        return sorted(self._summaries.values(), key=lambda s: (s.first_frame, s.track_id))


def summarize(frames: Iterable[FrameResult]) -> list[TrackSummary]:
    """One `TrackSummary` per track of ``frames`` (e.g. a whole `stream`), by first frame."""
    log = TrackLog()
    for frame in frames:
        log.add(frame)
    return log.summaries()


def stream(
    recognizer: FaceRecognizer,
    source: VideoSource,
    *,
    every: int = 1,
    gallery: Gallery | None = None,
    threshold: float | None = None,
    top_k: int = 1,
    aggregate: Aggregate = "max",
    reembed_every: int | None = None,
    tracker: IoUTracker | None = None,
    same_person: float | None = None,
    timeout: float = 10.0,
) -> Iterator[FrameResult]:
    """The faces of every frame of a video, tracked, and with a gallery identified.

    Args:
        recognizer: the detector, aligner and embedder to use.
        source: a video file, a camera index, an ``rtsp://`` / ``http://`` ... URL, or an
            opened `Capture` (frames in OpenCV's BGR order).
        every: analyse every ``every``-th frame; the frames between are yielded with the
            last analysed frame's faces (``analysed=False``).
        gallery: who to look faces up in; default the recognizer's gallery when it has one,
            else faces get no ``match``.
        threshold: similarity below which a face is unknown; default the embedder's strict
            ``thresholds.same`` (as `FaceRecognizer.identify`).
        top_k: candidates listed per match.
        aggregate: score identities by their best sample or their mean (see `Gallery.search`).
        reembed_every: renew a track's embedding after this many frames (default 30); for
            the other rules pass a `tracker` instead.
        tracker: an `IoUTracker` with chosen settings (one per stream).
        same_person: when a track's new embedding has a cosine similarity below this with
            its previous one, the face is another person and gets a new track; default the
            embedder's ``thresholds.likely`` (no splitting when it has none).
        timeout: seconds to wait for the source to open and for each frame.

    Yields:
        One `FrameResult` per frame, in order. A file ends the iteration at its end.

    Raises:
        StreamError: the source cannot be opened; no frame came within ``timeout``; a
            camera or live stream (``rtsp://`` ...) stopped sending frames.
        ConfigError: a bad argument.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a positive integer, got {every!r}")
    if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if tracker is not None and reembed_every is not None:
        raise ConfigError("give reembed_every or tracker, not both (IoUTracker(reembed_every=))")
    if tracker is None:
        tracker = IoUTracker(reembed_every=30 if reembed_every is None else reembed_every)
    if gallery is None:
        try:
            gallery = recognizer.gallery
        except ConfigError:
            gallery = None
    limit = threshold
    if gallery is not None and limit is None:
        limit = recognizer.thresholds.same
    if same_person is None:
        try:
            same_person = recognizer.thresholds.likely
        except ConfigError:
            same_person = None
    opener, name, live = _opener(source)
    faces = _Faces(recognizer, tracker, gallery, limit, top_k, aggregate, same_person)
    return _frames(recognizer, faces, lambda: _Reader(opener, name, live, timeout), every)


@dataclass(frozen=True, slots=True, eq=False)
class _Read:
    """A frame as read: its index, timestamp (s) and ``(H, W, 3)`` uint8 BGR pixels."""

    index: int
    timestamp: float
    bgr: np.ndarray


class _Due:
    """An analysed frame on its way through the engine, and the skipped frames read after
    it (handed over as they are read; `_END` once the next analysed frame, the end or an
    error came)."""

    __slots__ = ("ended", "frame", "skipped")

    def __init__(self, frame: _Read) -> None:
        self.frame = frame
        self.skipped: queue.Queue[object] = queue.Queue()
        self.ended = False


@dataclass(frozen=True, slots=True, eq=False)
class _Analysed:
    """What the engine carries from `_Due` to its result: the frame and its RGB image."""

    due: _Due
    image: np.ndarray


def _frames(
    recognizer: FaceRecognizer, faces: _Faces, reader_for: Callable[[], _Reader], every: int
) -> Iterator[FrameResult]:
    reader = reader_for()  # on the first next(): a stream never iterated opens nothing
    ahead = threading.Semaphore(every + _AHEAD_FRAMES)  # frames read, not yet yielded
    results: Generator[ImageFaces | FacekitError, None, None] | None = None
    last: tuple[TrackedFace, ...] = ()

    def load(due: _Due) -> Loaded:  # in the engine's lanes
        image = recognizer.load(due.frame.bgr, channel_order="bgr")
        return Loaded(image, tag=_Analysed(due, image))

    def skipped(due: _Due, wait: bool) -> Iterator[FrameResult]:
        """``due``'s skipped frames: all of them, or (``wait`` false) those read so far."""
        while not due.ended:
            try:
                item = due.skipped.get(block=wait)
            except queue.Empty:
                return
            if item is _END:
                due.ended = True
                return
            frame = cast(_Read, item)
            image = recognizer.load(frame.bgr, channel_order="bgr")
            stale = tuple(dataclasses.replace(face, fresh=False) for face in last)
            yield FrameResult(frame.index, frame.timestamp, image, stale, analysed=False)
            ahead.release()

    try:
        fps = reader.open()
        engine = recognizer.pipeline(batch_size=1, load=load)
        inputs = _analysed_frames(reader, fps, every, ahead)
        results = engine.run(inputs, embed=False, name=lambda _i, due: f"frame {due.frame.index}")
        # With lanes the frames are read while the caller waits; without (workers=0) only
        # when the next result is asked for, so then skipped frames come in bursts.
        live_skipped = recognizer.workers > 0
        pending: _Due | None = None
        while True:
            try:
                result = next(results, None)
            except FacekitError:
                if pending is not None:
                    yield from skipped(pending, wait=True)  # the frames read before it
                raise
            if pending is not None:
                yield from skipped(pending, wait=True)  # all read before this result's frame
            if result is None:
                return
            if isinstance(result, FacekitError):
                raise result
            analysed = cast(_Analysed, result.tag)
            frame = analysed.due.frame
            last = faces.of(frame.index, analysed.image, list(result.detections))
            yield FrameResult(frame.index, frame.timestamp, analysed.image, last)
            ahead.release()
            pending = analysed.due
            yield from skipped(pending, wait=live_skipped)
    finally:
        reader.close()  # before joining the lanes: one may wait for a frame
        if results is not None:
            results.close()  # stops and joins the engine's threads


def _analysed_frames(
    reader: _Reader, fps: float, every: int, ahead: threading.Semaphore
) -> Iterator[_Due]:
    """The engine's inputs, read in its lanes: the frames to analyse, each with the skipped
    frames read after it. Waits while ``ahead`` has no frame left; ends when the reader is
    closed."""
    started: float | None = None
    due: _Due | None = None
    try:
        for index in itertools.count():
            while not ahead.acquire(timeout=_POLL_S):
                if reader.closed:
                    return
            item = reader.next(index)
            if item is None:
                return
            pixels, seen_at = item
            started = seen_at if started is None else started
            timestamp = index / fps if fps > 0 and not reader.live else seen_at - started
            frame = _Read(index, timestamp, pixels)
            if index % every:
                assert due is not None  # frame 0 is analysed
                due.skipped.put(frame)
                continue
            if due is not None:
                due.skipped.put(_END)
            due = _Due(frame)
            yield due
    finally:
        if due is not None:
            due.skipped.put(_END)


class _Faces:
    """Tracks and (when due) embeds and identifies the faces of analysed frames."""

    def __init__(
        self,
        recognizer: FaceRecognizer,
        tracker: IoUTracker,
        gallery: Gallery | None,
        threshold: float | None,
        top_k: int,
        aggregate: Aggregate,
        same_person: float | None,
    ) -> None:
        self.recognizer = recognizer
        self.tracker = tracker
        self.gallery = gallery
        self.threshold = threshold
        self.top_k = top_k
        self.aggregate: Aggregate = aggregate
        self.same_person = same_person
        self.identified: dict[int, Identification] = {}

    def of(
        self, index: int, image: np.ndarray, detections: list[Detection]
    ) -> tuple[TrackedFace, ...]:
        """The tracked faces of frame ``index`` (``image`` RGB, its ``detections``)."""
        tracks = self.tracker.update(index, detections)
        if not tracks:
            self._forget_ended()
            return ()
        crops = self.recognizer.aligner.align(
            image,
            np.stack([d.landmarks for d in detections]),
            np.array([d.box for d in detections], dtype=np.float64),
        )
        looks = [appearance(crop) for crop in crops]
        due = [i for i, t in enumerate(tracks) if self.tracker.needs_embedding(t, index, looks[i])]
        if due:
            self._embed(index, tracks, due, crops, looks)
        self._forget_ended()
        result = []
        for i, track in enumerate(tracks):
            assert track.embedded is not None  # every new track was due
            embedding = track.embedded.embedding
            result.append(
                TrackedFace(track.id, track.detection, embedding, i in due, self._match(track))
            )
        return tuple(result)

    def _embed(
        self,
        index: int,
        tracks: list[Track],
        due: list[int],
        crops: np.ndarray,
        looks: list[np.ndarray],
    ) -> None:
        """Embed the crops of ``tracks[due]`` in one batch, split the tracks whose face
        became someone else, and look the embeddings up in the gallery."""
        embeddings = self.recognizer.embedder.embed(crops[due])
        for embedding, i in zip(embeddings, due, strict=True):
            track = tracks[i]
            previous = track.embedded
            if (
                previous is not None
                and self.same_person is not None
                and float(np.dot(embedding, previous.embedding)) < self.same_person
            ):
                track = self.tracker.split(track, index)
            tracks[i] = self.tracker.embedded(track, index, embedding, looks[i])
        if self.gallery is not None and self.threshold is not None:
            found = self.gallery.search(
                embeddings, threshold=self.threshold, top_k=self.top_k, aggregate=self.aggregate
            )
            for identification, i in zip(found, due, strict=True):
                self.identified[tracks[i].id] = identification

    def _match(self, track: Track) -> FaceMatch | None:
        found = self.identified.get(track.id)
        if found is None or self.threshold is None:
            return None
        return FaceMatch(
            track.detection,
            found.identity,
            found.similarity,
            found.margin,
            found.candidates,
            self.threshold,
        )

    def _forget_ended(self) -> None:
        live = {track.id for track in self.tracker.tracks}
        for track_id in [t for t in self.identified if t not in live]:
            del self.identified[track_id]


def _opener(source: VideoSource) -> tuple[Callable[[], tuple[Capture, bool]], str, bool]:
    """How to open ``source`` (returning the capture and whether `stream` owns it), its
    name for messages, and whether it is live (a camera or a live-stream URL)."""
    if isinstance(source, bool):
        raise ConfigError(f"not a video source: {source!r}")
    if isinstance(source, int):
        index = source
        return lambda: (cast(Capture, cv2.VideoCapture(index)), True), f"camera {index}", True
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if "://" not in text and not Path(text).exists():
            raise StreamError(f"{text}: no such video file")
        live = text.lower().startswith(_LIVE_SCHEMES)
        return lambda: (cast(Capture, cv2.VideoCapture(text)), True), text, live
    if all(hasattr(source, name) for name in ("isOpened", "read", "get", "release")):
        capture = source
        return lambda: (capture, False), f"video capture {type(source).__name__}", False
    raise ConfigError(
        f"not a video source: {type(source).__name__} (give a file, a camera index, a URL "
        "or an opened cv2.VideoCapture)"
    )


class _Reader:
    """Opens a source and reads its frames in a daemon thread, handing them over through a
    small queue; the consumer (an engine lane) waits at most ``timeout`` seconds for each,
    and no longer once the reader is closed.

    A read blocked inside OpenCV cannot be interrupted: after a timeout the thread is left
    behind (a daemon, it ends with the process or when the read returns)."""

    def __init__(
        self, opener: Callable[[], tuple[Capture, bool]], name: str, live: bool, timeout: float
    ) -> None:
        self.name = name
        self.live = live
        self.timeout = timeout
        self._items: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(opener,), name="facekit-stream-reader", daemon=True
        )
        self._thread.start()

    def _run(self, opener: Callable[[], tuple[Capture, bool]]) -> None:
        capture: Capture | None = None
        owned = False
        try:
            capture, owned = opener()
            if not capture.isOpened():
                self._put(StreamError(f"{self.name}: cannot open it as a video"))
                return
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            self._put(fps if math.isfinite(fps) else 0.0)
            while not self._stop.is_set():
                ok, frame = capture.read()
                if not ok or frame is None:
                    self._put(_END)
                    return
                self._put((frame, time.monotonic()))
        except Exception as exc:  # any failure is handed over to the consumer
            self._put(exc)
        finally:
            if capture is not None and owned:
                capture.release()

    def _put(self, item: object) -> None:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _get(self, waiting_for: str, meaning: str) -> object:
        """The next item; `_END` once closed."""
        deadline = time.monotonic() + self.timeout
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise StreamError(
                    f"{self.name}: no {waiting_for} within {self.timeout:g} s ({meaning})"
                )
            try:
                item = self._items.get(timeout=min(left, _POLL_S))
            except queue.Empty:
                continue
            if isinstance(item, FacekitError):
                raise item
            if isinstance(item, Exception):
                raise StreamError(f"{self.name}: {item}") from item
            return item
        return _END

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._stop.is_set()

    def open(self) -> float:
        """Wait for the source to open; its frame rate (0 when unknown)."""
        fps = self._get("answer while opening it", "the camera or stream never answered")
        return cast(float, fps)

    def next(self, index: int) -> tuple[np.ndarray, float] | None:
        """Frame ``index`` and the monotonic time it was read at, or ``None`` at the end.

        Raises:
            StreamError: no frame within the timeout, or a live source ended.
        """
        item = self._get(f"frame {index}", "the camera or stream stopped sending frames")
        if item is _END:
            if self.live and not self.closed:
                raise StreamError(f"{self.name}: stopped sending frames after {index} frame(s)")
            return None
        return cast(tuple[np.ndarray, float], item)

    def close(self) -> None:
        """Stop reading (the thread releases the capture when its current read returns)."""
        self._stop.set()
