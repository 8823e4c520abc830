"""RetinaFace (Deng et al. 2020), InsightFace's MXNet release, on MXNet or on ONNX Runtime.

The network has three heads per stride (32, 16, 8): face probabilities ``(1, 2A, h, w)``
(background for the first A channels, face for the next A), box deltas ``(1, 4A, h, w)``
and landmark deltas ``(1, 10A, h, w)``, with A anchors per location. Anchors follow
InsightFace's RPN recipe (a base box of 16 px scaled per stride, ratio 1); boxes decode as
centre/size deltas of the anchor (``+1`` pixel-size convention) and landmarks as offsets
from the anchor centre in anchor sizes.

An MXNet checkpoint (``prefix-symbol.json`` + ``prefix-EPOCH.params``) runs on MXNet (the
``[mxnet]`` environment); the same network converted to ONNX
(``facekit models convert-mxnet``) runs on ONNX Runtime in the core install, decoded by the
same code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import ConfigError, ModelError
from ..io import DEFAULT_MAX_PIXELS, ImageInput, load_image
from ..types import Detection
from ..zoo import default_model
from ._common import Letterbox, check_options, letterbox, nms, to_detections

__all__ = ["ANCHOR_SETTINGS", "AnchorSetting", "RetinaFace", "anchors_for"]


@dataclass(frozen=True, slots=True)
class AnchorSetting:
    """The anchors of one stride: squares of ``base_size · scale`` pixels (ratio 1)."""

    stride: int
    scales: tuple[float, ...]
    base_size: int = 16


ANCHOR_SETTINGS: tuple[AnchorSetting, ...] = (
    AnchorSetting(32, (32.0, 16.0)),
    AnchorSetting(16, (8.0, 4.0)),
    AnchorSetting(8, (2.0, 1.0)),
)
"""InsightFace's anchor configuration for its released RetinaFace models (MobileNet-0.25
and ResNet-50), in the order of the network's outputs."""


def anchors_for(setting: AnchorSetting, height: int, width: int) -> np.ndarray:
    """``(height · width · A, 4)`` anchors ``x1, y1, x2, y2`` of a ``height × width`` map, in
    the network's order (row, column, anchor)."""
    centre = (setting.base_size - 1) / 2.0
    half = (setting.base_size * np.asarray(setting.scales) - 1) / 2.0
    base = np.stack([centre - half, centre - half, centre + half, centre + half], axis=1)
    ys, xs = np.mgrid[:height, :width]
    shifts = np.stack([xs, ys, xs, ys], axis=-1).reshape(-1, 1, 4) * setting.stride
    return (shifts + base[None]).reshape(-1, 4).astype(np.float32)


class _MXNetRunner:
    """The checkpoint on an ``mx.mod.Module``, rebound when the input shape changes."""

    def __init__(self, checkpoint: Any, device: str) -> None:
        from .._mxnet import import_mxnet, load_checkpoint, mx_context

        self._mx = import_mxnet()
        symbol, self._args, self._aux = load_checkpoint(checkpoint)
        if len(symbol.list_outputs()) != 3 * len(ANCHOR_SETTINGS):
            raise ModelError(
                f"{checkpoint.prefix} is not a RetinaFace detector: its symbol has "
                f"{len(symbol.list_outputs())} outputs, not 9 (cls, bbox, landmark per stride)"
            )
        self._module = self._mx.mod.Module(
            symbol=symbol, context=mx_context(device), label_names=None
        )
        self._shape: tuple[int, ...] | None = None
        self.fixed_size: tuple[int, int] | None = None

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        mx = self._mx
        shape = blob.shape
        if self._shape is None:
            self._module.bind(data_shapes=[("data", shape)], for_training=False)
            self._module.set_params(self._args, self._aux)
        elif shape != self._shape:
            self._module.reshape(data_shapes=[("data", shape)])
        self._shape = shape
        self._module.forward(mx.io.DataBatch([mx.nd.array(blob)]), is_train=False)
        return [out.asnumpy() for out in self._module.get_outputs()]


class _OnnxRunner:
    """A converted RetinaFace on ONNX Runtime (outputs in the MXNet symbol's order)."""

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        from .._onnx import open_session

        self._session = open_session(path, device, threads)
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 3 * len(ANCHOR_SETTINGS):
            raise ModelError(
                f"{path} is not a converted RetinaFace: expected one input and 9 outputs, "
                f"got {len(inputs)} and {len(outputs)}"
            )
        self._input = inputs[0].name
        _, _, height, width = inputs[0].shape
        fixed = isinstance(height, int) and isinstance(width, int)
        self.fixed_size: tuple[int, int] | None = (width, height) if fixed else None

    def __call__(self, blob: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(out) for out in self._session.run(None, {self._input: blob})]


class RetinaFace:
    """RetinaFace detector (InsightFace's MXNet models), on MXNet or, converted, on ONNX.

    Args:
        model: zoo name (default ``retinaface_mnet025_mxnet``), a checkpoint prefix
            (``.../mnet.25`` for ``mnet.25-symbol.json`` + ``mnet.25-0000.params``), or the
            path of an ONNX file converted from such a checkpoint.
        epoch: params epoch of a prefix (default: the only or latest file).
        model_dir: directory searched for zoo files first.
        target_size: images are scaled so their shorter side is this many pixels ...
        max_size: ... unless that makes the longer side exceed this (then it is this).
            InsightFace's own test uses 1024 / 1980; the defaults suit photos with faces
            over about 20 px.
        input_size: a fixed network input ``(width, height)`` to letterbox images into
            instead of the scale rule (an ONNX file with a fixed input forces its own).
        score_threshold: minimum face probability (InsightFace's demo uses 0.8).
        nms_threshold: IoU above which overlapping boxes are suppressed.
        flip: also detect on the mirrored image and merge before NMS (test-time
            augmentation: slower, steadier boxes).
        max_faces: keep at most this many faces per image (highest score first).
        max_pixels: largest image accepted, in pixels (see `load_image`).
        device: "cpu" or "gpu:N" (MXNet), "cpu" or "cuda" (ONNX); an unusable GPU is a
            `DeviceError`.
        download: allow downloading missing zoo files.
        progress: show a progress bar while downloading.
        threads: onnxruntime intra-op threads of a converted (ONNX) model; ``None`` lets
            onnxruntime choose. Not used by MXNet checkpoints.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        epoch: int | None = None,
        model_dir: str | os.PathLike[str] | None = None,
        target_size: int = 640,
        max_size: int = 1024,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.8,
        nms_threshold: float = 0.4,
        flip: bool = False,
        max_faces: int | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
        threads: int | None = None,
    ) -> None:
        check_options(
            score_threshold=score_threshold, nms_threshold=nms_threshold, max_faces=max_faces
        )
        if target_size < 32 or max_size < target_size:
            raise ConfigError(
                f"need 32 <= target_size <= max_size, got {target_size} and {max_size}"
            )
        chosen = model if model is not None else default_model("retinaface")
        self._runner: _MXNetRunner | _OnnxRunner
        if str(chosen).endswith(".onnx"):
            from ..zoo import resolve

            resolved = resolve(chosen, task="detection", model_dir=model_dir, download=download)
            self._name, self._sha256 = resolved.name, resolved.sha256[0]
            self._runner = _OnnxRunner(resolved.path, device, threads)
        else:
            from .._mxnet import resolve_checkpoint

            checkpoint = resolve_checkpoint(
                chosen,
                epoch=epoch,
                task="detection",
                model_dir=model_dir,
                download=download,
                progress=progress,
            )
            spec = checkpoint.model.spec
            self._name = spec.name if spec is not None else checkpoint.prefix.name
            self._sha256 = checkpoint.model.sha256[1]
            self._runner = _MXNetRunner(checkpoint, device)
        fixed = self._runner.fixed_size
        if fixed is not None and input_size is not None and tuple(input_size) != fixed:
            raise ConfigError(f"{self._name} has a fixed input of {fixed}, not {input_size}")
        self.input_size = fixed if fixed is not None else input_size
        self.target_size = target_size
        self.max_size = max_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.flip = flip
        self.max_faces = max_faces
        self.max_pixels = max_pixels
        self._anchors: dict[tuple[int, int, int], np.ndarray] = {}

    @property
    def concurrent(self) -> bool:
        """Whether several threads may call `detect_batch` at once: with an ONNX file
        (``session.run`` is thread-safe), not with an MXNet checkpoint (its module is
        re-bound to each input shape)."""
        return isinstance(self._runner, _OnnxRunner)

    @property
    def name(self) -> str:
        """Zoo name, checkpoint prefix name, or ONNX file name."""
        return self._name

    @property
    def sha256(self) -> str:
        """sha256 of the weights (params or ONNX file)."""
        return self._sha256

    def __repr__(self) -> str:
        size = (
            f"input_size={self.input_size}"
            if self.input_size
            else (f"target_size={self.target_size}, max_size={self.max_size}")
        )
        return f"RetinaFace({self._name!r}, {size}, score_threshold={self.score_threshold})"

    def detect(self, image: ImageInput) -> list[Detection]:
        """Faces in one image, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image, one list per image (the network takes one image a run)."""
        return [self._detect(load_image(image, max_pixels=self.max_pixels)) for image in images]

    def _fit(self, image: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        if self.input_size is not None:
            return letterbox(image, self.input_size)
        height, width = image.shape[:2]
        scale = self.target_size / min(height, width)
        if round(scale * max(height, width)) > self.max_size:
            scale = self.max_size / max(height, width)
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        return resized, Letterbox(resized.shape[1] / width, resized.shape[0] / height)

    def _detect(self, image: np.ndarray) -> list[Detection]:
        fitted, box = self._fit(image)
        found = [self._decode(self._runner(_blob(fitted)))]
        if self.flip:
            boxes, scores, points = self._decode(self._runner(_blob(fitted[:, ::-1])))
            width = fitted.shape[1]
            boxes = np.stack(
                [width - 1 - boxes[:, 2], boxes[:, 1], width - 1 - boxes[:, 0], boxes[:, 3]], 1
            )
            points = points[:, [1, 0, 2, 4, 3]]  # a mirrored left eye is the right eye
            points[..., 0] = width - 1 - points[..., 0]
            found.append((boxes, scores, points))
        boxes = np.concatenate([f[0] for f in found])
        scores = np.concatenate([f[1] for f in found])
        points = np.concatenate([f[2] for f in found])
        if scores.size == 0:
            return []
        boxes = box.to_image(boxes)
        points = box.to_image(points.reshape(-1, 10)).reshape(-1, 5, 2)
        kept = nms(boxes, scores, self.nms_threshold)
        return to_detections(
            boxes[kept],
            scores[kept],
            points[kept],
            (image.shape[1], image.shape[0]),
            self.max_faces,
        )

    def _decode(self, outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Network outputs → boxes ``(K, 4)``, scores ``(K,)``, landmarks ``(K, 5, 2)`` in
        pixels of the network input, above the score threshold (not yet suppressed)."""
        boxes, scores, points = [], [], []
        for level, setting in enumerate(ANCHOR_SETTINGS):
            probs, deltas, marks = outputs[3 * level : 3 * level + 3]
            count = len(setting.scales)
            height, width = probs.shape[2], probs.shape[3]
            if probs.shape[1] != 2 * count or deltas.shape[1] != 4 * count:
                raise ModelError(
                    f"{self._name}: stride-{setting.stride} heads have {probs.shape[1]} score "
                    f"and {deltas.shape[1]} box channels, expected {2 * count} and {4 * count}"
                )
            level_scores = probs[0, count:].transpose(1, 2, 0).reshape(-1)
            keep = np.flatnonzero(level_scores >= self.score_threshold)
            if keep.size == 0:
                continue
            key = (setting.stride, height, width)
            if key not in self._anchors:  # per instance, per input shape
                self._anchors[key] = anchors_for(setting, height, width)
            anchors = self._anchors[key][keep]
            sizes = anchors[:, 2:] - anchors[:, :2] + 1.0
            centres = anchors[:, :2] + 0.5 * (sizes - 1.0)
            delta = deltas[0].transpose(1, 2, 0).reshape(-1, 4)[keep]
            centre = delta[:, :2] * sizes + centres
            size = np.exp(delta[:, 2:]) * sizes
            boxes.append(np.concatenate([centre - 0.5 * (size - 1), centre + 0.5 * (size - 1)], 1))
            offsets = marks[0].transpose(1, 2, 0).reshape(-1, 5, 2)[keep]
            points.append(offsets * sizes[:, None, :] + centres[:, None, :])
            scores.append(level_scores[keep])
        if not scores:
            return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2))
        return np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)


def _blob(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB → ``(1, 3, H, W)`` float32 0..255: InsightFace's RetinaFace
    models take unnormalised RGB (their graphs start with a plain convolution)."""
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)
