"""Quality checks before a face is enrolled: size, detector score, head pose.

The pose is estimated from the 5 landmarks alone, against the ArcFace 112×112 template
(a frontal face): a rough, vectorised estimate, good to roughly ±10°, meant for filtering
out turned heads, not for measuring them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from .aligners import TEMPLATES
from .errors import ConfigError
from .types import Detection

__all__ = ["QualityFilter", "estimate_pose"]

_FRONTAL = TEMPLATES["arcface112"].points.astype(np.float64)


def _nose_ratios(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nose position in a face frame with roll removed: horizontal offset from the midline
    of eyes and mouth in units of half the eye distance, and vertical position between the
    eye line (0) and the mouth line (1)."""
    eyes = (points[:, 0] + points[:, 1]) / 2
    mouth = (points[:, 3] + points[:, 4]) / 2
    half_eyes = np.linalg.norm(points[:, 1] - points[:, 0], axis=1) / 2
    midline_x = (eyes[:, 0] + mouth[:, 0]) / 2
    horizontal = (points[:, 2, 0] - midline_x) / np.maximum(half_eyes, 1e-6)
    span = mouth[:, 1] - eyes[:, 1]
    vertical = (points[:, 2, 1] - eyes[:, 1]) / np.where(np.abs(span) < 1e-6, 1e-6, span)
    return horizontal, vertical


_FRONTAL_HORIZONTAL, _FRONTAL_VERTICAL = _nose_ratios(_FRONTAL[None])
_FRONTAL_ROLL = np.arctan2(*(_FRONTAL[1] - _FRONTAL[0])[::-1])


def estimate_pose(landmarks: np.ndarray) -> np.ndarray:
    """Head pose from 5 landmarks.

    Args:
        landmarks: ``(5, 2)`` or ``(N, 5, 2)`` pixel coordinates (left eye, right eye,
            nose, left and right mouth corner; image left first).

    Returns:
        ``(N, 3)`` float32 ``(yaw, pitch, roll)`` in degrees, each 0 for the landmarks of
        the frontal template (any position and scale). Roll is the angle of the eye line,
        positive when the face is rotated clockwise in the image (the eye on the image
        right is lower). Yaw comes from the nose's sideways offset from the eye-mouth
        midline, ``atan(offset / half eye distance)``, positive when the nose points to the
        image right. Pitch comes from the nose's height between the eye line and the mouth
        line compared with the template's, positive when the nose sits lower (head tilted
        down).
    """
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    eye_vector = points[:, 1] - points[:, 0]
    roll = np.arctan2(eye_vector[:, 1], eye_vector[:, 0]) - _FRONTAL_ROLL
    # Undo the roll around the eye centre, so yaw and pitch see an upright face.
    centre = (points[:, 0] + points[:, 1])[:, None, :] / 2
    cos, sin = np.cos(-roll)[:, None], np.sin(-roll)[:, None]
    shifted = points - centre
    upright = np.stack(
        [
            shifted[..., 0] * cos - shifted[..., 1] * sin,
            shifted[..., 0] * sin + shifted[..., 1] * cos,
        ],
        axis=-1,
    )
    horizontal, vertical = _nose_ratios(upright)
    # A turned head moves the nose tip sideways by about depth * sin(yaw) while the eyes
    # close up by cos(yaw); with the nose's depth taken as half the eye distance, the
    # offset ratio is tan(yaw).
    yaw = np.arctan(horizontal - _FRONTAL_HORIZONTAL)
    # Likewise vertically: the nose's shift within the eye-mouth span, doubled, is taken
    # as tan(pitch).
    pitch = np.arctan((vertical - _FRONTAL_VERTICAL) * 2.0)
    angles: np.ndarray = np.degrees(np.stack([yaw, pitch, roll], axis=1)).astype(np.float32)
    return angles


@dataclass(frozen=True, slots=True)
class QualityFilter:
    """Limits a face must meet to be enrolled.

    Attributes:
        min_face_size: shorter side of the box, in pixels (default 32).
        min_score: detector score (default 0.5, SCRFD's own default threshold: large, sharp
            faces can score as low as 0.55 with the small SCRFD models).
        max_yaw: absolute yaw in degrees (default 45).
        max_pitch: absolute pitch in degrees (default 35).
        max_roll: absolute roll in degrees (default 35).
    """

    min_face_size: float = 32.0
    min_score: float = 0.5
    max_yaw: float = 45.0
    max_pitch: float = 35.0
    max_roll: float = 35.0

    def __post_init__(self) -> None:
        for field in fields(self):
            if getattr(self, field.name) < 0:
                raise ConfigError(f"{field.name} must not be negative")

    @classmethod
    def off(cls) -> QualityFilter:
        """A filter every face passes."""
        return cls(min_face_size=0.0, min_score=0.0, max_yaw=90.0, max_pitch=90.0, max_roll=180.0)

    def reasons(self, detections: Sequence[Detection]) -> list[str | None]:
        """For each detection, ``None`` if it passes, else why not (first failing check)."""
        if not detections:
            return []
        sizes = np.array([min(d.width, d.height) for d in detections])
        scores = np.array([d.score for d in detections])
        pose = estimate_pose(np.stack([d.landmarks for d in detections]))
        yaw, pitch, roll = np.abs(pose).T
        result: list[str | None] = []
        for i in range(len(detections)):
            if sizes[i] < self.min_face_size:
                result.append(f"face too small ({sizes[i]:.0f} px < {self.min_face_size:.0f} px)")
            elif scores[i] < self.min_score:
                result.append(f"low detector score ({scores[i]:.2f} < {self.min_score:.2f})")
            elif yaw[i] > self.max_yaw:
                result.append(f"head turned (yaw {yaw[i]:.0f}° > {self.max_yaw:.0f}°)")
            elif pitch[i] > self.max_pitch:
                result.append(f"head tilted (pitch {pitch[i]:.0f}° > {self.max_pitch:.0f}°)")
            elif roll[i] > self.max_roll:
                result.append(f"head rotated (roll {roll[i]:.0f}° > {self.max_roll:.0f}°)")
            else:
                result.append(None)
        return result
