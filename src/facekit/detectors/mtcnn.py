"""MTCNN face detector (Zhang et al. 2016) on torch: P-Net → R-Net → O-Net.

The cascade follows the reference algorithm: an image pyramid from ``min_face_size``
with scale factor 0.709; P-Net windows above 0.6 (NMS 0.5 per scale, 0.7 over all
scales), calibrated by their offsets and squared; R-Net on 24×24 crops (above 0.7, NMS
0.7, calibrated, squared); O-Net on 48×48 crops (above 0.7), whose landmarks are placed
in the squared box before it is calibrated, and a last NMS 0.7 on the overlap over the
smaller box. Crops are cut from the whole square box, zero outside the image, and
resampled by area averaging.

Batched: images of the same size share each P-Net run; the R-Net and O-Net crops of all
images run together, in chunks. No Python loop runs per candidate box.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .._torch import checkpoint_state, import_torch, load_weights, torch_device
from ..errors import ConfigError
from ..io import DEFAULT_MAX_PIXELS, ImageInput, load_image
from ..types import Detection
from ..zoo import ResolvedModel, default_model, resolve, resolve_dir
from ._common import check_options, nms_per_image, to_detections

__all__ = ["MTCNN"]

_PNET_CELL = 12  # P-Net window, pixels of the scaled image
_PNET_STRIDE = 2


class MTCNN:
    """MTCNN detector on torch, with the P/R/O-Net weights of ``pnet.pt``, ``rnet.pt`` and
    ``onet.pt``.

    Args:
        model: zoo name (default ``mtcnn``), a directory holding the three files, or the
            path of one of them (the others are looked for beside it).
        model_dir: directory searched for zoo files first.
        min_face_size: smallest face searched for, in pixels (default 20): the pyramid
            starts at scale ``12 / min_face_size``.
        scale_factor: ratio between pyramid levels (default 0.709, i.e. 1/√2).
        thresholds: face-probability thresholds of P-Net, R-Net and O-Net.
        nms_thresholds: P-Net per scale, P-Net over all scales, R-Net, O-Net (the last one
            on intersection over the smaller box).
        max_faces: keep at most this many faces per image (highest score first).
        batch_size: R-Net and O-Net crops per forward pass.
        max_pixels: largest image accepted, in pixels (see `load_image`).
        device: "cpu", "cuda" or "cuda:N"; CUDA without a usable GPU is a `DeviceError`.
        download: allow downloading missing zoo files (from the facenet-pytorch wheel).
        progress: show a progress bar while downloading.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        min_face_size: float = 20.0,
        scale_factor: float = 0.709,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7),
        max_faces: int | None = None,
        batch_size: int = 512,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
    ) -> None:
        if min_face_size < _PNET_CELL:
            raise ConfigError(f"min_face_size must be at least 12 pixels, got {min_face_size}")
        if not 0.0 < scale_factor < 1.0:
            raise ConfigError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ConfigError(f"thresholds must be three values in [0, 1], got {thresholds}")
        if len(nms_thresholds) != 4 or not all(0.0 < t <= 1.0 for t in nms_thresholds):
            raise ConfigError(f"nms_thresholds must be four values in (0, 1], got {nms_thresholds}")
        check_options(max_faces=max_faces)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self._torch = import_torch()
        self._device = torch_device(device)
        self._model = _resolve(model, model_dir, download, progress)
        from ._mtcnn_nets import ONet, PNet, RNet

        nets = []
        for path, net in zip(self._model.paths, (PNet(), RNet(), ONet()), strict=True):
            load_weights(net, checkpoint_state(path), path)
            nets.append(net.to(self._device).eval())
        self._pnet, self._rnet, self._onet = nets
        self.min_face_size = float(min_face_size)
        self.scale_factor = float(scale_factor)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.nms_thresholds = tuple(float(t) for t in nms_thresholds)
        self.max_faces = max_faces
        self.batch_size = batch_size
        self.max_pixels = max_pixels

    @property
    def name(self) -> str:
        """Zoo name of the weights (``mtcnn``), or the file name of unlisted ones."""
        return self._model.name

    def __repr__(self) -> str:
        return (
            f"MTCNN({self.name!r}, min_face_size={self.min_face_size:g}, "
            f"thresholds={self.thresholds})"
        )

    def detect(self, image: ImageInput) -> list[Detection]:
        """Faces in one image, highest score first (see `detect_batch`)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image (sizes may differ), one list per image in input order.

        Returns:
            Detections with boxes ``(x1, y1, x2, y2)`` and the 5 O-Net landmarks in pixels
            of each image; the score is O-Net's face probability.
        """
        arrays = [load_image(image, max_pixels=self.max_pixels) for image in images]
        if not arrays:
            return []
        with self._torch.inference_mode():
            boxes, image_ids = self._propose(arrays)
            # Both later stages cut crops from the same images: integrate each image once.
            integrals = {
                int(i): cv2.integral(arrays[i], sdepth=cv2.CV_64F) for i in np.unique(image_ids)
            }
            boxes, image_ids = self._refine(integrals, boxes, image_ids)
            boxes, image_ids, points = self._output(integrals, boxes, image_ids)
        results = []
        for index, array in enumerate(arrays):
            mine = np.flatnonzero(image_ids == index)
            mine = mine[np.argsort(-boxes[mine, 4], kind="stable")]
            results.append(
                to_detections(
                    boxes[mine, :4],
                    boxes[mine, 4],
                    points[mine],
                    (array.shape[1], array.shape[0]),
                    self.max_faces,
                )
            )
        return results

    # --- stage 1 ----------------------------------------------------------------------------

    def _scales(self, height: int, width: int) -> list[float]:
        """Pyramid scales: from ``12 / min_face_size`` while the short side is >= 12 px."""
        scale = _PNET_CELL / self.min_face_size
        short = min(height, width) * scale
        scales = []
        while short >= _PNET_CELL:
            scales.append(scale)
            scale *= self.scale_factor
            short *= self.scale_factor
        return scales

    def _propose(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over every pyramid level, images of one size batched together.

        Returns:
            ``(K, 5)`` squared, calibrated boxes with scores, and ``(K,)`` image indices.
        """
        torch = self._torch
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            by_size.setdefault(array.shape[:2], []).append(index)
        found_boxes, found_ids = [], []
        for (height, width), members in by_size.items():
            batch = _to_tensor(torch, np.stack([arrays[i] for i in members]), self._device)
            for scale in self._scales(height, width):
                size = (int(height * scale + 1), int(width * scale + 1))
                scaled = torch.nn.functional.interpolate(batch, size=size, mode="area")
                offsets, probs = self._pnet(_normalise(scaled))
                boxes, local = _pnet_windows(
                    offsets.cpu().numpy(), probs[:, 1].cpu().numpy(), scale, self.thresholds[0]
                )
                keep = nms_per_image(boxes[:, :4], boxes[:, 4], local, self.nms_thresholds[0])
                found_boxes.append(boxes[keep])
                found_ids.append(np.asarray(members)[local[keep]])
        boxes = np.concatenate(found_boxes) if found_boxes else np.zeros((0, 9))
        ids = np.concatenate(found_ids) if found_ids else np.zeros(0, dtype=np.int64)
        keep = nms_per_image(boxes[:, :4], boxes[:, 4], ids, self.nms_thresholds[1])
        boxes, ids = boxes[keep], ids[keep]
        width = boxes[:, 2] - boxes[:, 0]
        height = boxes[:, 3] - boxes[:, 1]
        calibrated = np.stack(
            [
                boxes[:, 0] + boxes[:, 5] * width,
                boxes[:, 1] + boxes[:, 6] * height,
                boxes[:, 2] + boxes[:, 7] * width,
                boxes[:, 3] + boxes[:, 8] * height,
                boxes[:, 4],
            ],
            axis=1,
        )
        return _square(calibrated), ids

    # --- stages 2 and 3 ---------------------------------------------------------------------

    def _run_crops(
        self,
        net: Any,
        integrals: dict[int, np.ndarray],
        boxes: np.ndarray,
        ids: np.ndarray,
        size: int,
    ) -> list[np.ndarray]:
        """``net`` on the ``size``×``size`` crops of ``boxes``, in chunks; outputs as numpy."""
        crops = _crop_boxes(integrals, boxes, ids, size)
        outputs: list[list[np.ndarray]] = []
        for start in range(0, crops.shape[0], self.batch_size):
            chunk = _to_tensor(self._torch, crops[start : start + self.batch_size], self._device)
            outputs.append([out.cpu().numpy() for out in net(_normalise(chunk))])
        return [np.concatenate(parts) for parts in zip(*outputs, strict=True)]

    def _refine(
        self, integrals: dict[int, np.ndarray], boxes: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if boxes.shape[0] == 0:
            return boxes, ids
        offsets, probs = self._run_crops(self._rnet, integrals, boxes, ids, 24)
        passed = probs[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
        offsets, ids = offsets[passed], ids[passed]
        keep = nms_per_image(boxes[:, :4], boxes[:, 4], ids, self.nms_thresholds[2])
        return _square(_calibrate(boxes[keep], offsets[keep])), ids[keep]

    def _output(
        self, integrals: dict[int, np.ndarray], boxes: np.ndarray, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if boxes.shape[0] == 0:
            return boxes.reshape(0, 5), ids, np.zeros((0, 5, 2), np.float32)
        offsets, marks, probs = self._run_crops(self._onet, integrals, boxes, ids, 48)
        passed = probs[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], probs[passed, 1:2]], axis=1)
        offsets, marks, ids = offsets[passed], marks[passed], ids[passed]
        # Landmarks are fractions of the squared box O-Net saw, before its calibration.
        width = boxes[:, 2:3] - boxes[:, 0:1] + 1
        height = boxes[:, 3:4] - boxes[:, 1:2] + 1
        points = np.stack(
            [width * marks[:, :5] + boxes[:, 0:1] - 1, height * marks[:, 5:] + boxes[:, 1:2] - 1],
            axis=-1,
        )
        boxes = _calibrate(boxes, offsets)
        keep = nms_per_image(boxes[:, :4], boxes[:, 4], ids, self.nms_thresholds[3], mode="min")
        return boxes[keep], ids[keep], points[keep].astype(np.float32)


def _resolve(
    model: str | os.PathLike[str] | None,
    model_dir: str | os.PathLike[str] | None,
    download: bool | None,
    progress: bool,
) -> ResolvedModel:
    if model is not None and Path(model).expanduser().is_dir():
        return resolve_dir(default_model("mtcnn"), Path(model).expanduser())
    resolved = resolve(
        model if model is not None else default_model("mtcnn"),
        task="detection",
        model_dir=model_dir,
        download=download,
        progress=progress,
    )
    if len(resolved.paths) != 3:
        raise ConfigError(
            f"MTCNN needs pnet.pt, rnet.pt and onet.pt; {resolved.path} is not one of them "
            "(pass the directory holding the three files)"
        )
    return resolved


def _to_tensor(torch: Any, images: np.ndarray, device: Any) -> Any:
    """``(N, H, W, 3)`` uint8 or float → ``(N, 3, H, W)`` float32 on ``device``."""
    return (
        torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        .permute(0, 3, 1, 2)
        .to(device)
    )


def _normalise(batch: Any) -> Any:
    """Pixels 0..255 → ``(x - 127.5) / 128``, as the Caffe weights were trained."""
    return (batch - 127.5) * 0.0078125


def _pnet_windows(
    offsets: np.ndarray, probs: np.ndarray, scale: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """P-Net outputs of one pyramid level → candidate windows in image pixels.

    Args:
        offsets: ``(B, 4, h, w)`` box regression.
        probs: ``(B, h, w)`` face probability.

    Returns:
        ``(K, 9)`` rows ``x1, y1, x2, y2, score, dx1, dy1, dx2, dy2`` and ``(K,)`` batch
        indices.
    """
    batch, ys, xs = np.nonzero(probs >= threshold)
    corner = np.stack([xs, ys], axis=1).astype(np.float64)
    top_left = np.floor((_PNET_STRIDE * corner + 1) / scale)
    bottom_right = np.floor((_PNET_STRIDE * corner + _PNET_CELL) / scale)
    regression = offsets[batch, :, ys, xs]
    rows = np.concatenate(
        [top_left, bottom_right, probs[batch, ys, xs][:, None], regression], axis=1
    )
    return rows.astype(np.float64), batch.astype(np.int64)


def _calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each edge by its regression offset, in units of the (inclusive) box size."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    out: np.ndarray = boxes.copy()
    out[:, 0] += offsets[:, 0] * width
    out[:, 1] += offsets[:, 1] * height
    out[:, 2] += offsets[:, 2] * width
    out[:, 3] += offsets[:, 3] * height
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes grown to squares of their longer side around the same centre."""
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out: np.ndarray = boxes.copy()
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _crop_boxes(
    integrals: dict[int, np.ndarray], boxes: np.ndarray, ids: np.ndarray, size: int
) -> np.ndarray:
    """Area-averaged ``size``×``size`` crops of integer boxes, zero outside the image.

    Each box covers pixels ``[x1 - 1, x2)`` × ``[y1 - 1, y2)`` of its image (the reference
    algorithm's 1-based, inclusive pixel boxes, truncated to integers); output cell ``i``
    averages input pixels ``floor(i·L/size)`` to ``ceil((i+1)·L/size)`` of a side of
    length ``L`` (adaptive average pooling), read from each image's integral image, so all
    boxes of an image are cut at once.

    Args:
        integrals: image index → ``(H + 1, W + 1, 3)`` float64 integral image
            (``cv2.integral``).

    Returns:
        ``(K, size, size, 3)`` float32 in 0..255.
    """
    crops = np.zeros((boxes.shape[0], size, size, 3), dtype=np.float32)
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    cells = np.arange(size)
    for index in np.unique(ids):  # per image, not per box
        mine = np.flatnonzero(ids == index)
        integral = integrals[int(index)]
        height, width = integral.shape[0] - 1, integral.shape[1] - 1
        x0, y0 = corners[mine, 0] - 1, corners[mine, 1] - 1
        length_x = np.maximum(corners[mine, 2] - x0, 1)
        length_y = np.maximum(corners[mine, 3] - y0, 1)
        col_start = x0[:, None] + (cells * length_x[:, None]) // size
        col_end = x0[:, None] + -((-(cells + 1) * length_x[:, None]) // size)
        row_start = y0[:, None] + (cells * length_y[:, None]) // size
        row_end = y0[:, None] + -((-(cells + 1) * length_y[:, None]) // size)
        c0, c1 = np.clip(col_start, 0, width), np.clip(col_end, 0, width)
        r0, r1 = np.clip(row_start, 0, height), np.clip(row_end, 0, height)
        total = (
            integral[r1[:, :, None], c1[:, None, :]]
            - integral[r0[:, :, None], c1[:, None, :]]
            - integral[r1[:, :, None], c0[:, None, :]]
            + integral[r0[:, :, None], c0[:, None, :]]
        )
        area = (row_end - row_start)[:, :, None] * (col_end - col_start)[:, None, :]
        crops[mine] = total / area[..., None]
    return crops
