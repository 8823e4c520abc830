"""MTCNN on the real P/R/O-Net weights and real photos: an independent reference output,
agreement with SCRFD, batching, and MTCNN + ArcFace-style recognition end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.detectors import MTCNN, SCRFD
from facekit.detectors._common import nms
from facekit.errors import ConfigError, DeviceError, ImageError, ModelError
from facekit.io import load_image


@pytest.fixture(scope="module")
def mtcnn(models_dir: Path) -> MTCNN:
    return MTCNN(models_dir / "mtcnn_torch")


def _iou(a: tuple[float, ...] | np.ndarray, b: tuple[float, ...] | np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_ivan_matches_the_published_reference_output(mtcnn: MTCNN, data_dir: Path) -> None:
    # ipazc/mtcnn (an independent TensorFlow implementation of the same Caffe weights)
    # documents its output on ivan.jpg: box (x, y, w, h) and five keypoints.
    truth = json.loads((data_dir / "mtcnn/truth.json").read_text())["ivan.jpg"]
    documented = truth["documented_output"]
    x, y, w, h = documented["box_xywh"]
    (face,) = mtcnn.detect(data_dir / "mtcnn/ivan.jpg")
    assert _iou(face.box, (x, y, x + w, y + h)) > 0.8
    assert face.score > 0.99
    keypoints = documented["keypoints"]
    expected = np.array(
        [keypoints[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
    )
    # within 3 px on a face 63 px tall (measured: at most 2.2 px)
    assert np.abs(face.landmarks - expected).max() < 3.0


def test_no_face_image_alone_and_in_a_batch(mtcnn: MTCNN, data_dir: Path) -> None:
    empty = data_dir / "mtcnn/no-faces.jpg"
    assert mtcnn.detect(empty) == []
    alone = mtcnn.detect(data_dir / "mtcnn/ivan.jpg")
    batched = mtcnn.detect_batch([empty, data_dir / "mtcnn/ivan.jpg", empty])
    assert [len(found) for found in batched] == [0, 1, 0]
    assert np.allclose(batched[1][0].box, alone[0].box)
    with pytest.raises(ImageError):
        mtcnn.detect(b"this is not an image")


@pytest.mark.parametrize(
    ("photo", "faces"), [("insightface_samples/t1.jpg", 6), ("facenet_pytorch/multiface.jpg", 6)]
)
def test_agrees_with_scrfd_on_group_photos(
    mtcnn: MTCNN, models_dir: Path, data_dir: Path, photo: str, faces: int
) -> None:
    image = load_image(data_dir / photo)
    reference = SCRFD(models_dir / "scrfd/det_2.5g.onnx").detect(image)
    assert len(reference) == faces
    found = mtcnn.detect(image)
    confident = [d for d in found if d.score > 0.95]
    for face in reference:
        match = max(confident, key=lambda d: _iou(d.box, face.box))
        # the two detectors draw boxes differently (MTCNN's reach higher on the forehead)
        assert _iou(match.box, face.box) > 0.5
        error = np.linalg.norm(match.landmarks - face.landmarks, axis=1).max()
        assert error < 0.12 * face.width, (photo, error, face.width)
    # every confident MTCNN face is one of SCRFD's; the rest (on t1: a hand and the back
    # of a head, at 0.86-0.87) stay below 0.9
    assert len(confident) == faces
    assert all(d.score < 0.9 for d in found if d not in confident)
    assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)


def test_batch_of_different_sizes_equals_one_by_one(mtcnn: MTCNN, data_dir: Path) -> None:
    paths = [
        data_dir / "openface/longoria-cooper.jpg",
        data_dir / "mtcnn/ivan.jpg",
        data_dir / "openface/clapton-2.jpg",
        data_dir / "mtcnn/ivan.jpg",
    ]
    batched = mtcnn.detect_batch(paths)
    for path, found in zip(paths, batched, strict=True):
        alone = mtcnn.detect(path)
        assert len(found) == len(alone) >= 1
        for a, b in zip(found, alone, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
    assert len(batched[0]) == 2  # Eva Longoria and Bradley Cooper


def test_min_face_size_and_max_faces(models_dir: Path, data_dir: Path) -> None:
    image = data_dir / "insightface_samples/t1.jpg"
    default = MTCNN(models_dir / "mtcnn_torch").detect(image)
    coarse = MTCNN(models_dir / "mtcnn_torch", min_face_size=80).detect(image)
    assert 6 <= len(coarse) < len(default)
    assert min(d.height for d in coarse) > 60
    top = MTCNN(models_dir / "mtcnn_torch", max_faces=2).detect(image)
    assert [d.score for d in top] == [d.score for d in default[:2]]


def test_model_by_zoo_name_file_and_errors(models_dir: Path, tmp_path: Path) -> None:
    assert MTCNN("mtcnn", model_dir=models_dir).name == "mtcnn"
    assert MTCNN(models_dir / "mtcnn_torch/onet.pt").name == "mtcnn"  # siblings found
    with pytest.raises(ModelError, match=r"needs pnet\.pt"):
        MTCNN(tmp_path)  # an empty directory
    (tmp_path / "pnet.pt").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match=r"pnet\.pt, rnet\.pt and onet\.pt"):
        MTCNN(tmp_path / "pnet.pt")
    with pytest.raises(DeviceError, match="CUDA"):
        MTCNN(models_dir / "mtcnn_torch", device="cuda")
    with pytest.raises(ConfigError):
        MTCNN(models_dir / "mtcnn_torch", min_face_size=5)
    with pytest.raises(ConfigError):
        MTCNN(models_dir / "mtcnn_torch", thresholds=(0.6, 0.7))  # type: ignore[arg-type]


def test_nms_min_mode_drops_nested_boxes() -> None:
    boxes = np.array([[0, 0, 100, 100], [10, 10, 40, 40], [200, 0, 300, 100]], dtype=float)
    scores = np.array([0.9, 0.8, 0.7])
    # the small box lies inside the big one: IoU 0.09 keeps it, overlap/min-area 1.0 drops it
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.7, mode="min").tolist() == [0, 2]


def test_mtcnn_with_the_arcface_style_recogniser(models_dir: Path, data_dir: Path) -> None:
    """The stages are interchangeable: MTCNN landmarks feed the same aligner and ONNX
    recogniser as SCRFD's, and same-person pairs score above different-person pairs."""
    openface = data_dir / "openface"
    pairs_same = [("lennon-1", "lennon-2"), ("clapton-1", "clapton-2")]
    pairs_different = [("lennon-1", "clapton-1"), ("carell", "adams"), ("lennon-2", "carell")]
    scores = {}
    for detector, options in (("mtcnn", {}), ("scrfd", {"detector_model": "scrfd_2.5g"})):
        fr = FaceRecognizer(
            detector=detector,
            embedder_model="mobilefacenet_128d",
            model_dir=models_dir,
            **options,  # type: ignore[arg-type]
        )
        same = [fr.verify(openface / f"{a}.jpg", openface / f"{b}.jpg") for a, b in pairs_same]
        other = [
            fr.verify(openface / f"{a}.jpg", openface / f"{b}.jpg") for a, b in pairs_different
        ]
        assert all(v.same for v in same), detector
        assert not any(v.same for v in other), detector
        assert min(v.similarity for v in same) > max(v.similarity for v in other) + 0.3
        scores[detector] = [v.similarity for v in same + other]
    # and the two pipelines give similar similarities for the same pairs
    assert np.abs(np.subtract(scores["mtcnn"], scores["scrfd"])).max() < 0.15


def test_find_example_runs(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "find"
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "examples/mtcnn_adaface_find.py"),
            str(data_dir / "openface/lennon-1.jpg"),
            "--database",
            str(data_dir / "openface"),
            "--embedder",
            "arcface",
            "--embedder-model",
            "mobilefacenet_128d",
            "--model-dir",
            str(models_dir),
            "--out",
            str(out_dir),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # Lennon's other photo and both of OpenFace's aligned Lennon crops match; nobody else
    matched = sorted(p.stem.split("_", 1)[1] for p in out_dir.glob("*.png"))
    assert matched == ["lennon-1", "lennon-2", "lennon-2"]
    assert done.stdout.count("match: ") == 3
    non_matches = (out_dir / "non_matches.txt").read_text().splitlines()
    assert len(non_matches) == 9
    assert not any("lennon" in line for line in non_matches)


def test_without_torch_the_error_names_the_extra(models_dir: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from facekit.detectors import MTCNN\n"
        "from facekit.errors import BackendError\n"
        "try:\n"
        f"    MTCNN({str(models_dir / 'mtcnn_torch')!r})\n"
        "except BackendError as exc:\n"
        "    print('BackendError:', exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "BackendError:" in done.stdout, done.stderr
    assert "pip install 'facekit[torch]'" in done.stdout
