"""Result types: what they show, their JSON form, and the faces they say were found
(issue 11, items 13 and 15), on real weights and photos."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import facekit
from facekit import FaceRecognizer, Thresholds
from facekit.types import EnrolledFace, EnrollProblem, EnrollReport


@pytest.fixture(scope="module")
def recognizer(models_dir: Path) -> FaceRecognizer:
    return FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )


def _assert_json_ready(value: object) -> None:
    """Only str/int/float/bool/None, lists and str-keyed dicts, no NaN/inf."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str)
            _assert_json_ready(item)
    elif isinstance(value, list):
        for item in value:
            _assert_json_ready(item)
    elif isinstance(value, float):
        assert math.isfinite(value)
    else:
        assert value is None or type(value) in (str, int, bool), type(value)


def _round_trip(value: dict[str, object]) -> dict[str, object]:
    _assert_json_ready(value)
    back = json.loads(json.dumps(value, allow_nan=False, ensure_ascii=False))
    assert back == value
    return back  # type: ignore[no-any-return]


def test_verification_shows_both_thresholds(recognizer: FaceRecognizer, data_dir: Path) -> None:
    openface = data_dir / "openface"
    result = recognizer.verify(openface / "lennon-1.jpg", openface / "lennon-2.jpg")
    likely, same = result.thresholds.likely, result.thresholds.same
    assert likely < same <= result.similarity  # "same" is decided at the stricter threshold
    assert repr(result) == (
        f"Verification(similarity={result.similarity:.4f}, verdict='same', same=True, "
        f"thresholds=(likely={likely:.4f}, same={same:.4f}))"
    )
    data = _round_trip(result.to_dict())
    assert data["verdict"] == "same"
    assert data["same"] is True
    assert data["threshold"] == likely
    assert data["thresholds"] == {
        "likely": likely,
        "same": same,
        "protocol": result.thresholds.protocol,
    }
    assert data["faces_found"] == [1, 1]
    face_a = result.face_a.to_dict()
    assert data["face_a"] == face_a
    assert set(face_a) == {"box", "score", "landmarks", "embedding"}  # no crop pixels
    assert np.allclose(face_a["embedding"], result.face_a.embedding)
    assert np.allclose(face_a["landmarks"], result.face_a.detection.landmarks)
    assert face_a["box"] == list(result.face_a.box)


def test_results_count_the_faces_of_a_group_photo(
    recognizer: FaceRecognizer, data_dir: Path
) -> None:
    group, lennon = data_dir / "openface/longoria-cooper.jpg", data_dir / "openface/lennon-1.jpg"
    result = recognizer.verify(group, lennon)
    assert result.faces_found == (2, 1)
    assert recognizer.verify(lennon, group).faces_found == (1, 2)
    assert len(recognizer.detect(group)) == 2


def test_face_match_json_keeps_the_nearest_candidate_of_an_unknown_face(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    fr = FaceRecognizer(
        detector=recognizer.detector, embedder=recognizer.embedder, gallery=tmp_path / "g.db"
    )
    fr.enroll([("lennon", data_dir / "openface/lennon-1.jpg")], progress=False)
    (match,) = fr.identify(data_dir / "openface/clapton-1.jpg", top_k=3)
    assert match.identity is None
    data = _round_trip(match.to_dict())
    assert data["identity"] is None
    assert data["margin"] is None  # one identity: no runner-up (inf in the result)
    assert data["candidates"] == [{"identity": "lennon", "similarity": match.similarity}]
    assert data["face"] == match.face.to_dict()
    assert data["threshold"] == fr.thresholds.same


def test_enroll_report_json_and_groups() -> None:
    added = (
        EnrolledFace("bob", "bob/1.jpg", (1.0, 2.0, 30.0, 40.0), 0.9, 2),
        EnrolledFace("ann", "ann/\udcff.png", (0.0, 0.0, 112.0, 112.0), None, 0),
    )
    failed = (
        EnrollProblem("x.jpg", "x", "no face found in x.jpg", "no face found"),
        EnrollProblem("y.jpg", "caf\udce9", "identity is not valid UTF-8", "invalid identity name"),
        EnrollProblem("z.jpg", "z", "no face found in z.jpg", "no face found"),
    )
    report = EnrollReport(added, (), failed)
    assert report.several_faces == (added[0],)
    groups = report.failures_by_reason()
    assert list(groups) == ["no face found", "invalid identity name"]
    assert [p.source for p in groups["no face found"]] == ["x.jpg", "z.jpg"]
    data = _round_trip(report.to_dict())
    assert data["counts"] == {"added": 2, "skipped": 0, "failed": 3, "several_faces": 1}
    assert data["failures_by_reason"] == {"no face found": 2, "invalid identity name": 1}
    # undecodable file-name bytes are shown as escapes, so the JSON encodes as UTF-8
    assert data["added"][1]["source"] == "ann/\\xff.png"  # type: ignore[index]
    assert data["failed"][1]["identity"] == "caf\\xe9"  # type: ignore[index]
    json.dumps(data, ensure_ascii=False).encode("utf-8")


def test_thresholds_and_detection_to_dict(recognizer: FaceRecognizer, data_dir: Path) -> None:
    assert _round_trip(Thresholds(0.2, 0.3).to_dict()) == {
        "likely": 0.2,
        "same": 0.3,
        "protocol": "set by the user",
    }
    (detection,) = recognizer.detect(data_dir / "mtcnn/ivan.jpg")
    data = _round_trip(detection.to_dict())
    assert len(data["landmarks"]) == 5  # type: ignore[arg-type]
    assert data["score"] == detection.score


def test_dir_lists_the_lazy_names() -> None:
    names = dir(facekit)
    for name in ("FaceRecognizer", "Gallery", "load_image", "Verification", "__version__"):
        assert name in names
    assert set(facekit.__all__) <= set(names)
