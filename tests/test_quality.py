"""Head pose from 5 landmarks and the enrolment quality filter, on synthetic and real faces."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit.aligners import TEMPLATES
from facekit.detectors import SCRFD
from facekit.errors import ConfigError
from facekit.quality import QualityFilter, estimate_pose
from facekit.types import Detection

FRONTAL = TEMPLATES["arcface112"].points.astype(np.float64)


def _rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    angle = np.radians(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points - 56) @ rotation.T + 56


def test_frontal_template_is_zero_anywhere_and_at_any_scale() -> None:
    poses = estimate_pose(np.stack([FRONTAL, FRONTAL * 4 + 300, FRONTAL * 0.5]))
    assert poses.shape == (3, 3)
    assert poses.dtype == np.float32
    assert np.abs(poses).max() < 1e-3


@pytest.mark.parametrize("roll", [-30.0, -10.0, 5.0, 25.0])
def test_roll_is_measured_and_does_not_leak(roll: float) -> None:
    yaw, pitch, measured = estimate_pose(_rotate(FRONTAL, roll))[0]
    assert measured == pytest.approx(roll, abs=0.01)
    assert abs(yaw) < 0.01
    assert abs(pitch) < 0.01


def test_yaw_sign_and_growth_and_mirroring() -> None:
    yaws = []
    for shift in (2.0, 4.0, 8.0, 12.0):
        turned = FRONTAL.copy()
        turned[2, 0] += shift  # nose moves to the image right
        yaws.append(estimate_pose(turned)[0, 0])
    assert all(y > 0 for y in yaws)
    assert yaws == sorted(yaws)
    turned = _rotate(FRONTAL, 12.0)
    turned[2, 0] += 8.0
    mirrored = turned.copy()
    mirrored[:, 0] = 112 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # image-left points first again
    (yaw, pitch, roll), (m_yaw, m_pitch, m_roll) = estimate_pose(np.stack([turned, mirrored]))
    # The template's eyes are not level (0.3 degrees): its mirror image is off by twice that.
    assert m_yaw == pytest.approx(-yaw, abs=1.0)
    assert m_roll == pytest.approx(-roll, abs=1.0)
    assert m_pitch == pytest.approx(pitch, abs=1.0)


def test_pitch_sign() -> None:
    down = FRONTAL.copy()
    down[2, 1] += 6.0  # nose lower between eyes and mouth: head tilted down
    up = FRONTAL.copy()
    up[2, 1] -= 6.0
    assert estimate_pose(down)[0, 1] > 5 > -5 > estimate_pose(up)[0, 1]


def _detection(points: np.ndarray, size: float = 100.0, score: float = 0.9) -> Detection:
    return Detection((0.0, 0.0, size, size), score, points)


def test_filter_reasons_in_order() -> None:
    quality = QualityFilter()
    turned = FRONTAL.copy()
    turned[2, 0] += 25.0  # yaw about 55 degrees
    reasons = quality.reasons(
        [
            _detection(FRONTAL),
            _detection(FRONTAL, size=20),
            _detection(FRONTAL, score=0.3),
            _detection(turned),
            _detection(_rotate(FRONTAL, 50)),
        ]
    )
    assert reasons[0] is None
    assert reasons[1] == "face too small (20 px < 32 px)"
    assert reasons[2] == "low detector score (0.30 < 0.50)"
    assert reasons[3] is not None
    assert reasons[3].startswith("head turned (yaw")
    assert reasons[4] is not None
    assert reasons[4].startswith("head rotated (roll 50")
    assert quality.reasons([]) == []
    assert QualityFilter.off().reasons([_detection(turned, size=1, score=0.01)]) == [None]
    with pytest.raises(ConfigError, match="max_yaw"):
        QualityFilter(max_yaw=-1)


def test_real_faces(models_dir: Path, data_dir: Path, report: Callable[[str], None]) -> None:
    t1 = data_dir / "insightface_samples/t1.jpg"
    group = SCRFD("scrfd_2.5g", model_dir=models_dir).detect(t1)
    poses = estimate_pose(np.stack([d.landmarks for d in group]))
    # One of t1's six people turns away: eyes closest together for the box, nose beside
    # the eye. That face alone is rejected, as turned to the image left.
    eye_span = [abs(d.landmarks[1, 0] - d.landmarks[0, 0]) / d.width for d in group]
    turned = int(np.argmin(eye_span))
    reasons = QualityFilter().reasons(group)
    assert [i for i, r in enumerate(reasons) if r is not None] == [turned]
    assert str(reasons[turned]).startswith("head turned")
    assert poses[turned, 0] < -45
    assert np.abs(np.delete(poses[:, 0], turned)).max() < 35
    detector = SCRFD("scrfd_2.5g", model_dir=models_dir, padding=0.5, input_size=(320, 320))
    faces = [
        found[0]
        for found in detector.detect_batch(sorted((data_dir / "orl_faces").glob("s*/*.png")))
        if found
    ]
    yaw = estimate_pose(np.stack([d.landmarks for d in faces]))[:, 0]
    default = sum(reason is not None for reason in QualityFilter().reasons(faces))
    strict = QualityFilter(max_yaw=20).reasons(faces)
    report(
        f"ORL pose: |yaw| > 20 deg on {int((np.abs(yaw) > 20).sum())}/{len(faces)} faces; "
        f"rejected by the default filter: {default}, with max_yaw=20: "
        f"{sum(r is not None for r in strict)}"
    )
    assert len(faces) == 400
    assert 10 <= (np.abs(yaw) > 20).sum() <= 40  # measured 18: ORL has turned heads
    assert default <= 5  # measured 0: upright, mostly frontal crops
    assert all(r is None or r.startswith("head turned") for r in strict)
    assert sum(r is not None for r in strict) == (np.abs(yaw) > 20).sum()
