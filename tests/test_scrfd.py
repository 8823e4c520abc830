"""SCRFD on real weights and photos, checked against an independent decoding and known truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from facekit.detectors import SCRFD
from facekit.errors import ConfigError, DeviceError, ModelError
from facekit.io import load_image


def _reference_detect(model: Path, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """InsightFace's SCRFD recipe written out plainly: letterbox to 640 with cv2's default
    resize, run, decode anchor by anchor, suppress with OpenCV. Rows: x1 y1 x2 y2 score kps."""
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    h, w = image.shape[:2]
    scale = min(640 / w, 640 / h)
    nw, nh = int(w * scale), int(h * scale)
    canvas = np.zeros((640, 640, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh))
    blob = ((canvas.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
    outs = [o.reshape(o.shape[-2], o.shape[-1]) for o in session.run(None, {"input.1": blob})]
    rows = []
    for level, stride in enumerate((8, 16, 32)):
        scores, boxes, kps = outs[level], outs[level + 3], outs[level + 6]
        cells = 640 // stride
        for index in np.flatnonzero(scores[:, 0] >= threshold):
            cell = index // 2  # two anchors per location
            cx, cy = (cell % cells) * stride, (cell // cells) * stride
            left, top, right, bottom = boxes[index] * stride
            points = []
            for k in range(5):
                points += [cx + kps[index, 2 * k] * stride, cy + kps[index, 2 * k + 1] * stride]
            rows.append([cx - left, cy - top, cx + right, cy + bottom, scores[index, 0], *points])
    found = np.array(rows, dtype=np.float64)
    found[:, [0, 1, 2, 3]] /= scale
    found[:, 5:] /= scale
    xywh = np.column_stack(
        [found[:, 0], found[:, 1], found[:, 2] - found[:, 0], found[:, 3] - found[:, 1]]
    )
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), found[:, 4].tolist(), threshold, 0.4)
    return found[np.asarray(keep).ravel()]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.mark.parametrize("model", ["scrfd/det_500m.onnx", "scrfd/det_2.5g.onnx"])
def test_t1_six_faces_match_reference_decoding(
    models_dir: Path, data_dir: Path, model: str
) -> None:
    image = load_image(data_dir / "insightface_samples/t1.jpg")
    truth = json.loads((data_dir / "insightface_samples/truth.json").read_text())
    found = SCRFD(models_dir / model).detect(image)
    reference = _reference_detect(models_dir / model, image)
    assert len(found) == truth["t1.jpg"]["faces"] == 6
    assert len(reference) == 6
    for detection in found:
        match = max(reference, key=lambda row: _iou(np.array(detection.box), row[:4]))
        assert _iou(np.array(detection.box), match[:4]) > 0.95
        assert abs(detection.score - match[4]) < 0.03
        # landmarks within 2 px on faces about 100 px tall
        assert np.abs(detection.landmarks.ravel() - match[5:]).max() < 2.0
        assert detection.landmarks.dtype == np.float32
        assert detection.landmarks.shape == (5, 2)
        # left eye is image-left of the right eye, eyes above the nose, nose above the mouth
        eye_l, eye_r, nose, mouth_l, mouth_r = detection.landmarks
        assert eye_l[0] < eye_r[0]
        assert mouth_l[0] < mouth_r[0]
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
        x1, y1, x2, y2 = detection.box
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in detection.landmarks)
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)


def test_ivan_box_and_landmarks_match_documented_truth(models_dir: Path, data_dir: Path) -> None:
    truth = json.loads((data_dir / "mtcnn/truth.json").read_text())["ivan.jpg"]
    found = SCRFD("scrfd_2.5g", model_dir=models_dir).detect(data_dir / "mtcnn/ivan.jpg")
    assert len(found) == truth["faces"] == 1
    x, y, w, h = truth["documented_output"]["box_xywh"]
    # MTCNN's box is tighter at the chin than SCRFD's: compare centres and widths.
    (x1, y1, x2, y2), face = found[0].box, found[0]
    assert abs((x1 + x2) / 2 - (x + w / 2)) < 5
    assert abs((x2 - x1) - w) < 8
    assert y1 < y + 8
    assert y2 > y + h
    points = truth["documented_output"]["keypoints"]
    expected = np.array(
        [points[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
    )
    assert np.abs(face.landmarks - expected).max() < 6


def test_no_faces_alone_and_in_a_batch(models_dir: Path, data_dir: Path) -> None:
    detector = SCRFD("scrfd_500m", model_dir=models_dir)
    ivan, empty = data_dir / "mtcnn/ivan.jpg", data_dir / "mtcnn/no-faces.jpg"
    assert detector.detect(empty) == []
    batch = detector.detect_batch([empty, ivan, empty])
    assert [len(found) for found in batch] == [0, 1, 0]


def test_fixed_and_dynamic_exports_agree(models_dir: Path, data_dir: Path) -> None:
    """The same SCRFD-2.5G weights as an InsightFace pack export (dynamic input, unnamed
    outputs without batch dim) and as a fixed 640 export with named, batched outputs."""
    image = data_dir / "facenet_pytorch/multiface.jpg"
    dynamic = SCRFD(models_dir / "scrfd/det_2.5g.onnx").detect(image)
    fixed = SCRFD(models_dir / "scrfd/scrfd_2.5g_kps_640x640.onnx").detect(image)
    assert len(dynamic) == len(fixed) >= 5
    for a, b in zip(dynamic, fixed, strict=True):
        assert np.allclose(a.box, b.box, atol=0.5)
        assert np.allclose(a.landmarks, b.landmarks, atol=0.5)


def test_batch_equals_single_and_input_size(models_dir: Path, data_dir: Path) -> None:
    detector = SCRFD("scrfd_2.5g", model_dir=models_dir, input_size=(320, 320))
    images = [data_dir / "openface/longoria-cooper.jpg", data_dir / "openface/clapton-1.jpg"]
    batch = detector.detect_batch(images)
    for image, found in zip(images, batch, strict=True):
        single = detector.detect(image)
        assert [d.box for d in single] == [d.box for d in found]
    assert [len(found) for found in batch] == [2, 1]


def test_padding_finds_faces_filling_the_frame(models_dir: Path, data_dir: Path) -> None:
    image = data_dir / "orl_faces/s1/1.png"
    assert SCRFD("scrfd_2.5g", model_dir=models_dir).detect(image) == []
    padded = SCRFD("scrfd_2.5g", model_dir=models_dir, padding=0.5).detect(image)
    assert len(padded) == 1
    x1, y1, x2, y2 = padded[0].box
    assert x2 - x1 > 50
    assert 0 <= x1 < x2 <= 92
    assert 0 <= y1 < y2 <= 112


def test_max_faces_and_score_threshold(models_dir: Path, data_dir: Path) -> None:
    image = data_dir / "insightface_samples/t1.jpg"
    assert len(SCRFD("scrfd_500m", model_dir=models_dir, max_faces=2).detect(image)) == 2
    assert SCRFD("scrfd_500m", model_dir=models_dir, score_threshold=0.99).detect(image) == []


def test_bad_configuration(models_dir: Path) -> None:
    fixed = models_dir / "scrfd/scrfd_2.5g_kps_640x640.onnx"
    with pytest.raises(ConfigError, match="fixed input"):
        SCRFD(fixed, input_size=(320, 320))
    with pytest.raises(ConfigError, match="multiples of 32"):
        SCRFD("scrfd_500m", model_dir=models_dir, input_size=(300, 300))
    with pytest.raises(ConfigError):
        SCRFD("scrfd_500m", model_dir=models_dir, score_threshold=1.5)


def test_wrong_model_files(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not an SCRFD detector"):
        SCRFD(models_dir / "retinaface_mnet025_onnx/retinaface_mnet025_biubug6_640.onnx")
    with pytest.raises(ModelError, match="not an SCRFD detector"):
        SCRFD(models_dir / "yunet/face_detection_yunet_2026may.onnx")
    with pytest.raises(ModelError, match="recognition model"):
        SCRFD(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx")
    with pytest.raises(ModelError, match="recognition model"):
        SCRFD("mobilefacenet_128d", model_dir=models_dir)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        SCRFD(garbage)


def test_dynamic_batch_export_runs_batched_and_matches(
    models_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the fixed 640 export's batch is made dynamic by facekit._rebatch (its Reshapes to
    # [1, -1, C] and its Resizes to constant sizes [1, C, H, W] rewritten, then verified)
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    fixed_path = models_dir / "scrfd/scrfd_2.5g_kps_640x640.onnx"
    batched = SCRFD(fixed_path, batch_size=3)
    fixed = SCRFD(fixed_path, rebatch=False)
    assert batched.batch_size == 3
    assert fixed.batch_size == 1  # a graph with a batch of 1 runs image by image
    images = [
        data_dir / "insightface_samples/t1.jpg",
        data_dir / "mtcnn/no-faces.jpg",
        data_dir / "openface/longoria-cooper.jpg",
        data_dir / "facenet_pytorch/multiface.jpg",
    ]
    together, alone = batched.detect_batch(images), fixed.detect_batch(images)
    assert [len(found) for found in together] == [len(found) for found in alone]
    assert [len(found) for found in together][:3] == [6, 0, 2]
    for many, one in zip(together, alone, strict=True):
        for a, b in zip(many, one, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)


def test_unusable_device_is_an_error(models_dir: Path) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.fail("this test expects the CPU-only onnxruntime of the core install")
    with pytest.raises(DeviceError, match="no CUDA provider"):
        SCRFD("scrfd_500m", model_dir=models_dir, device="cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        SCRFD("scrfd_500m", model_dir=models_dir, device="tpu")


class _ShapeSpy:
    """Records the input shapes a session is run on."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.shapes: list[tuple[int, ...]] = []

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.shapes.extend(tuple(blob.shape) for blob in feed.values())
        return self._session.run(names, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


@pytest.mark.parametrize("model", ["scrfd_2.5g", "scrfd_500m"])
def test_trimmed_input_finds_the_same_faces_for_less_work(
    models_dir: Path, data_dir: Path, model: str
) -> None:
    # portrait, landscape, wide group photo, square: sizes 800x1061, 1280x886, 1200x630,
    # 561x561 at 640 trim to 512x640, 640x448, 640x352 and 640x640 network inputs
    names = ["openface/adams.jpg", "insightface_samples/t1.jpg", "facenet_pytorch/multiface.jpg"]
    images = [data_dir / name for name in [*names, "mtcnn/ivan.jpg"]]
    trimmed = SCRFD(model, model_dir=models_dir)
    square = SCRFD(model, model_dir=models_dir, trim=False)
    assert trimmed.trim
    assert not square.trim
    spy = _ShapeSpy(trimmed._session)
    trimmed._session = spy
    found = trimmed.detect_batch(images)
    assert sorted(spy.shapes) == sorted(
        [(1, 3, 640, 512), (1, 3, 448, 640), (1, 3, 352, 640), (1, 3, 640, 640)]
    )
    total = 0
    for image, got, reference in zip(images, found, square.detect_batch(images), strict=True):
        assert len(got) == len(reference) > 0, image
        for a, b in zip(got, reference, strict=True):
            width = b.box[2] - b.box[0]
            assert abs(a.score - b.score) < 0.05
            assert np.abs(np.subtract(a.box, b.box)).max() < 0.05 * width
            assert np.abs(a.landmarks - b.landmarks).max() < 0.05 * width
        total += len(got)
    assert total >= 10


def test_trim_is_off_for_a_fixed_size_graph(models_dir: Path, data_dir: Path) -> None:
    fixed = SCRFD(models_dir / "scrfd/scrfd_2.5g_kps_640x640.onnx", trim=True)
    assert not fixed.trim
    spy = _ShapeSpy(fixed._session)
    fixed._session = spy
    assert fixed.detect(data_dir / "openface/adams.jpg")
    assert spy.shapes == [(1, 3, 640, 640)]
