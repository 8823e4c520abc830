"""ArcFace-style recognition models on ONNX Runtime (InsightFace ``w600k_*``, ``glintr100``,
MobileFaceNet ...): NCHW input, one ``(N, D)`` output."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Literal

import numpy as np

from .._onnx import OnnxModel
from .._preprocess import nchw
from ..errors import ConfigError, ModelError
from ..types import Thresholds
from ..zoo import ModelSpec
from ._common import check_crops, flip_averaged

__all__ = ["ArcFace"]

_LOG = logging.getLogger(__name__)


def _preprocessing_of_graph(path: Path) -> tuple[float, float]:
    """Mean and std for a file the zoo does not know.

    InsightFace exports either normalise inside the graph (their first nodes subtract and
    multiply: feed raw 0..255) or expect ``(x - 127.5) / 127.5``. The graph tells which;
    reading it needs the ``onnx`` package, without which the second is assumed.
    """
    try:
        import onnx
    except ImportError:
        _LOG.warning(
            "%s is not in the zoo and the onnx package is missing: assuming (x - 127.5) / 127.5;"
            " pass mean= and std= if the model wants otherwise",
            path,
        )
        return 127.5, 127.5
    first_ops = [node.op_type for node in onnx.load(str(path)).graph.node[:4]]
    if first_ops[:1] == ["Sub"] and "Mul" in first_ops:
        return 0.0, 1.0
    return 127.5, 127.5


def _check_input(size: tuple[int, int]) -> np.ndarray:
    """Fixed pseudo-random network inputs ``(3, 3, H, W)`` in [-1, 1] (three crops), for
    checking a re-batched copy of the graph against the original (`facekit._rebatch`)."""
    width, height = size
    return np.random.default_rng(0).uniform(-1.0, 1.0, (3, 3, height, width)).astype(np.float32)


class ArcFace(OnnxModel):
    """ArcFace-style embedder on ONNX Runtime, flip-averaged and L2-normalised.

    Args:
        model: zoo name (default ``arcface_r50``, buffalo_l's w600k_r50) or a path to an ONNX
            file. Unlisted files get InsightFace preprocessing and no thresholds.
        model_dir: directory searched for zoo files first.
        flip: embed each crop and its mirror and sum them (default True).
        batch_size: faces per ``session.run``; with ``flip`` each face and its mirror go
            through the same run, so ``n`` faces take ``ceil(n / batch_size)`` runs.
        thresholds: override the model's verification thresholds.
        color: channel order the network wants, "RGB" or "BGR" (overrides the zoo spec;
            unlisted files default to RGB). AdaFace exports want "BGR".
        mean: subtracted from 0..255 pixels before dividing by ``std`` (overrides the
            zoo spec or what the graph suggests).
        std: divisor after ``mean`` is subtracted (overrides likewise).
        device: "cpu", "cuda" or "cuda:N".
        download: allow downloading a missing zoo file.
        progress: show a progress bar while downloading.
        rebatch: for a graph whose batch is fixed at 1, run a verified copy with a symbolic
            batch dimension (`facekit._rebatch`; needs the ``onnx`` package, else crops run
            one by one, as they do with ``rebatch=False``).
        threads: onnxruntime intra-op threads; ``None`` lets onnxruntime choose.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        flip: bool = True,
        batch_size: int = 32,
        thresholds: Thresholds | None = None,
        color: Literal["RGB", "BGR"] | None = None,
        mean: float | None = None,
        std: float | None = None,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
        rebatch: bool = True,
        threads: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        super().__init__(
            model,
            backend="arcface",
            task="recognition",
            model_dir=model_dir,
            device=device,
            download=download,
            progress=progress,
            threads=threads,
        )
        spec = self._model.spec
        self._input_name, self._size, batch_fixed = self._read_input(spec)
        self._dim = self._read_output(spec)
        if std == 0:
            raise ConfigError("std must not be 0")
        if color not in (None, "RGB", "BGR"):
            raise ConfigError(f"color must be 'RGB' or 'BGR', got {color!r}")
        self._bgr = (color or (spec.color if spec is not None else "RGB")) == "BGR"
        if spec is not None:
            graph_mean, graph_std = spec.mean, spec.std
        elif mean is None or std is None:
            graph_mean, graph_std = _preprocessing_of_graph(self._model.path)
        else:
            graph_mean, graph_std = mean, std
        self._mean = graph_mean if mean is None else mean
        self._std = graph_std if std is None else std
        self._template = spec.template if spec is not None and spec.template else "arcface112"
        self._thresholds = (
            thresholds
            if thresholds is not None
            else (spec.thresholds if spec is not None else None)
        )
        if batch_fixed and rebatch:
            batch_fixed = not self._use_dynamic_batch(_check_input(self._size))
        self.flip = flip
        self.batch_size = batch_size
        self._fixed_batch = batch_fixed

    def _read_input(self, spec: ModelSpec | None) -> tuple[str, tuple[int, int], bool]:
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            raise ModelError(
                f"{self._model.path} is not a recognition model: expected one N×3×H×W input"
            )
        batch, _, height, width = inputs[0].shape
        if isinstance(width, int) and isinstance(height, int):
            size = (width, height)
        elif spec is not None:
            size = spec.input_size
        else:
            size = (112, 112)
        return inputs[0].name, size, batch == 1

    def _read_output(self, spec: ModelSpec | None) -> int:
        outputs = self._session.get_outputs()
        if len(outputs) != 1 or len(outputs[0].shape) != 2:
            raise ModelError(
                f"{self._model.path} is not a recognition model: expected one (N, D) output, "
                f"got {[o.shape for o in outputs]}"
            )
        dim = outputs[0].shape[1]
        if isinstance(dim, int):
            if spec is not None and spec.embedding_dim not in (None, dim):
                raise ModelError(
                    f"{self.name}: graph gives {dim}-d, spec says {spec.embedding_dim}"
                )
            return dim
        if spec is not None and spec.embedding_dim is not None:
            return spec.embedding_dim
        raise ModelError(f"{self._model.path}: embedding dimension is not fixed in the graph")

    @property
    def dim(self) -> int:
        """Embedding dimension ``D``."""
        return self._dim

    @property
    def input_size(self) -> tuple[int, int]:
        """Crop ``(width, height)`` the network takes."""
        return self._size

    @property
    def template(self) -> str:
        """Alignment template name the model was trained with."""
        return self._template

    @property
    def thresholds(self) -> Thresholds | None:
        """Verification thresholds on cosine similarity: the ones given, else the zoo's;
        ``None`` when the model is not calibrated (`FaceRecognizer` then asks for them)."""
        return self._thresholds

    def __repr__(self) -> str:
        return f"ArcFace({self.name!r}, dim={self.dim}, flip={self.flip})"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of aligned crops.

        Args:
            crops: ``(N, H, W, 3)`` uint8 RGB crops of `input_size` (one crop
                ``(H, W, 3)`` is accepted too).

        Returns:
            ``(N, D)`` float32, each row of unit L2 norm.
        """
        crops = check_crops(crops, self._size)
        step = self.batch_size
        # at least one chunk, so that no crops at all gets flip_averaged's error
        chunks = range(0, max(crops.shape[0], 1), step)
        return np.concatenate(
            [flip_averaged(crops[start : start + step], self._run, self.flip) for start in chunks]
        )

    @property
    def batch_dynamic(self) -> bool:
        """Whether the session takes many crops per run (the graph's batch is dynamic, or
        a verified re-export made it so); otherwise crops run one by one."""
        return not self._fixed_batch

    def _run(self, crops: np.ndarray) -> np.ndarray:
        """Raw ``(M, D)`` embeddings of ``(M, H, W, 3)`` crops: one ``session.run``, or one
        per crop when the graph's batch is fixed at 1."""
        blob = nchw(crops, self._mean, self._std, bgr=self._bgr)
        if self._fixed_batch:
            parts = [
                self._session.run(None, {self._input_name: blob[row : row + 1]})[0]
                for row in range(blob.shape[0])
            ]
            return np.concatenate(parts).astype(np.float32, copy=False)
        raw = self._session.run(None, {self._input_name: blob})[0]
        return np.asarray(raw, dtype=np.float32)
