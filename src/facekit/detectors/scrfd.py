"""SCRFD face detector on ONNX Runtime.

Works with any SCRFD export (500M, 2.5G, 10G, 34G; with or without keypoints; fixed or
dynamic input; with or without a batch dimension). The output layout is read from the graph:
outputs are grouped by their last dimension (1 = score, 4 = box distances, 10 = keypoint
offsets), strides follow from the number of score maps (3 → 8/16/32, 5 → 8…128) and the
anchors per location from the row counts of the first run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._preprocess import nchw
from ..errors import ConfigError, ModelError
from ..io import DEFAULT_MAX_PIXELS, ImageInput, load_image
from ..types import Detection
from ._common import Letterbox, LetterboxDetector, letterbox, same_shape_batches

__all__ = ["SCRFD"]

_STRIDES = {3: (8, 16, 32), 5: (8, 16, 32, 64, 128)}
_NUM_LANDMARKS = 5


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where SCRFD's outputs are, as read from the graph."""

    input_name: str
    fixed_size: tuple[int, int] | None  # (width, height) when the graph fixes it
    batch_dynamic: bool
    scores: tuple[int, ...]  # output positions, one per stride
    boxes: tuple[int, ...]
    keypoints: tuple[int, ...]  # empty for exports without keypoints
    strides: tuple[int, ...]


def _read_layout(session: Any, path: os.PathLike[str] | str) -> _Layout:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        raise ModelError(f"{path} is not an SCRFD detector: expected one N×3×H×W input")
    batch, _, height, width = inputs[0].shape
    fixed = (width, height) if isinstance(width, int) and isinstance(height, int) else None
    groups: dict[int, list[int]] = {1: [], 4: [], 10: []}
    for position, output in enumerate(session.get_outputs()):
        last = output.shape[-1] if output.shape else None
        if last not in groups or len(output.shape) not in (2, 3):
            raise ModelError(
                f"{path} is not an SCRFD detector: output {output.name!r} has shape "
                f"{output.shape}, expected (N, 1), (N, 4) or (N, 10) per stride"
            )
        groups[last].append(position)
    levels = len(groups[1])
    if levels not in _STRIDES or len(groups[4]) != levels or len(groups[10]) not in (0, levels):
        raise ModelError(
            f"{path} is not an SCRFD detector: found {len(groups[1])} score, "
            f"{len(groups[4])} box and {len(groups[10])} keypoint outputs"
        )
    return _Layout(
        input_name=inputs[0].name,
        fixed_size=fixed,
        batch_dynamic=not isinstance(batch, int),
        scores=tuple(groups[1]),
        boxes=tuple(groups[4]),
        keypoints=tuple(groups[10]),
        strides=_STRIDES[levels],
    )


def _check_input(fixed_size: tuple[int, int] | None) -> np.ndarray:
    """Two fixed pseudo-random ``(2, 3, H, W)`` network inputs in [-1, 1] (``H, W`` the
    graph's fixed size, else 128×160), for checking a re-batched copy of the graph against
    the original (`facekit._rebatch`)."""
    width, height = fixed_size if fixed_size is not None else (160, 128)
    return np.random.default_rng(0).uniform(-1.0, 1.0, (2, 3, height, width)).astype(np.float32)


class SCRFD(LetterboxDetector):
    """SCRFD detector (InsightFace) running on ONNX Runtime.

    Args:
        model: zoo name (default ``scrfd_10g``, buffalo_l's detector) or path to an ONNX file.
        model_dir: directory searched for zoo files before ``$FACEKIT_HOME`` and the cache.
        input_size: network input ``(width, height)``, multiples of 32; images are
            letterboxed to it. Defaults to the graph's fixed size, else the spec's (640×640).
        score_threshold: minimum face score in ``[0, 1]``.
        nms_threshold: IoU above which overlapping boxes are suppressed.
        max_faces: keep at most this many faces per image (highest score first).
        padding: black margin added around each image, as a fraction of its longer side.
            SCRFD at 640 misses faces that fill the whole frame (tight crops such as ORL's);
            a padding of 0.5 finds them. Default 0: photos need none, and `FaceRecognizer`
            retries images without a face with `facekit.detectors.tight.detect_filling`.
        batch_size: images per ``session.run`` when the graph has a dynamic batch dimension
            (or ``rebatch`` gave it one).
        max_pixels: largest image accepted, in pixels (see `load_image`).
        device: "cpu", "cuda" or "cuda:N".
        download: allow downloading a missing zoo file (see `resolve`).
        progress: show a progress bar while downloading.
        rebatch: for a graph whose batch is fixed at 1 (InsightFace's pack exports), run a
            verified copy with a symbolic batch dimension (`facekit._rebatch`; needs the
            ``onnx`` package, else images run one by one, as they do with ``rebatch=False``).
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
        trim: when the graph takes any input size, trim each letterboxed input to the
            resized image rounded up to the largest stride (a 4:3 photo at 640 runs at
            640×480, 25 % less work than 640×640; same scale, so the same faces, up to
            the network's own zero padding at the bottom and right edges). ``False``
            runs every image at the whole ``input_size``, as InsightFace does.

    Keypoint-less exports give landmarks of NaN; recognisers need keypoints, so prefer
    ``*_kps``/``bnkps`` exports.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_faces: int | None = None,
        padding: float = 0.0,
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
        rebatch: bool = True,
        threads: int | None = None,
        trim: bool = True,
    ) -> None:
        super().__init__(
            model,
            backend="scrfd",
            model_dir=model_dir,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_faces=max_faces,
            padding=padding,
            batch_size=batch_size,
            max_pixels=max_pixels,
            device=device,
            download=download,
            progress=progress,
            threads=threads,
            trim=trim,
        )
        self._layout = _read_layout(self._session, self._model.path)
        if (
            rebatch
            and not self._layout.batch_dynamic
            and self._use_dynamic_batch(_check_input(self._layout.fixed_size))
        ):
            self._layout = _read_layout(self._session, self._model.path)
        self.input_size = self._choose_size(input_size)
        if not self._layout.batch_dynamic:
            self.batch_size = 1  # the graph's batch is fixed at 1: images run one by one
        if self._layout.fixed_size is not None:
            self.trim = False  # the graph takes one input size: nothing to trim

    @property
    def has_landmarks(self) -> bool:
        """Whether the export predicts the 5 keypoints."""
        return bool(self._layout.keypoints)

    def _choose_size(self, requested: tuple[int, int] | None) -> tuple[int, int]:
        fixed = self._layout.fixed_size
        if fixed is not None:
            if requested is not None and tuple(requested) != fixed:
                raise ConfigError(f"{self.name} has a fixed input of {fixed}, not {requested}")
            return fixed
        return super()._choose_size(requested)

    def _anchor_centres(self, size: tuple[int, int]) -> list[np.ndarray]:
        """Per stride: ``(H/s * W/s, 2)`` anchor centres ``x, y`` in pixels of an input of
        ``size = (width, height)``."""
        width, height = size
        centres = []
        for stride in self._layout.strides:
            ys, xs = np.mgrid[: height // stride, : width // stride]
            centres.append(np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride)
        return centres

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image (sizes may differ), one list per image in input order."""
        arrays = [load_image(image, max_pixels=self.max_pixels) for image in images]
        multiple = max(self._layout.strides) if self.trim else None
        fitted = [letterbox(array, self.input_size, self.padding, multiple) for array in arrays]
        results: list[list[Detection]] = [[] for _ in arrays]
        for chunk in same_shape_batches([canvas for canvas, _ in fitted], self.batch_size):
            canvases = np.stack([fitted[i][0] for i in chunk])
            centres = self._anchor_centres((canvases.shape[2], canvases.shape[1]))
            outputs = self._session.run(
                None, {self._layout.input_name: nchw(canvases, 127.5, 128.0)}
            )
            for position, i in enumerate(chunk):
                per_image = [out[position] if out.ndim == 3 else out for out in outputs]
                image_size = (arrays[i].shape[1], arrays[i].shape[0])
                results[i] = self._decode(per_image, centres, fitted[i][1], image_size)
        return results

    def _decode(
        self,
        outputs: list[np.ndarray],
        centres_per_level: list[np.ndarray],
        box: Letterbox,
        image_size: tuple[int, int],
    ) -> list[Detection]:
        layout = self._layout
        scores, boxes, points = [], [], []
        for level, stride in enumerate(layout.strides):
            level_scores = outputs[layout.scores[level]].reshape(-1)
            centres = centres_per_level[level]
            anchors, remainder = divmod(level_scores.shape[0], centres.shape[0])
            if remainder or anchors < 1:
                raise ModelError(
                    f"{self.name}: stride-{stride} scores have {level_scores.shape[0]} rows, "
                    f"not a multiple of the {centres.shape[0]} locations of its input"
                )
            keep = np.flatnonzero(level_scores >= self.score_threshold)
            if keep.size == 0:
                continue
            centre = centres[keep // anchors]
            distance = outputs[layout.boxes[level]].reshape(-1, 4)[keep] * stride
            boxes.append(np.concatenate([centre - distance[:, :2], centre + distance[:, 2:]], 1))
            scores.append(level_scores[keep])
            if layout.keypoints:
                offsets = outputs[layout.keypoints[level]].reshape(-1, _NUM_LANDMARKS, 2)[keep]
                points.append(centre[:, None, :] + offsets * stride)
            else:
                points.append(np.full((keep.size, _NUM_LANDMARKS, 2), np.nan, np.float32))
        if not scores:
            return []
        return self._detections(
            np.concatenate(boxes), np.concatenate(scores), np.concatenate(points), box, image_size
        )
