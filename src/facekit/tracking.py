"""A simple IoU tracker for video: which face of this frame is which face of the last one,
and which tracks need a new embedding.

Detections of a frame are matched to the live tracks greedily, highest box IoU first
(no Hungarian assignment: faces in a frame rarely overlap). A track that goes unmatched
for more than ``max_missed`` analysed frames ends. A track is re-embedded only when it is
due: it has no embedding yet, its last one is ``reembed_every`` frames old, its box moved
(IoU with the box at its last embedding below ``reembed_iou``) or changed scale (side
ratio beyond ``reembed_scale``), or its aligned face looks different (`appearance`
correlation below ``min_appearance``: a cut to another person at the same place).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import ConfigError
from .types import Box, Detection

__all__ = ["Embedded", "IoUTracker", "Track", "appearance", "box_iou"]

_LOOK_SIDE = 16


@dataclass(frozen=True, slots=True, eq=False)
class Embedded:
    """A track's last embedding and what the face looked like then.

    Attributes:
        frame: the frame index it was computed on.
        box: the face's box then, ``(x1, y1, x2, y2)`` pixels.
        embedding: ``(D,)`` float32 unit vector.
        look: the aligned crop's `appearance` vector then.
    """

    frame: int
    box: Box
    embedding: np.ndarray
    look: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class Track:
    """One face followed across frames.

    Attributes:
        id: track number, unique within one tracker (from 1).
        detection: the face in the last frame it was seen in.
        first_frame: frame index it was first seen in.
        last_frame: frame index it was last seen in.
        missed: analysed frames since it was last seen.
        embedded: its last embedding, ``None`` before the first.
    """

    id: int
    detection: Detection
    first_frame: int
    last_frame: int
    missed: int = 0
    embedded: Embedded | None = None


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes, in ``[0, 1]``."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0.0) * max(height, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def appearance(crop: np.ndarray) -> np.ndarray:
    """A cheap look of an aligned ``(H, W, 3)`` uint8 crop: its grey levels at 16×16,
    zero-mean and unit-norm, as a ``(256,)`` float32 vector. The dot product of two looks
    is their correlation (1: same picture)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (_LOOK_SIDE, _LOOK_SIDE), interpolation=cv2.INTER_AREA)
    vector = small.astype(np.float32).ravel()
    vector -= vector.mean()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class IoUTracker:
    """Keeps face tracks between frames (see the module's docstring).

    Args:
        match_iou: least IoU for a detection to continue a track.
        max_missed: analysed frames a track may go unseen before it ends.
        reembed_every: a track's embedding is renewed after this many frames.
        reembed_iou: ... or when the IoU of its box with the box at its last embedding falls
            below this.
        reembed_scale: ... or when its box's side grew or shrank by more than this factor.
        min_appearance: ... or when its aligned face's `appearance` correlation with the one
            at its last embedding falls below this.
    """

    def __init__(
        self,
        *,
        match_iou: float = 0.3,
        max_missed: int = 10,
        reembed_every: int = 30,
        reembed_iou: float = 0.5,
        reembed_scale: float = 1.3,
        min_appearance: float = 0.7,
    ) -> None:
        for name, value in (("match_iou", match_iou), ("reembed_iou", reembed_iou)):
            if not 0 < value <= 1:
                raise ConfigError(f"{name} must be in (0, 1], got {value}")
        if max_missed < 0 or reembed_every < 1:
            raise ConfigError(
                f"max_missed must be at least 0 and reembed_every at least 1, got "
                f"{max_missed} and {reembed_every}"
            )
        if reembed_scale <= 1:
            raise ConfigError(f"reembed_scale must be above 1, got {reembed_scale}")
        if not -1 <= min_appearance <= 1:
            raise ConfigError(f"min_appearance must be in [-1, 1], got {min_appearance}")
        self.match_iou = match_iou
        self.max_missed = max_missed
        self.reembed_every = reembed_every
        self.reembed_iou = reembed_iou
        self.reembed_scale = reembed_scale
        self.min_appearance = min_appearance
        self._tracks: dict[int, Track] = {}
        self._ids = itertools.count(1)

    @property
    def tracks(self) -> list[Track]:
        """The live tracks (seen or recently missed), oldest first."""
        return list(self._tracks.values())

    def update(self, frame: int, detections: Sequence[Detection]) -> list[Track]:
        """Match the faces of frame ``frame`` to the tracks; unmatched faces start tracks,
        tracks unseen for too long end.

        Returns:
            One track per detection, in the order of ``detections``.
        """
        pairs = sorted(
            (
                (box_iou(track.detection.box, detection.box), track.id, index)
                for track in self._tracks.values()
                for index, detection in enumerate(detections)
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used: set[int] = set()
        for iou, track_id, index in pairs:
            if iou < self.match_iou:
                break
            if track_id in used or index in assigned:
                continue
            assigned[index] = track_id
            used.add(track_id)
        for track_id, track in list(self._tracks.items()):
            if track_id not in used:
                if track.missed >= self.max_missed:
                    del self._tracks[track_id]
                else:
                    self._tracks[track_id] = dataclasses.replace(track, missed=track.missed + 1)
        result = []
        for index, detection in enumerate(detections):
            if index in assigned:
                track = dataclasses.replace(
                    self._tracks[assigned[index]], detection=detection, last_frame=frame, missed=0
                )
            else:
                track = Track(next(self._ids), detection, frame, frame)
            self._tracks[track.id] = track
            result.append(track)
        return result

    def needs_embedding(self, track: Track, frame: int, look: np.ndarray) -> bool:
        """Whether ``track``, seen in frame ``frame`` with aligned-face `appearance` ``look``,
        is due for a new embedding (see the module's docstring)."""
        last = track.embedded
        if last is None or frame - last.frame >= self.reembed_every:
            return True
        box = track.detection.box
        if box_iou(box, last.box) < self.reembed_iou:
            return True
        old_side = np.sqrt(max((last.box[2] - last.box[0]) * (last.box[3] - last.box[1]), 1e-6))
        ratio = np.sqrt(max(track.detection.area, 1e-6)) / old_side
        if max(ratio, 1 / ratio) > self.reembed_scale:
            return True
        return float(np.dot(look, last.look)) < self.min_appearance

    def embedded(self, track: Track, frame: int, embedding: np.ndarray, look: np.ndarray) -> Track:
        """Record ``track``'s new embedding, made on frame ``frame``; returns the track."""
        updated = dataclasses.replace(
            track, embedded=Embedded(frame, track.detection.box, embedding, look)
        )
        self._tracks[track.id] = updated
        return updated

    def split(self, track: Track, frame: int) -> Track:
        """End ``track`` and give its current face a new track starting at ``frame`` (its
        new embedding showed another person); returns the new track."""
        del self._tracks[track.id]
        fresh = Track(next(self._ids), track.detection, frame, frame)
        self._tracks[fresh.id] = fresh
        return fresh
