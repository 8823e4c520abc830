"""Video streams (`facekit.stream`) and the IoU tracker, on a real encoded video made here
from the shared photos, with the shared small models (SCRFD-2.5G + MobileFaceNet).

The video: lennon-1.jpg panned and zoomed over 120 frames, then a cut to carell.jpg panned
and shrunk over 80 frames, 320×240 at 25 fps, MPEG-4 part 2. The gallery is enrolled from
OTHER pictures: lennon-2.jpg, and for Carell (who has one photo) the original carell.jpg
at full size, while the video holds a scaled, shifted and re-encoded copy of it (a held-out
transform, not a held-out photo); clapton-1.jpg is a distractor identity.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.cli import main
from facekit.errors import ConfigError, StreamError
from facekit.stream import FrameResult, TrackSummary, stream, summarize
from facekit.tracking import IoUTracker, box_iou
from facekit.types import Detection

SIZE = (320, 240)
FPS = 25.0
LENNON_FRAMES = 120
CARELL_FRAMES = 80
FRAMES = LENNON_FRAMES + CARELL_FRAMES
# the detector's input matches the small frames (its default is 640x640)
DETECTOR_OPTIONS = {"input_size": [320, 320]}


def _place(photo: np.ndarray, scale: float, x: float, y: float) -> np.ndarray:
    """``photo`` scaled by ``scale`` with its top-left corner at ``(x, y)`` on a grey frame."""
    matrix = np.array([[scale, 0, x], [0, scale, y]], np.float64)
    return cv2.warpAffine(photo, matrix, SIZE, flags=cv2.INTER_AREA, borderValue=(128, 128, 128))


def _write_video(path: Path, data_dir: Path) -> None:
    lennon = cv2.imread(str(data_dir / "openface/lennon-1.jpg"))
    carell = cv2.imread(str(data_dir / "openface/carell.jpg"))
    assert lennon is not None
    assert carell is not None
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), FPS, SIZE)
    assert writer.isOpened()
    # Lennon's face (about 680x950 px in the photo) pans right and grows from ~75 to ~100 px
    for t in np.linspace(0, 1, LENNON_FRAMES):
        writer.write(_place(lennon, 0.11 + 0.04 * t, 20 + 120 * t, 40 + 20 * t))
    # the cut: Carell's face starts where Lennon's ended, then pans left and shrinks
    for t in np.linspace(0, 1, CARELL_FRAMES):
        writer.write(_place(carell, 0.25 - 0.03 * t, 177 - 117 * t, 42 + 10 * t))
    writer.release()


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    _write_video(path, data_dir)
    return path


@pytest.fixture(scope="module")
def gallery_file(
    tmp_path_factory: pytest.TempPathFactory, data_dir: Path, models_dir: Path
) -> Path:
    path = tmp_path_factory.mktemp("gallery") / "people.facekit"
    fr = _recognizer(models_dir, gallery=path)
    people = [("lennon", "lennon-2"), ("carell", "carell"), ("clapton", "clapton-1")]
    report = fr.enroll(
        [(name, data_dir / f"openface/{photo}.jpg") for name, photo in people], progress=False
    )
    assert len(report.added) == 3, report
    fr.gallery.close()
    return path


def _recognizer(models_dir: Path, **options: Any) -> FaceRecognizer:
    return FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options=dict(DETECTOR_OPTIONS),
        **options,
    )


class _CountingEmbed:
    """Wraps the real embedder's ``embed`` and counts its calls and crops (a spy)."""

    def __init__(self, fr: FaceRecognizer) -> None:
        self.real = fr.embedder.embed
        self.calls = 0
        self.crops = 0

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.crops += len(crops)
        return self.real(crops)


@pytest.fixture(scope="module")
def streamed(
    video: Path, gallery_file: Path, models_dir: Path, report: Any
) -> tuple[list[FrameResult], _CountingEmbed]:
    fr = _recognizer(models_dir, gallery=gallery_file)
    spy = _CountingEmbed(fr)
    fr.embedder.embed = spy  # type: ignore[method-assign]
    started = time.perf_counter()
    frames = list(stream(fr, video))
    seconds = time.perf_counter() - started
    report(f"stream: {len(frames) / seconds:.1f} frames/s on the 320x240 test video")
    return frames, spy


def test_stream_yields_every_frame_in_order_with_file_timestamps(
    streamed: tuple[list[FrameResult], _CountingEmbed],
) -> None:
    frames, _ = streamed
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.timestamp for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    assert all(f.analysed for f in frames)
    assert all(f.image.shape == (240, 320, 3) and f.image.dtype == np.uint8 for f in frames)
    # every frame shows exactly one face
    assert [len(f.faces) for f in frames] == [1] * FRAMES


def test_one_track_per_person_with_the_right_identity(
    streamed: tuple[list[FrameResult], _CountingEmbed],
) -> None:
    frames, _ = streamed
    tracks = summarize(frames)
    assert [(t.identity, t.first_frame, t.last_frame) for t in tracks] == [
        ("lennon", 0, LENNON_FRAMES - 1),
        ("carell", LENNON_FRAMES, FRAMES - 1),
    ]
    for track in tracks:
        assert track.best_similarity is not None
        assert track.best_similarity > 0.5
    assert tracks[1].first_time == pytest.approx(LENNON_FRAMES / FPS)
    # every frame's face carries its track's identity, not only the embedded ones
    for frame in frames:
        (face,) = frame.faces
        assert face.match is not None
        expected = "lennon" if frame.index < LENNON_FRAMES else "carell"
        assert face.match.identity == expected
        assert face.match.face is face.detection


def test_the_cut_is_split_by_appearance_not_by_position(
    streamed: tuple[list[FrameResult], _CountingEmbed],
) -> None:
    """Carell's first face overlaps Lennon's last one enough for IoU matching alone to
    continue the track: the new track comes from the appearance / embedding checks."""
    frames, _ = streamed
    before = frames[LENNON_FRAMES - 1].faces[0]
    after = frames[LENNON_FRAMES].faces[0]
    assert box_iou(before.detection.box, after.detection.box) >= IoUTracker().match_iou
    assert before.track_id != after.track_id
    assert after.fresh


def test_embedding_runs_far_fewer_times_than_frames(
    streamed: tuple[list[FrameResult], _CountingEmbed],
) -> None:
    frames, spy = streamed
    fresh = sum(face.fresh for frame in frames for face in frame.faces)
    assert spy.crops == fresh  # the flags tell the truth
    assert spy.calls <= fresh
    # re-embedded when new, every 30 frames, or when moved/rescaled: a handful per track
    assert 2 <= fresh <= FRAMES // 8
    assert sum(t.embeddings for t in summarize(frames)) == fresh


def test_every_n_skips_frames_and_repeats_their_faces(
    video: Path, gallery_file: Path, models_dir: Path
) -> None:
    fr = _recognizer(models_dir, gallery=gallery_file)
    spy = _CountingEmbed(fr)
    fr.embedder.embed = spy  # type: ignore[method-assign]
    frames = []
    for frame in fr.stream(video, every=10):  # the method delegates to stream()
        frames.append(frame)
        if frame.index == 45:
            break  # closing the generator early stops the reader
    assert [f.index for f in frames] == list(range(46))
    assert [f.index for f in frames if f.analysed] == [0, 10, 20, 30, 40]
    assert all(face.fresh is False for f in frames if not f.analysed for face in f.faces)
    assert frames[13].faces[0].detection is frames[10].faces[0].detection
    assert spy.crops == sum(face.fresh for f in frames for face in f.faces) >= 1
    (track,) = summarize(frames)
    assert (track.identity, track.last_frame) == ("lennon", 40)


def _lane_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("facekit-lane-")]


def test_frames_are_detected_in_the_engine_lanes_and_closing_joins_them(
    video: Path, models_dir: Path
) -> None:
    """Detection runs in the batched engine's lanes, one frame per batch, only for the
    analysed frames; closing the stream early stops and joins the lanes and the reader."""
    fr = _recognizer(models_dir, workers=2)
    real = fr.detector.detect_batch
    calls: list[tuple[str, int]] = []

    def spy(images: Any) -> Any:
        calls.append((threading.current_thread().name, len(images)))
        return real(images)

    fr.detector.detect_batch = spy  # type: ignore[method-assign]
    lanes_before = len(_lane_threads())
    frames = stream(fr, video, every=3)
    seen = [next(frames) for _ in range(20)]
    assert len(_lane_threads()) == lanes_before + 2
    frames.close()
    assert len(_lane_threads()) == lanes_before  # joined, not left running
    assert [f.index for f in seen if f.analysed] == [0, 3, 6, 9, 12, 15, 18]
    assert all(face.detection is not None for f in seen for face in f.faces)
    # only analysed frames were detected (the lanes may have read a few ahead), each
    # alone and in a lane thread, never in the caller's
    assert 7 <= len(calls) <= 7 + 8
    assert {count for _, count in calls} == {1}
    assert all(name.startswith("facekit-lane-") for name, _ in calls)
    for _ in range(100):  # the reader thread ends once its current read returns
        if not any(t.name == "facekit-stream-reader" for t in threading.enumerate()):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the frame reader thread is still running after close")


def test_lanes_and_no_lanes_give_the_same_frames(
    video: Path, gallery_file: Path, models_dir: Path
) -> None:
    """The tracker sees the same detections in the same order with the engine's lanes
    (frames read ahead) as in the caller's thread (workers=0), skipped frames included."""
    runs = []
    for workers in (0, 2):
        fr = _recognizer(models_dir, gallery=gallery_file, workers=workers)
        runs.append(list(stream(fr, video, every=3)))
    lanes, alone = runs
    assert [f.index for f in alone] == list(range(FRAMES))

    def key(frame: FrameResult) -> tuple[object, ...]:
        faces = [
            (f.track_id, f.fresh, f.detection.box, f.match.identity if f.match else None)
            for f in frame.faces
        ]
        return frame.index, frame.timestamp, frame.analysed, faces

    assert [key(f) for f in lanes] == [key(f) for f in alone]
    for a, b in zip(lanes, alone, strict=True):
        assert np.array_equal(a.image, b.image)
    assert summarize(lanes) == summarize(alone)


def test_a_source_that_cannot_be_opened_is_a_stream_error(tmp_path: Path, models_dir: Path) -> None:
    fr = _recognizer(models_dir)
    with pytest.raises(StreamError, match="no such video file"):
        next(stream(fr, tmp_path / "missing.mp4"))
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    with pytest.raises(StreamError, match="cannot open it as a video"):
        next(stream(fr, text, timeout=30))
    with pytest.raises(ConfigError, match="every"):
        stream(fr, text, every=0)
    readers = sum(t.name == "facekit-stream-reader" for t in threading.enumerate())
    unused = stream(fr, text)  # nothing is opened before the first frame is asked for
    assert sum(t.name == "facekit-stream-reader" for t in threading.enumerate()) == readers
    del unused
    with pytest.raises(ConfigError, match="not a video source"):
        stream(fr, 3.5)  # type: ignore[arg-type]


class _StallingCapture:
    """The real test video, read by ``cv2.VideoCapture``, that stops sending frames after
    ``frames`` of them (as a camera that hangs): ``read`` blocks until released."""

    def __init__(self, path: Path, frames: int) -> None:
        self.capture = cv2.VideoCapture(str(path))
        self.left = frames
        self.released = threading.Event()

    def isOpened(self) -> bool:  # OpenCV's name
        return bool(self.capture.isOpened())

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.left == 0:
            self.released.wait()
            return False, None
        self.left -= 1
        ok, frame = self.capture.read()
        return ok, frame

    def get(self, prop_id: int) -> float:
        return float(self.capture.get(prop_id))

    def release(self) -> None:
        self.capture.release()


@pytest.mark.parametrize(("every", "workers"), [(1, 2), (2, 2), (2, 0)])
def test_a_capture_that_stalls_ends_with_a_stream_error(
    video: Path, models_dir: Path, every: int, workers: int
) -> None:
    """The engine's lanes read the frames: a stall is still raised in the caller, after
    the frames read before it (skipped ones included), with lanes and without."""
    fr = _recognizer(models_dir, workers=workers)
    capture = _StallingCapture(video, frames=3)
    frames = stream(fr, capture, timeout=0.5, every=every)
    try:
        assert [next(frames).index for _ in range(3)] == [0, 1, 2]
        with pytest.raises(StreamError, match=r"no frame 3 within 0.5 s .*stopped sending"):
            next(frames)
    finally:
        capture.released.set()
        capture.release()


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    """A named pipe no one writes to; afterwards it is opened for writing until the reader
    thread left blocked in OpenCV's open gives up."""
    path = tmp_path / "camera.pipe"
    os.mkfifo(path)
    yield path
    for _ in range(100):
        with contextlib.suppress(OSError):  # no reader (any more)
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        if not any(t.name == "facekit-stream-reader" for t in threading.enumerate()):
            break
        time.sleep(0.05)


def test_a_source_that_never_answers_ends_with_a_stream_error(fifo: Path, models_dir: Path) -> None:
    fr = _recognizer(models_dir)
    started = time.monotonic()
    with pytest.raises(StreamError, match="never answered"):
        next(stream(fr, fifo, timeout=0.5))
    assert time.monotonic() - started < 30  # not a hang (the limit is generous on purpose)


def _detection(x: float, y: float, side: float) -> Detection:
    return Detection((x, y, x + side, y + side), 0.9, np.zeros((5, 2), np.float32))


def test_tracker_matches_by_iou_and_ends_tracks_after_missed_frames() -> None:
    tracker = IoUTracker(max_missed=2)
    a, b = tracker.update(0, [_detection(0, 0, 50), _detection(200, 0, 50)])
    (a2,) = tracker.update(1, [_detection(5, 0, 50)])  # a moved a little; b missed
    assert (a2.id, a2.first_frame, a2.last_frame) == (a.id, 0, 1)
    assert {t.id: t.missed for t in tracker.tracks} == {a.id: 0, b.id: 1}
    tracker.update(2, [_detection(5, 0, 50)])
    assert [t.id for t in tracker.tracks] == [a.id, b.id]  # b missed 2 frames: still kept
    tracker.update(3, [_detection(5, 0, 50)])
    assert [t.id for t in tracker.tracks] == [a.id]  # a third miss ends it
    (c,) = tracker.update(4, [_detection(200, 0, 50)])  # b's place again: a new track
    assert c.id not in (a.id, b.id)


def test_tracker_reembeds_when_due_only() -> None:
    tracker = IoUTracker(reembed_every=30, reembed_iou=0.5, reembed_scale=1.3)
    look = np.ones(256, np.float32) / 16
    (track,) = tracker.update(0, [_detection(100, 100, 60)])
    assert tracker.needs_embedding(track, 0, look)
    track = tracker.embedded(track, 0, np.ones(4, np.float32) / 2, look)
    (track,) = tracker.update(1, [_detection(105, 100, 60)])
    assert not tracker.needs_embedding(track, 1, look)  # same place, same look
    assert tracker.needs_embedding(track, 30, look)  # 30 frames old
    other = -look
    assert tracker.needs_embedding(track, 1, other)  # looks different
    (moved,) = tracker.update(2, [_detection(130, 100, 60)])  # IoU with the embedded box < 0.5
    assert box_iou(moved.detection.box, (100, 100, 160, 160)) < 0.5
    assert tracker.needs_embedding(moved, 2, look)
    tracker2 = IoUTracker(reembed_scale=1.3)
    (t,) = tracker2.update(0, [_detection(100, 100, 60)])
    tracker2.embedded(t, 0, np.ones(4, np.float32) / 2, look)
    (grown,) = tracker2.update(1, [_detection(95, 95, 80)])  # IoU 0.56 but 1.33x the side
    assert box_iou(grown.detection.box, (100, 100, 160, 160)) > 0.5
    assert tracker2.needs_embedding(grown, 1, look)


def test_cli_identify_video_writes_tracks_and_an_annotated_video(
    video: Path,
    gallery_file: Path,
    models_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "annotated.mp4"
    args = [
        "identify",
        "--video",
        str(video),
        "--gallery",
        str(gallery_file),
        "--detector-model",
        "scrfd_2.5g",
        "--detector-options",
        json.dumps(DETECTOR_OPTIONS),
        "--embedder-model",
        "mobilefacenet_128d",
        "--model-dir",
        str(models_dir),
        "--every",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == FRAMES
    assert result["drawn"] == str(out)
    tracks = [TrackSummary(track_id=t.pop("track"), **t) for t in result["tracks"]]
    assert [(t.identity, t.first_frame) for t in tracks] == [
        ("lennon", 0),
        ("carell", LENNON_FRAMES),
    ]
    assert tracks[0].last_frame == LENNON_FRAMES - 2  # the last analysed frame (every 2)
    assert os.listdir(tmp_path) == ["annotated.mp4"]  # no partial file left behind
    written = cv2.VideoCapture(str(out))
    count = 0
    first = None
    while True:
        ok, frame = written.read()
        if not ok:
            break
        first = frame if first is None else first
        count += 1
    written.release()
    assert count == FRAMES
    assert first is not None
    assert first.shape == (240, 320, 3)
    # the label box is drawn in green (RGB 0,200,0 -> BGR) on the first frame
    green = (np.abs(first.astype(int) - (0, 200, 0)).sum(axis=2) < 60).sum()
    assert green > 100

    # again: refused before any work; with --overwrite (and fewer frames analysed) replaced
    assert main(args) == 1
    assert "already exists: pass --overwrite" in capsys.readouterr().err
    every_10 = [*args[: args.index("--every")], "--every", "10", "--out", str(out)]
    assert main([*every_10, "--no-progress", "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"{video}: 200 frame(s), 2 track(s), drawn to {out}\n")
    assert "track 1: lennon" in text
    assert "track 2: carell" in text


def test_cli_identify_needs_images_or_a_video(
    gallery_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["identify", "--gallery", str(gallery_file)]) == 1
    assert "give image files, or --video FILE" in capsys.readouterr().err
