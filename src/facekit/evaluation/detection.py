"""Detection against box ground truth: average precision at IoU 0.5, per-image recall and
the precision-recall curve.

Ground truth formats (recognised from the file):

- JSON: ``{"image.jpg": [[x1, y1, x2, y2], ...], ...}`` (or a list of
  ``{"box": [x1, y1, x2, y2]}`` per image);
- CSV: a header ``image,x1,y1,x2,y2`` or ``image,x,y,w,h``, one face per row;
- WIDER FACE ``wider_face_*_bbx_gt.txt``: an image path line, a count line, then ``count``
  lines ``x y w h blur expression illumination invalid occlusion pose`` (an image with no
  face has one line of zeros); faces marked ``invalid`` are left out;
- WIDER FACE ``wider_face_*.mat`` (``event_list``, ``file_list``, ``face_bbx_list``; read
  with SciPy, the ``[eval]`` extra): images are ``EVENT/FILE.jpg``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError, ConfigError, FacekitError
from ..io import load_image

if TYPE_CHECKING:
    from ..protocols import Detector

__all__ = ["DetectionReport", "average_precision", "evaluate_detection", "read_boxes"]


def read_boxes(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Ground-truth boxes per image name: ``(n, 4)`` float64 ``x1, y1, x2, y2``.

    Raises:
        ConfigError: unreadable or malformed file.
        BackendError: a ``.mat`` file and SciPy is not installed (``facekit[eval]``).
    """
    source = Path(path)
    if source.suffix.lower() == ".mat":
        return _wider_mat(source)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read ground truth {source}: {exc}") from None
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        return _json(source, text)
    first = stripped.splitlines()[0] if stripped else ""
    if "," in first:
        return _csv(source, text)
    return _wider_txt(source, text)


def _as_boxes(source: Path, name: str, values: Any) -> np.ndarray:
    try:
        boxes = np.array(
            [v["box"] if isinstance(v, dict) else v for v in values], dtype=np.float64
        ).reshape(-1, 4)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"{source}: boxes of {name!r} are not [x1, y1, x2, y2]: {exc}") from None
    if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
        raise ConfigError(f"{source}: a box of {name!r} has x2 <= x1 or y2 <= y1")
    return boxes


def _json(source: Path, text: str) -> dict[str, np.ndarray]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected an object mapping image names to boxes")
    return {str(name): _as_boxes(source, str(name), boxes) for name, boxes in data.items()}


def _csv(source: Path, text: str) -> dict[str, np.ndarray]:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise ConfigError(f"{source} has no rows")
    fields = set(rows[0])
    xywh = {"image", "x", "y", "w", "h"} <= fields
    if not xywh and not {"image", "x1", "y1", "x2", "y2"} <= fields:
        raise ConfigError(f"{source}: the header must be image,x1,y1,x2,y2 or image,x,y,w,h")
    found: dict[str, list[list[float]]] = {}
    for number, row in enumerate(rows, 2):
        try:
            if xywh:
                x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
                box = [x, y, x + w, y + h]
            else:
                box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")]
        except (TypeError, ValueError):
            raise ConfigError(f"{source}:{number}: box values must be numbers") from None
        found.setdefault(row["image"], []).append(box)
    return {name: _as_boxes(source, name, boxes) for name, boxes in found.items()}


def _wider_txt(source: Path, text: str) -> dict[str, np.ndarray]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found: dict[str, np.ndarray] = {}
    position = 0
    while position < len(lines):
        name = lines[position]
        try:
            count = int(lines[position + 1])
        except (IndexError, ValueError):
            raise ConfigError(f"{source}: expected a face count after {name!r}") from None
        rows = lines[position + 2 : position + 2 + max(count, 1)]
        position += 2 + max(count, 1)
        boxes = []
        for row in rows[:count]:
            values = row.split()
            if len(values) < 4:
                raise ConfigError(f"{source}: bad face line {row!r} for {name!r}")
            x, y, w, h = (float(v) for v in values[:4])
            invalid = len(values) > 7 and values[7] == "1"
            if not invalid and w > 0 and h > 0:
                boxes.append([x, y, x + w, y + h])
        found[name] = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return found


def _wider_mat(source: Path) -> dict[str, np.ndarray]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise BackendError(
            f"reading WIDER FACE .mat files ({source.name}) needs SciPy: "
            "pip install 'facekit[eval]'"
        ) from None
    try:
        data = loadmat(str(source))
        events, files, boxes = data["event_list"], data["file_list"], data["face_bbx_list"]
    except (OSError, ValueError, KeyError, NotImplementedError) as exc:
        raise ConfigError(f"{source} is not a WIDER FACE ground-truth .mat file: {exc}") from None
    found: dict[str, np.ndarray] = {}
    for event, event_files, event_boxes in zip(events[:, 0], files[:, 0], boxes[:, 0], strict=True):
        event_name = str(event[0])
        for file, xywh in zip(event_files[:, 0], event_boxes[:, 0], strict=True):
            values = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
            values = values[(values[:, 2] > 0) & (values[:, 3] > 0)]
            corners = np.concatenate([values[:, :2], values[:, :2] + values[:, 2:]], axis=1)
            found[f"{event_name}/{file[0]}.jpg"] = corners
    return found


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of two box sets."""
    ix = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    iy = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou: np.ndarray = inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)
    return iou


def _match(truth: np.ndarray, boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """True positives of one image's detections, greedy in score order: a detection
    matches the unmatched truth box it overlaps most, if by ``iou`` or more."""
    hits = np.zeros(boxes.shape[0], dtype=bool)
    if truth.shape[0] == 0 or boxes.shape[0] == 0:
        return hits
    overlaps = _iou_matrix(boxes, truth)
    taken = np.zeros(truth.shape[0], dtype=bool)
    for detection in np.argsort(-scores, kind="stable"):  # per detection: greedy by nature
        candidates = np.where(taken, -1.0, overlaps[detection])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou:
            taken[best] = True
            hits[detection] = True
    return hits


def average_precision(
    scores: np.ndarray, hits: np.ndarray, positives: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """Area under the interpolated precision-recall curve (all points, as PASCAL VOC
    2010+ and WIDER FACE compute it).

    Args:
        scores: ``(K,)`` detection scores over all images.
        hits: ``(K,)`` whether each detection is a true positive.
        positives: number of ground-truth boxes.

    Returns:
        ``(ap, precision, recall)`` with the curve in descending score order.
    """
    if positives <= 0:
        raise ConfigError("no ground-truth boxes")
    order = np.argsort(-np.asarray(scores), kind="stable")
    true_positive = np.cumsum(np.asarray(hits)[order])
    false_positive = np.cumsum(~np.asarray(hits)[order])
    recall = true_positive / positives
    precision = true_positive / np.maximum(true_positive + false_positive, 1)
    r = np.concatenate([[0.0], recall, [recall[-1] if recall.size else 0.0]])
    p = np.concatenate([[1.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # the envelope: best precision at >= recall
    steps = np.flatnonzero(r[1:] != r[:-1])
    ap = float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))
    return ap, precision, recall


@dataclass(frozen=True, slots=True, eq=False)
class DetectionReport:
    """Results of `evaluate_detection`.

    Attributes:
        images: images evaluated.
        faces: ground-truth boxes.
        detections: detections over all images.
        ap: average precision at the IoU threshold.
        iou: the IoU threshold (0.5).
        recall: overall recall at the detector's own score threshold.
        per_image_recall: image name → recall (``None`` for an image without faces).
        precision_curve: ``(K,)`` precision in descending score order.
        recall_curve: ``(K,)`` recall in the same order.
        failed: images that could not be read, with the reason.
    """

    images: int
    faces: int
    detections: int
    ap: float
    iou: float
    recall: float
    per_image_recall: dict[str, float | None]
    precision_curve: np.ndarray
    recall_curve: np.ndarray
    failed: tuple[tuple[str, str], ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "images": self.images,
            "faces": self.faces,
            "detections": self.detections,
            "ap": self.ap,
            "iou": self.iou,
            "recall": self.recall,
            "per_image_recall": self.per_image_recall,
            "failed": [{"image": n, "reason": r} for n, r in self.failed],
        }

    def markdown(self) -> str:
        """A short human-readable report."""
        lines = [
            "# Detection",
            "",
            f"- {self.images} images, {self.faces} faces, {self.detections} detections",
            f"- AP at IoU {self.iou:g}: {self.ap:.4f}",
            f"- recall: {self.recall:.4f}",
        ]
        lines += [f"- failed: {n}: {r}" for n, r in self.failed]
        return "\n".join(lines) + "\n"


def evaluate_detection(
    detector: Detector,
    truth: dict[str, np.ndarray],
    root: str | os.PathLike[str],
    *,
    iou: float = 0.5,
    batch_size: int = 8,
) -> DetectionReport:
    """Detect faces in every image of ``truth`` (names relative to ``root``) and score.

    Raises:
        ConfigError: no image could be read, or there are no ground-truth boxes.
    """
    base = Path(root)
    names = sorted(truth)
    all_scores, all_hits = [], []
    per_image: dict[str, float | None] = {}
    failed: list[tuple[str, str]] = []
    faces = detections = found_faces = 0
    for start in range(0, len(names), batch_size):
        loaded: list[tuple[str, np.ndarray]] = []
        for name in names[start : start + batch_size]:
            try:
                loaded.append((name, load_image(base / name)))
            except FacekitError as exc:
                failed.append((name, str(exc)))
        results = detector.detect_batch([array for _, array in loaded])
        chunk = [name for name, _ in loaded]
        for name, found in zip(chunk, results, strict=True):
            boxes = np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4)
            scores = np.array([d.score for d in found], dtype=np.float64)
            hits = _match(truth[name], boxes, scores, iou)
            faces += truth[name].shape[0]
            detections += boxes.shape[0]
            found_faces += int(hits.sum())
            per_image[name] = float(hits.sum() / truth[name].shape[0]) if truth[name].size else None
            all_scores.append(scores)
            all_hits.append(hits)
    if not per_image:
        raise ConfigError("no image could be evaluated")
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    hits = np.concatenate(all_hits) if all_hits else np.zeros(0, dtype=bool)
    ap, precision, recall = average_precision(scores, hits, faces)
    return DetectionReport(
        images=len(per_image),
        faces=faces,
        detections=detections,
        ap=ap,
        iou=iou,
        recall=found_faces / faces,
        per_image_recall=per_image,
        precision_curve=precision,
        recall_curve=recall,
        failed=tuple(failed),
    )
