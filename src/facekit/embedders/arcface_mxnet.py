"""ArcFace-style recognition checkpoints of InsightFace's MXNet era (LResNet100E-IR,
LResNet50E-IR, MobileFaceNet ...) on MXNet: the ``fc1`` layer of ``prefix-symbol.json``.

The checkpoints take 112×112 RGB crops as 0..255 floats: their graphs normalise by
themselves (they start with ``_minus_scalar`` and ``_mul_scalar``).
"""

from __future__ import annotations

import os

import numpy as np

from .._mxnet import import_mxnet, load_checkpoint, mx_context, resolve_checkpoint, unfused
from ..errors import ConfigError, ModelError
from ..types import Thresholds
from ..zoo import default_model
from ._common import check_crops, flip_averaged

__all__ = ["ArcFaceMXNet"]


class ArcFaceMXNet:
    """ArcFace-style MXNet checkpoint embedder, batched, flip-averaged, L2-normalised.

    Args:
        model: zoo name (default ``mobilefacenet_mxnet``) or a checkpoint prefix
            (``.../model`` for ``model-symbol.json`` + ``model-EPOCH.params``).
        epoch: params epoch (default: the only or latest file).
        layer: the embedding layer; its output ``<layer>_output`` is taken (``fc1``).
        model_dir: directory searched for zoo files first.
        flip: embed each crop and its mirror and sum them (default True).
        batch_size: crops per forward pass (the module is bound to this batch).
        thresholds: verification thresholds (the zoo has none calibrated for MXNet
            checkpoints: pass them, or convert the checkpoint and use a calibrated model).
        device: "cpu" or "gpu:N"; a GPU MXNet cannot use is a `DeviceError`.
        download: allow downloading missing zoo files.
        progress: show a progress bar while downloading.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        epoch: int | None = None,
        layer: str = "fc1",
        model_dir: str | os.PathLike[str] | None = None,
        flip: bool = True,
        batch_size: int = 32,
        thresholds: Thresholds | None = None,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self._mx = import_mxnet()
        self._checkpoint = resolve_checkpoint(
            model if model is not None else default_model("arcface-mxnet"),
            epoch=epoch,
            task="recognition",
            model_dir=model_dir,
            download=download,
            progress=progress,
        )
        symbol, args, aux = load_checkpoint(self._checkpoint, output=f"{layer}_output")
        spec = self._checkpoint.model.spec
        self._size = spec.input_size if spec is not None else (112, 112)
        width, height = self._size
        self._module = self._mx.mod.Module(
            symbol=symbol, context=mx_context(device), label_names=None
        )
        try:
            with unfused():
                self._module.bind(
                    data_shapes=[("data", (batch_size, 3, height, width))], for_training=False
                )
            self._module.set_params(args, aux, allow_missing=False, allow_extra=True)
        except Exception as exc:  # MXNetError for shape mismatches and missing inputs
            raise ModelError(
                f"{self._checkpoint.prefix} does not run on {self._size} crops: {exc}"
            ) from None
        _, output_shapes, _ = symbol.infer_shape(data=(1, 3, height, width))
        self._dim = int(np.prod(output_shapes[0][1:]))
        self._thresholds = (
            thresholds
            if thresholds is not None
            else (spec.thresholds if spec is not None else None)
        )
        self._template = spec.template if spec is not None and spec.template else "arcface112"
        self.layer = layer
        self.flip = flip
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        """Zoo name, or the checkpoint prefix's name."""
        spec = self._checkpoint.model.spec
        return spec.name if spec is not None else self._checkpoint.prefix.name

    @property
    def sha256(self) -> str:
        """sha256 of the params file (what galleries are bound to)."""
        return self._checkpoint.model.sha256[1]

    @property
    def dim(self) -> int:
        """Embedding dimension ``D``."""
        return self._dim

    @property
    def input_size(self) -> tuple[int, int]:
        """Crop ``(width, height)``."""
        return self._size

    @property
    def template(self) -> str:
        """Alignment template name (``arcface112``)."""
        return self._template

    @property
    def thresholds(self) -> Thresholds | None:
        """Verification thresholds on cosine similarity: the ones given, else the zoo's;
        ``None`` when the model is not calibrated (`FaceRecognizer` then asks for them)."""
        return self._thresholds

    def __repr__(self) -> str:
        return f"ArcFaceMXNet({self.name!r}, layer={self.layer!r}, dim={self.dim})"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """``(N, 112, 112, 3)`` uint8 RGB crops → ``(N, D)`` float32 unit vectors."""
        return flip_averaged(check_crops(crops, self._size), self._run, self.flip)

    def _run(self, crops: np.ndarray) -> np.ndarray:
        mx = self._mx
        blob = crops.transpose(0, 3, 1, 2).astype(np.float32)  # RGB 0..255, NCHW
        parts = []
        for start in range(0, blob.shape[0], self.batch_size):
            chunk = blob[start : start + self.batch_size]
            count = chunk.shape[0]
            if count < self.batch_size:  # the module is bound to one batch size: pad
                pad = np.zeros((self.batch_size - count, *chunk.shape[1:]), np.float32)
                chunk = np.concatenate([chunk, pad])
            self._module.forward(mx.io.DataBatch([mx.nd.array(chunk)]), is_train=False)
            parts.append(self._module.get_outputs()[0].asnumpy()[:count])
        return np.concatenate(parts).astype(np.float32, copy=False)
