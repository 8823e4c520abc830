"""The batched pipeline engine (`facekit.pipeline`) on real weights and real photos: same
results as the sequential path, input order, per-input errors, bounded memory, threads."""

from __future__ import annotations

import contextlib
import threading
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.detectors.tight import detect_filling
from facekit.errors import ConfigError, FacekitError, ImageError, ModelError, NoFaceError
from facekit.io import load_image
from facekit.pipeline import FacePolicy, ImageFaces, Pipeline, available_cores, choose_face
from facekit.types import Detection

PHOTOS = [
    "openface/adams.jpg",
    "openface/carell.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/lennon-1.jpg",
    "openface/lennon-2.jpg",
    "openface/longoria-cooper.jpg",
    "insightface_samples/t3.jpg",
    "insightface_samples/t4.jpg",
    "insightface_samples/t6.jpg",
    "mtcnn/ivan.jpg",
    "mtcnn/no-faces.jpg",  # no face at all: NoFaceError when one face is wanted
    "facenet_pytorch/multiface.jpg",
    "orl_faces/s1/1.png",  # tight crops: found by the second pass only
    "orl_faces/s2/1.png",
    "openface/aligned/carell.png",
]


Reference = list[list[tuple[Detection, np.ndarray]] | FacekitError]
References = dict[tuple[int, FacePolicy | None], Reference]


@pytest.fixture(scope="module")
def recognizer(models_dir: Path) -> FaceRecognizer:
    # a 320x320 detector input keeps the file fast; the engine does not depend on it
    return FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options={"input_size": (320, 320)},
    )


@pytest.fixture(scope="module")
def references(recognizer: FaceRecognizer, photos: list[Path]) -> References:
    """`_sequential` results by ``(batch_size, choose)``, computed once each."""
    cases: list[tuple[int, FacePolicy | None]] = [(1, "largest"), (3, "largest"), (16, None)]
    cases.append((16, "largest"))
    return {case: _sequential(recognizer, photos, *case) for case in cases}


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> list[Path]:
    return [data_dir / name for name in PHOTOS]


def _sequential(
    fr: FaceRecognizer, paths: Sequence[Path], batch_size: int, choose: FacePolicy | None
) -> Reference:
    """The pre-engine path, written out with the stages' own calls: batches of
    ``batch_size`` loaded images through ``detect_batch``, the second pass on images with no
    face, the policy, ``align`` per image and one ``embed`` per batch."""
    results: Reference = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        outcome: dict[int, list[Detection] | FacekitError] = {}
        loaded: dict[int, np.ndarray] = {}
        for i, path in enumerate(chunk):
            try:
                loaded[i] = fr.load(path)
            except FacekitError as exc:
                outcome[i] = exc
        found = fr.detector.detect_batch(list(loaded.values()))
        detections = {i: list(d) for i, d in zip(loaded, found, strict=True)}
        empty = [i for i, d in detections.items() if not d]
        if choose is not None and empty:
            filled = detect_filling(fr.detector, [loaded[i] for i in empty])
            detections.update(zip(empty, filled, strict=True))
        for i, found_here in detections.items():
            try:
                name = f"image {start + i + 1} ({chunk[i]})"
                outcome[i] = (
                    found_here if choose is None else [choose_face(found_here, choose, name)]
                )
            except FacekitError as exc:
                outcome[i] = exc
        crops = [
            fr.aligner.align(
                loaded[i],
                np.stack([d.landmarks for d in dets]),
                np.array([d.box for d in dets], dtype=np.float64),
            )
            for i, dets in sorted(outcome.items())
            if not isinstance(dets, FacekitError) and dets
        ]
        embeddings = iter(fr.embedder.embed(np.concatenate(crops)) if crops else [])
        for i in range(len(chunk)):
            dets = outcome[i]
            if isinstance(dets, FacekitError):
                results.append(dets)
            else:
                results.append([(d, next(embeddings)) for d in dets])
    return results


def _assert_same(
    got: Sequence[ImageFaces | FacekitError],
    expected: Reference,
) -> None:
    assert len(got) == len(expected)
    for index, (result, reference) in enumerate(zip(got, expected, strict=True)):
        if isinstance(reference, FacekitError):
            assert type(result) is type(reference)
            assert str(result) == str(reference)
            continue
        assert isinstance(result, ImageFaces)
        assert result.index == index
        assert len(result.faces) == len(reference)
        for face, (detection, embedding) in zip(result.faces, reference, strict=True):
            assert face.detection.box == detection.box
            assert face.detection.score == detection.score
            np.testing.assert_array_equal(face.detection.landmarks, detection.landmarks)
            np.testing.assert_array_equal(face.embedding, embedding)


def _numbered(index: int, path: Path) -> str:
    return f"image {index + 1} ({path})"


def _engine(
    fr: FaceRecognizer, workers: int, batch_size: int, detector: Any = None
) -> Pipeline[Path]:
    """The engine with ``fr``'s models (``detector`` replacing its detector)."""
    return Pipeline(
        detector if detector is not None else fr.detector,
        fr.aligner,
        fr.embedder,
        load=fr.load,
        workers=workers,
        batch_size=batch_size,
    )


@pytest.mark.parametrize(("workers", "batch_size"), [(0, 3), (1, 1), (2, 3), (8, 16)])
def test_engine_equals_the_sequential_path(
    recognizer: FaceRecognizer,
    photos: list[Path],
    references: References,
    workers: int,
    batch_size: int,
) -> None:
    expected = references[batch_size, "largest"]
    engine = _engine(recognizer, workers, batch_size)
    got = list(engine.run(iter(photos), choose="largest", name=lambda i, p: f"image {i + 1} ({p})"))
    _assert_same(got, expected)
    # the cases the photos were picked for really happen
    assert isinstance(got[PHOTOS.index("mtcnn/no-faces.jpg")], NoFaceError)
    orl = got[PHOTOS.index("orl_faces/s1/1.png")]
    assert isinstance(orl, ImageFaces)
    assert len(orl.detections) == 1
    multi = got[PHOTOS.index("facenet_pytorch/multiface.jpg")]
    assert isinstance(multi, ImageFaces)
    assert len(multi.detections) > 3
    assert len(multi.faces) == 1


def test_every_face_mode_equals_the_sequential_path(
    recognizer: FaceRecognizer,
    photos: list[Path],
    references: References,
) -> None:
    expected = references[16, None]
    got = recognizer.faces_batch(iter(photos))  # the facade, default workers and batch size
    results = [
        ImageFaces(i, tuple(f.detection for f in faces), tuple(faces), (0, 0))
        for i, faces in enumerate(got)
    ]
    _assert_same(results, expected)
    assert sum(len(faces) for faces in got) > len(photos)


def test_corrupt_file_among_50_inputs_gets_its_error_in_its_place(
    recognizer: FaceRecognizer, photos: list[Path], tmp_path: Path
) -> None:
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photos[0].read_bytes()[:2000])  # a truncated JPEG
    usable = [p for p in photos if p.name != "no-faces.jpg"]
    inputs = [usable[i % len(usable)] for i in range(49)]
    inputs.insert(25, corrupt)
    results = recognizer.embed_each(inputs, batch_size=8)
    assert len(results) == 50
    assert isinstance(results[25], ImageError)
    assert str(corrupt) in str(results[25])
    others = results[:25] + results[26:]
    assert all(isinstance(r, np.ndarray) for r in others)
    # the same input gives the same embedding wherever it is in the run
    by_path: dict[Path, np.ndarray] = {}
    for path, result in zip(inputs, results, strict=True):
        if path != corrupt:
            assert isinstance(result, np.ndarray)
            np.testing.assert_array_equal(by_path.setdefault(path, result), result)


def _small_frames(data_dir: Path, count: int) -> Iterator[np.ndarray]:
    """``count`` frames from a generator that re-uses three small arrays."""
    faces = [
        cv2.resize(
            load_image(data_dir / name),
            (160, 160),
            interpolation=cv2.INTER_AREA,
        )
        for name in ("openface/clapton-2.jpg", "mtcnn/ivan.jpg", "openface/carell.jpg")
    ]
    for i in range(count):
        yield faces[i % 3]


def _peak_bytes(engine: Pipeline[Any], frames: Iterator[np.ndarray]) -> tuple[int, int]:
    """tracemalloc peak while running ``frames`` through, and how many results came."""
    tracemalloc.start()
    try:
        count = sum(1 for result in engine.run(frames) if isinstance(result, ImageFaces))
        return tracemalloc.get_traced_memory()[1], count
    finally:
        tracemalloc.stop()


def test_memory_is_flat_over_a_long_generator(recognizer: FaceRecognizer, data_dir: Path) -> None:
    detector = recognizer.detector.with_input_size((160, 160))  # type: ignore[attr-defined]
    engine = Pipeline(
        detector,
        recognizer.aligner,
        recognizer.embedder,
        load=recognizer.load,
        workers=2,
        batch_size=4,
    )
    _peak_bytes(engine, _small_frames(data_dir, 8))  # one-time allocations (warm-up)
    short, short_count = _peak_bytes(engine, _small_frames(data_dir, 60))
    long, long_count = _peak_bytes(engine, _small_frames(data_dir, 180))
    assert (short_count, long_count) == (60, 180)
    # kept, 180 results of a 112x112 crop and a 128-d embedding each would add ~7 MB
    assert long < 1.3 * short, (short, long)


def test_closing_early_leaks_no_threads(recognizer: FaceRecognizer, photos: list[Path]) -> None:
    before = threading.active_count()
    endless = (photos[i % len(photos)] for i in range(10_000))
    results = _engine(recognizer, 3, 2).run(endless, choose="largest")
    taken = [next(results) for _ in range(3)]
    assert threading.active_count() > before  # the engine's threads are running
    results.close()
    assert threading.active_count() == before
    assert len(taken) == 3
    # breaking out of a for loop closes it too
    for _ in recognizer.pipeline().run(photos[:3] * 10):
        break
    assert threading.active_count() == before


class _FailingDetector:
    """The real detector, failing as a broken model would on the batch holding an image
    of ``fatal_shape`` (lanes may call it in any order)."""

    def __init__(self, detector: object, fatal_shape: tuple[int, ...]) -> None:
        self._detector = detector
        self._fatal_shape = fatal_shape

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        if any(image.shape == self._fatal_shape for image in images):
            raise ModelError("the detector's session failed")
        return self._detector.detect_batch(images)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("workers", [0, 2])
def test_errors_of_a_stage_or_of_the_input_end_the_run_without_hanging(
    recognizer: FaceRecognizer, photos: list[Path], workers: int
) -> None:
    before = threading.active_count()
    fatal_shape = recognizer.load(photos[2]).shape
    assert all(recognizer.load(p).shape != fatal_shape for p in photos[:2])
    failing = Pipeline(
        _FailingDetector(recognizer.detector, fatal_shape),
        recognizer.aligner,
        recognizer.embedder,
        load=recognizer.load,
        workers=workers,
        batch_size=2,
    )
    results = failing.run(photos)
    assert isinstance(next(results), ImageFaces)
    with pytest.raises(ModelError, match="session failed"):
        list(results)

    def broken_input() -> Iterator[Path]:
        yield photos[0]
        raise OSError("the input source went away")

    with pytest.raises(OSError, match="went away"):
        list(_engine(recognizer, workers, 1).run(broken_input()))

    def broken_load(path: Path) -> np.ndarray:
        raise RuntimeError(f"bug while loading {path}")

    engine = Pipeline(
        recognizer.detector,
        recognizer.aligner,
        recognizer.embedder,
        load=broken_load,
        workers=workers,
    )
    with pytest.raises(RuntimeError, match="bug while loading"):
        list(engine.run(photos))
    assert threading.active_count() == before


def test_options_are_checked(recognizer: FaceRecognizer) -> None:
    for options in ({"workers": -1}, {"batch_size": 0}, {"batch_size": True}, {"workers": True}):
        with pytest.raises(ConfigError):
            Pipeline(
                recognizer.detector,
                recognizer.aligner,
                recognizer.embedder,
                load=recognizer.load,
                **options,
            )
    with pytest.raises(ConfigError, match="workers"):
        FaceRecognizer(recognizer.detector, recognizer.embedder, workers=-2)
    with pytest.raises(ConfigError, match="threads"):
        FaceRecognizer(recognizer.detector, recognizer.embedder, threads=0)


class _Overlaps:
    """The real detector, counting how many threads are inside ``detect_batch`` at once;
    ``meet`` makes each call wait (up to 10 s) for a call from another thread."""

    def __init__(self, detector: Any, *, concurrent: bool, meet: bool) -> None:
        self._detector = detector
        self.concurrent = concurrent
        self._meeting = threading.Barrier(2, timeout=10) if meet else None
        self._lock = threading.Lock()
        self.inside = 0
        self.most = 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        try:
            if self._meeting is not None and not self._meeting.broken:
                self._meeting.wait()
            return self._detector.detect_batch(images)  # type: ignore[no-any-return]
        finally:
            with self._lock:
                self.inside -= 1


def test_lanes_share_a_concurrent_model_and_serialise_any_other(
    recognizer: FaceRecognizer, photos: list[Path], references: References
) -> None:
    expected = references[(3, "largest")]
    # a model that says it is concurrent is called by both lanes at once: the two calls
    # meet at the barrier (had the lanes taken turns, the first would wait 10 s and fail)
    shared = _Overlaps(recognizer.detector, concurrent=True, meet=True)
    engine = _engine(recognizer, 2, 3, shared)
    _assert_same(list(engine.run(photos[:6], choose="largest")), expected[:6])
    assert shared.most == 2
    # one that does not say so is never called by two lanes at once, by any of 4 lanes
    alone = _Overlaps(recognizer.detector, concurrent=False, meet=False)
    engine = _engine(recognizer, 4, 3, alone)
    _assert_same(list(engine.run(photos, choose="largest", name=_numbered)), expected)
    assert alone.most == 1
    assert recognizer.detector.concurrent
    assert recognizer.embedder.concurrent


class _MeetingEmbedder:
    """The real embedder, recording the threads that call ``embed``; the first call waits
    (up to 10 s) for a call from another thread."""

    concurrent = True

    def __init__(self, embedder: Any) -> None:
        self._embedder = embedder
        self._meeting = threading.Barrier(2, timeout=10)
        self.threads: set[str] = set()
        self.crops = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.crops += len(crops)
        if self._meeting.n_waiting or len(self.threads) == 1:
            with contextlib.suppress(threading.BrokenBarrierError):
                self._meeting.wait()
        return self._embedder.embed(crops)  # type: ignore[no-any-return]


def test_an_idle_lane_helps_embed_a_large_batch(
    recognizer: FaceRecognizer, photos: list[Path]
) -> None:
    # one batch of group photos: the second lane finds no input of its own and takes
    # pieces of the first lane's crops; the two embed calls meet (were the crops embedded
    # by one lane alone, its first call would wait 10 s at the barrier, then the lanes'
    # threads would still be one)
    group = [p for p in photos if "insightface_samples" in str(p) or "multiface" in str(p)]
    group += [photos[6], photos[0]]  # longoria-cooper, adams
    expected = _sequential(recognizer, group, len(group), None)
    embedder = _MeetingEmbedder(recognizer.embedder)
    engine = Pipeline(
        recognizer.detector,
        recognizer.aligner,
        embedder,
        load=recognizer.load,
        workers=2,
        batch_size=len(group),
    )
    _assert_same(list(engine.run(group)), expected)
    assert embedder.crops > 16  # enough crops for two pieces
    assert embedder.threads == {"facekit-lane-0", "facekit-lane-1"}


def test_each_session_gets_its_share_of_the_cores(models_dir: Path) -> None:
    cores = available_cores()
    for workers, threads, expected in [(2, None, max(1, cores // 2)), (0, None, 0), (3, 1, 1)]:
        fr = FaceRecognizer(
            detector_model="scrfd_500m",
            embedder_model="mobilefacenet_128d",
            model_dir=models_dir,
            workers=workers,
            threads=threads,
        )
        for model in (fr.detector, fr.embedder):
            options = model._session.get_session_options()  # type: ignore[attr-defined]
            assert options.intra_op_num_threads == expected
