"""SCRFD's options checked exactly against an independent decoding.

The reference below is plain numpy on the raw ONNX Runtime outputs of det_2.5g: anchor
centres, ``distance2bbox``, a score cut and greedy NMS written out here. Inputs are
640×640 canvases (made from t1.jpg), so the network sees the same pixels in both and every
difference is facekit's decoding: its score cut, its NMS threshold, its clipping.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from facekit.detectors import SCRFD
from facekit.io import load_image
from facekit.types import Detection

MODEL = "scrfd/det_2.5g.onnx"
SIZE = 640


@pytest.fixture(scope="module")
def session(models_dir: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(models_dir / MODEL), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def scrfd(models_dir: Path) -> SCRFD:
    return SCRFD(models_dir / MODEL)


@pytest.fixture(scope="module")
def raw(session: ort.InferenceSession, canvas: np.ndarray) -> np.ndarray:
    """`_raw` of the canvas."""
    return _raw(session, canvas)


@pytest.fixture(scope="module")
def t1(data_dir: Path) -> np.ndarray:
    return load_image(data_dir / "insightface_samples/t1.jpg")


@pytest.fixture(scope="module")
def canvas(t1: np.ndarray) -> np.ndarray:
    """t1.jpg (1280×886, six faces) at half size, on a black 640×640 canvas."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:443] = cv2.resize(t1, (640, 443), interpolation=cv2.INTER_AREA)
    return image


def _raw(session: ort.InferenceSession, image: np.ndarray) -> np.ndarray:
    """Every anchor of a 640×640 RGB image, undecoded by facekit. Rows: x1 y1 x2 y2 score
    and 5 landmarks (x, y), in pixels, boxes not clipped."""
    blob = ((image.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    outputs = session.run(None, {"input.1": blob})
    rows = []
    for level, stride in enumerate((8, 16, 32)):
        scores, distances, keypoints = outputs[level], outputs[level + 3], outputs[level + 6]
        cells = SIZE // stride
        ys, xs = np.mgrid[:cells, :cells]
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64) * stride
        centres = np.repeat(centres, 2, axis=0)  # two anchors per location
        d = distances.astype(np.float64) * stride
        boxes = np.concatenate([centres - d[:, :2], centres + d[:, 2:]], axis=1)
        points = np.tile(centres, 5) + keypoints.astype(np.float64) * stride
        rows.append(np.concatenate([boxes, scores.astype(np.float64), points], axis=1))
    return np.concatenate(rows)


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter)


def _reference(raw: np.ndarray, score: float, overlap: float) -> np.ndarray:
    """Score cut (``>= score``), then greedy NMS: a box whose IoU with a kept,
    higher-scoring box exceeds ``overlap`` is dropped. Highest score first, not clipped."""
    rows = raw[raw[:, 4] >= score]
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    kept = []
    while len(rows):
        kept.append(rows[0])
        rows = rows[1:][_iou(rows[0], rows[1:, :4]) <= overlap]
    return np.array(kept).reshape(-1, 15)


def _as_rows(found: list[Detection]) -> np.ndarray:
    return np.array(
        [[*d.box, d.score, *d.landmarks.ravel()] for d in found], dtype=np.float64
    ).reshape(-1, 15)


def test_scores_boxes_and_landmarks_pinned_to_the_reference(
    scrfd: SCRFD, raw: np.ndarray, canvas: np.ndarray, t1: np.ndarray
) -> None:
    reference = _reference(raw, 0.5, 0.4)
    assert len(reference) == 6
    found = _as_rows(scrfd.detect(canvas))
    assert len(found) == 6
    assert np.abs(found[:, 4] - reference[:, 4]).max() < 0.005
    assert np.abs(found[:, :4] - reference[:, :4]).max() < 0.05
    assert np.abs(found[:, 5:] - reference[:, 5:]).max() < 0.05
    # The full-size photo is letterboxed to the same canvas (half size, area resampling):
    # same scores, coordinates doubled.
    full = _as_rows(scrfd.detect(t1))
    assert len(full) == 6
    assert np.abs(full[:, 4] - reference[:, 4]).max() < 0.005
    assert np.abs(full[:, :4] - np.clip(2 * reference[:, :4], 0, None)).max() < 0.1
    assert np.abs(full[:, 5:] - 2 * reference[:, 5:]).max() < 0.1


@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_score_threshold_is_the_exact_cut(
    models_dir: Path, raw: np.ndarray, canvas: np.ndarray, threshold: float
) -> None:
    """With NMS off (threshold 1: only identical boxes would be merged) facekit returns
    exactly the anchors scoring at least ``score_threshold``."""
    # Not vacuous: anchors score just above the cut, so a cut raised by 0.05 loses them.
    assert ((raw[:, 4] >= threshold) & (raw[:, 4] < threshold + 0.05)).any()
    found = _as_rows(
        SCRFD(models_dir / MODEL, score_threshold=threshold, nms_threshold=1.0).detect(canvas)
    )
    expected = np.sort(raw[raw[:, 4] >= threshold, 4])[::-1]
    assert len(found) == len(expected)
    assert np.abs(found[:, 4] - expected).max() < 1e-5


@pytest.mark.parametrize("overlap", [0.4, 0.6, 0.8])
def test_nms_threshold_is_honoured(
    models_dir: Path, raw: np.ndarray, canvas: np.ndarray, overlap: float
) -> None:
    """At a low score cut (0.05) the three NMS thresholds keep 9, 17 and 49 boxes: a
    detector ignoring ``nms_threshold`` (or suppressing nothing) fails at least two."""
    detector = SCRFD(models_dir / MODEL, score_threshold=0.05, nms_threshold=overlap)
    found = _as_rows(detector.detect(canvas))
    reference = _reference(raw, 0.05, overlap)
    assert len(reference) > 6  # not vacuous: more boxes than faces survive at this cut
    assert len(found) == len(reference)
    assert np.abs(found[:, :5] - reference[:, :5]).max() < 0.05
    for index in range(1, len(found)):
        assert _iou(found[index], found[:index, :4]).max() <= overlap + 1e-6
    others = [len(_reference(raw, 0.05, other)) for other in (0.4, 0.6, 0.8) if other != overlap]
    assert len(reference) not in others


def test_boxes_cut_by_the_image_edge_are_clipped(
    scrfd: SCRFD, session: ort.InferenceSession, raw: np.ndarray, canvas: np.ndarray
) -> None:
    """Shift the canvas so the leftmost and topmost faces are cut by the image edges: the
    raw boxes leave the image, facekit's end exactly on its border."""
    faces = _reference(raw, 0.5, 0.4)
    left = int(faces[:, 0].min() + 0.3 * (faces[:, 2] - faces[:, 0])[faces[:, 0].argmin()])
    top = int(faces[:, 1].min() + 0.3 * (faces[:, 3] - faces[:, 1])[faces[:, 1].argmin()])
    shifted = np.zeros_like(canvas)
    shifted[: SIZE - top, : SIZE - left] = canvas[top:, left:]
    reference = _reference(_raw(session, shifted), 0.5, 0.4)
    found = _as_rows(scrfd.detect(shifted))
    assert len(found) == len(reference)
    assert (reference[:, 0] < -1).any()  # not vacuous: a face cut by the left edge
    assert (reference[:, 1] < -1).any()  # and one by the top edge
    assert found[:, :4].min() == 0.0
    assert found[:, :4].max() <= SIZE
    expected = np.clip(reference[:, :4], 0, SIZE)
    assert np.abs(found[:, :4] - expected).max() < 0.05
    # Landmarks are not clipped: they are where the model puts them.
    assert np.abs(found[:, 5:] - reference[:, 5:]).max() < 0.05
