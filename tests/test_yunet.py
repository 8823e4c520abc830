"""YuNet on real weights and photos: the faces SCRFD finds, the detections of OpenCV's own
``cv2.FaceDetectorYN`` on the same network input, documented landmarks and typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from facekit.detectors import SCRFD
from facekit.detectors.yunet import YuNet
from facekit.errors import ConfigError, ImageError, ModelError
from facekit.io import load_image
from facekit.types import Detection

_MODEL = "yunet/face_detection_yunet_2026may.onnx"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _match(found: list[Detection], reference: list[Detection]) -> list[tuple[Detection, float]]:
    """For each reference face, the found face overlapping it most and their IoU; every
    found face is used once."""
    pairs = []
    for face in reference:
        best = max(found, key=lambda d: _iou(np.array(d.box), np.array(face.box)))
        pairs.append((best, _iou(np.array(best.box), np.array(face.box))))
    assert len({id(d) for d, _ in pairs}) == len(pairs)
    return pairs


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> YuNet:
    return YuNet(models_dir / _MODEL)


@pytest.fixture(scope="module")
def scrfd(models_dir: Path) -> SCRFD:
    return SCRFD("scrfd_2.5g", model_dir=models_dir)


@pytest.mark.parametrize(
    ("photo", "faces"),
    [
        ("insightface_samples/t1.jpg", 6),
        ("openface/longoria-cooper.jpg", 2),
        ("mtcnn/no-faces.jpg", 0),
    ],
)
def test_finds_the_faces_scrfd_finds(
    detector: YuNet, scrfd: SCRFD, data_dir: Path, photo: str, faces: int
) -> None:
    image = load_image(data_dir / photo)
    found, reference = detector.detect(image), scrfd.detect(image)
    assert len(found) == len(reference) == faces
    for (face, overlap), other in zip(_match(found, reference), reference, strict=True):
        assert overlap >= 0.7  # measured 0.82-0.96
        assert face.landmarks.shape == (5, 2)
        assert face.landmarks.dtype == np.float32
        eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
        assert eye_l[0] < eye_r[0]
        assert mouth_l[0] < mouth_r[0]
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
        # YuNet's points sit differently from SCRFD's: measured per face up to 9.7 % of the
        # face width on average, 15.4 % at worst (t1.jpg); OpenCV agrees with them (below)
        width = other.box[2] - other.box[0]
        distance = np.linalg.norm(face.landmarks - other.landmarks, axis=1) / width
        assert distance.mean() < 0.12
        assert distance.max() < 0.2
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    "photo",
    ["insightface_samples/t1.jpg", "facenet_pytorch/multiface.jpg", "openface/longoria-cooper.jpg"],
)
def test_agrees_with_opencv_face_detector_yn(
    detector: YuNet, models_dir: Path, data_dir: Path, photo: str
) -> None:
    """OpenCV is given the image resized as facekit's letterbox resizes it (longer side 640,
    INTER_AREA down, INTER_LINEAR up) and pads it to multiples of 32 as facekit trims; its
    results are scaled back to the original image. Both then run the same bytes through
    the network: the differences left are float rounding of two inference engines (measured
    below 1e-4 px and 1e-6 in score), so 0.05 px and 1e-3 would still catch any decoding
    slip (a missing half cell is 4-16 px)."""
    image = load_image(data_dir / photo)
    h, w = image.shape[:2]
    scale = 640 / max(h, w)
    size = (round(w * scale), round(h * scale))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    opencv = cv2.FaceDetectorYN.create(str(models_dir / _MODEL), "", size)
    opencv.setScoreThreshold(detector.score_threshold)
    opencv.setNMSThreshold(detector.nms_threshold)
    _, rows = opencv.detect(np.ascontiguousarray(small[..., ::-1]))  # OpenCV takes BGR
    rows = rows[np.argsort(-rows[:, 14])].astype(np.float64)
    rows[:, [0, 2, *range(4, 14, 2)]] *= w / size[0]
    rows[:, [1, 3, *range(5, 14, 2)]] *= h / size[1]
    found = detector.detect(image)
    assert len(found) == len(rows) >= 2
    for face, row in zip(found, rows, strict=True):
        box = [row[0], row[1], min(row[0] + row[2], w), min(row[1] + row[3], h)]
        assert np.abs(np.subtract(face.box, box)).max() < 0.05
        assert np.abs(face.landmarks.ravel() - row[4:14]).max() < 0.05
        assert abs(face.score - row[14]) < 1e-3


def test_ivan_landmarks_match_documented_truth(models_dir: Path, data_dir: Path) -> None:
    """By zoo name from a model directory; the truth is ipazc/mtcnn's documented output."""
    truth = json.loads((data_dir / "mtcnn/truth.json").read_text())["ivan.jpg"]
    found = YuNet("yunet_2026may", model_dir=models_dir).detect(data_dir / "mtcnn/ivan.jpg")
    assert len(found) == truth["faces"] == 1
    points = truth["documented_output"]["keypoints"]
    expected = np.array(
        [points[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
    )
    # measured: 0.6-3.7 px per point on a face about 50 px wide
    assert np.linalg.norm(found[0].landmarks - expected, axis=1).max() < 5.0
    x, y, w, h = truth["documented_output"]["box_xywh"]
    x1, y1, x2, y2 = found[0].box
    assert abs((x1 + x2) / 2 - (x + w / 2)) < 4
    assert abs((x2 - x1) - w) < 8
    # MTCNN's box is tighter at the chin
    assert abs(y1 - y) < 5
    assert y + h < y2 < y + h + 10


def test_no_faces_alone_and_in_a_batch(detector: YuNet, data_dir: Path) -> None:
    ivan, empty = data_dir / "mtcnn/ivan.jpg", data_dir / "mtcnn/no-faces.jpg"
    assert detector.detect(empty) == []
    batch = detector.detect_batch([empty, ivan, empty])
    assert [len(found) for found in batch] == [0, 1, 0]
    assert batch[1][0].box == detector.detect(ivan)[0].box
    assert detector.detect_batch([]) == []


def test_input_size_and_options(models_dir: Path, data_dir: Path) -> None:
    t1 = data_dir / "insightface_samples/t1.jpg"
    path = models_dir / _MODEL
    assert len(YuNet(path, input_size=(960, 672)).detect(t1)) == 6
    assert len(YuNet(path, trim=False).detect(t1)) == 6
    assert len(YuNet(path, max_faces=2).detect(t1)) == 2
    assert YuNet(path, score_threshold=0.99).detect(t1) == []
    # a face filling the frame, with and without padding
    orl = data_dir / "orl_faces/s1/1.png"
    assert len(YuNet(path, padding=0.5).detect(orl)) == 1
    assert "YuNet('yunet_2026may'" in repr(YuNet(path))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("score_threshold", -0.1),
        ("nms_threshold", 1.5),
        ("max_faces", 0),
        ("padding", 3.0),
        ("input_size", (640, 600)),
        ("threads", 0),
    ],
)
def test_bad_options(models_dir: Path, option: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        YuNet(models_dir / _MODEL, **{option: value})


def test_bad_images(detector: YuNet, data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((data_dir / "mtcnn/ivan.jpg").read_bytes()[:100])
    for bad in [tmp_path / "missing.jpg", broken, b"not an image", np.zeros((4, 0, 3), np.uint8)]:
        with pytest.raises(ImageError):
            detector.detect(bad)


def test_wrong_model_files(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a YuNet detector"):
        YuNet(models_dir / "centerface/centerface.onnx")
    with pytest.raises(ModelError, match="not a YuNet detector"):
        YuNet(models_dir / "scrfd/det_2.5g.onnx")
    with pytest.raises(ModelError, match="recognition model"):
        YuNet(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        YuNet(garbage)
