"""YuNet face detector (OpenCV Zoo, MIT licence) on ONNX Runtime.

YuNet is anchor-free with one prediction per location at strides 8, 16 and 32. Its graph
has named outputs ``cls_<s>``, ``obj_<s>`` (``1×N×1``), ``bbox_<s>`` (``1×N×4``) and
``kps_<s>`` (``1×N×10``) per stride ``s``, ``N = (H/s)·(W/s)`` locations in row-major
order. Decoding follows OpenCV's ``cv::FaceDetectorYN``: score ``sqrt(cls·obj)`` (both
clipped to [0, 1]), box centre ``(cell + bbox[0:2])·s``, size ``exp(bbox[2:4])·s``,
landmarks ``(cell + kps)·s``. The input is BGR pixel values 0..255, unnormalised.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._preprocess import nchw
from ..errors import ModelError
from ..io import DEFAULT_MAX_PIXELS, ImageInput, load_image
from ..types import Detection
from ._common import Letterbox, LetterboxDetector, letterbox

__all__ = ["YuNet"]

_KINDS = ("cls", "obj", "bbox", "kps")
_WIDTHS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
"""Values per location of each output kind."""
_OUTPUT = re.compile(r"^(cls|obj|bbox|kps)_(\d+)$")
_MULTIPLE = 32
"""The largest stride: input sides must be multiples of it."""
_NUM_LANDMARKS = 5


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where YuNet's outputs are, as read from the graph's output names."""

    input_name: str
    strides: tuple[int, ...]
    positions: dict[tuple[str, int], int]  # (kind, stride) -> output position


def _read_layout(session: Any, path: os.PathLike[str] | str) -> _Layout:
    inputs = session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
        raise ModelError(f"{path} is not a YuNet detector: expected one 1×3×H×W input")
    positions: dict[tuple[str, int], int] = {}
    for position, output in enumerate(session.get_outputs()):
        match = _OUTPUT.match(output.name)
        if match is None or output.shape[-1] != _WIDTHS[match.group(1)]:
            raise ModelError(
                f"{path} is not a YuNet detector: unexpected output {output.name!r} of "
                f"shape {output.shape} (expected cls_/obj_/bbox_/kps_<stride>)"
            )
        positions[(match.group(1), int(match.group(2)))] = position
    strides = tuple(sorted({stride for _, stride in positions}))
    if not strides or len(positions) != len(_KINDS) * len(strides):
        raise ModelError(
            f"{path} is not a YuNet detector: outputs {sorted(positions)} do not give "
            "cls, obj, bbox and kps for every stride"
        )
    return _Layout(inputs[0].name, strides, positions)


class YuNet(LetterboxDetector):
    """YuNet detector (OpenCV Zoo, MIT licence) running on ONNX Runtime.

    Gives the detections of ``cv2.FaceDetectorYN`` on the same network input, with
    facekit's letterboxing and `Detection` results.

    Args:
        model: zoo name (default ``yunet_2026may``) or path to an ONNX file.
        model_dir: directory searched for zoo files before ``$FACEKIT_HOME`` and the cache.
        input_size: network input ``(width, height)``, multiples of 32; images are
            letterboxed to it. Default: the zoo entry's (640×640).
        score_threshold: minimum face score ``sqrt(cls·obj)`` in ``[0, 1]``
            (``cv2.FaceDetectorYN`` defaults to 0.9; OpenCV Zoo's demo uses 0.9).
        nms_threshold: IoU above which overlapping boxes are suppressed (OpenCV: 0.3).
        max_faces: keep at most this many faces per image (highest score first).
        padding: black margin added around each image, as a fraction of its longer side,
            for faces that fill the whole frame.
        max_pixels: largest image accepted, in pixels (see `load_image`).
        device: "cpu", "cuda" or "cuda:N".
        download: allow downloading a missing zoo file (see `resolve`).
        progress: show a progress bar while downloading.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
        trim: trim each letterboxed input to the resized image rounded up to 32 pixels (a
            4:3 photo at 640 runs at 640×480, as OpenCV pads it); ``False`` runs every
            image at the whole ``input_size``.

    The graph takes one image a run (`batch_size` is 1); `detect_batch` runs the images
    one by one.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_faces: int | None = None,
        padding: float = 0.0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
        threads: int | None = None,
        trim: bool = True,
    ) -> None:
        super().__init__(
            model,
            backend="yunet",
            model_dir=model_dir,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_faces=max_faces,
            padding=padding,
            batch_size=1,  # the graph takes one image a run
            max_pixels=max_pixels,
            device=device,
            download=download,
            progress=progress,
            threads=threads,
            trim=trim,
        )
        self._layout = _read_layout(self._session, self._model.path)
        self.input_size = self._choose_size(input_size)

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image (sizes may differ), one list per image in input order."""
        arrays = [load_image(image, max_pixels=self.max_pixels) for image in images]
        multiple = _MULTIPLE if self.trim else None
        results = []
        for array in arrays:
            canvas, box = letterbox(array, self.input_size, self.padding, multiple)
            outputs = self._session.run(
                None, {self._layout.input_name: nchw(canvas[None], 0.0, 1.0, bgr=True)}
            )
            size = (canvas.shape[1], canvas.shape[0])
            results.append(self._decode(outputs, size, box, (array.shape[1], array.shape[0])))
        return results

    def _decode(
        self,
        outputs: list[np.ndarray],
        input_size: tuple[int, int],
        box: Letterbox,
        image_size: tuple[int, int],
    ) -> list[Detection]:
        """Detections of one image.

        Args:
            outputs: the session's outputs, ``(1, N, C)`` each.
            input_size: ``(width, height)`` of the network input that gave them.
            box: how the image was letterboxed.
            image_size: ``(width, height)`` of the image.
        """
        width, height = input_size
        scores, boxes, points = [], [], []
        for stride in self._layout.strides:

            def output(kind: str, stride: int = stride) -> np.ndarray:
                values = outputs[self._layout.positions[(kind, stride)]]
                return values.reshape(-1, _WIDTHS[kind])

            cols = width // stride
            cls, obj = np.clip(output("cls")[:, 0], 0, 1), np.clip(output("obj")[:, 0], 0, 1)
            if cls.shape[0] != cols * (height // stride):
                raise ModelError(
                    f"{self.name}: stride-{stride} outputs have {cls.shape[0]} rows, not the "
                    f"{cols * (height // stride)} locations of a {width}×{height} input"
                )
            level_scores = np.sqrt(cls * obj)
            keep = np.flatnonzero(level_scores >= self.score_threshold)
            if keep.size == 0:
                continue
            cell = np.stack([keep % cols, keep // cols], axis=1).astype(np.float32)
            bbox = output("bbox")[keep]
            centre = (cell + bbox[:, :2]) * stride
            half = np.exp(bbox[:, 2:]) * stride / 2
            boxes.append(np.concatenate([centre - half, centre + half], axis=1))
            kps = output("kps")[keep].reshape(-1, _NUM_LANDMARKS, 2)
            points.append((cell[:, None, :] + kps) * stride)
            scores.append(level_scores[keep])
        if not scores:
            return []
        return self._detections(
            np.concatenate(boxes), np.concatenate(scores), np.concatenate(points), box, image_size
        )
