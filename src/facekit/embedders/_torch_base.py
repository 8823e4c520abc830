"""What the torch embedders share: find and verify the checkpoint, build the network and
load its weights with every key checked, run flip-averaged batches, export to ONNX."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._atomic import replacing
from .._preprocess import nchw
from .._torch import checkpoint_state, import_torch, load_weights, torch_device
from ..errors import ConfigError, ModelError
from ..types import Thresholds
from ..zoo import ModelSpec, default_model, get_spec, resolve
from ._common import check_crops, flip_summed, l2_normalize

__all__ = ["TorchEmbedder"]


class TorchEmbedder:
    """Base of the torch embedders. Subclasses name their backend and fill in
    `_weights` (the state dict inside the file, keys renamed), `_architecture_of` and
    `_build`; preprocessing, crop size, template and dimension come from the zoo spec of
    the model (for an unlisted file: of the backend's default model).

    Args:
        model: zoo name or path of a checkpoint.
        model_dir: directory searched for zoo files first.
        architecture: network variant, for unlisted files whose keys do not tell it.
        flip: embed each crop and its mirror and sum them (default True).
        batch_size: crops per forward pass.
        thresholds: verification thresholds (the zoo has none calibrated for these
            weights, see `thresholds`).
        trust_checkpoint: allow a checkpoint that pickles more than tensors (runs code from
            the file: only for files you trust).
        device: "cpu", "cuda" or "cuda:N"; CUDA without a usable GPU is a `DeviceError`.
        download: allow downloading a missing zoo file.
        progress: show a progress bar while downloading.
    """

    _backend: ClassVar[str]

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        model_dir: str | os.PathLike[str] | None = None,
        architecture: str | None = None,
        flip: bool = True,
        batch_size: int = 32,
        thresholds: Thresholds | None = None,
        trust_checkpoint: bool = False,
        device: str = "cpu",
        download: bool | None = None,
        progress: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self._torch = import_torch()
        self._device = torch_device(device)
        self._model = resolve(
            model if model is not None else default_model(self._backend),
            task="recognition",
            model_dir=model_dir,
            download=download,
            progress=progress,
        )
        if self._model.spec is not None and self._model.spec.backend != self._backend:
            raise ModelError(
                f"{self._model.name} is a {self._model.spec.backend} model, not {self._backend}"
            )
        spec = self._model.spec or get_spec(default_model(self._backend))
        self._spec: ModelSpec = spec
        path = self._model.path
        weights = self._weights(checkpoint_state(path, trust=trust_checkpoint), path)
        found = self._architecture_of(weights)
        wanted = self._model.spec.architecture if self._model.spec is not None else architecture
        if wanted is not None and found is not None and wanted != found:
            raise ModelError(f"{path} holds {found} weights, but {wanted} was expected")
        chosen = wanted or found
        if chosen is None:
            raise ModelError(f"{path}: cannot tell the network variant from its keys")
        self.architecture = chosen
        self._net = self._build(chosen)
        load_weights(self._net, weights, path)
        self._net.to(self._device).eval()
        listed = self._model.spec
        self._thresholds = (
            thresholds
            if thresholds is not None
            else (listed.thresholds if listed is not None else None)
        )
        self.flip = flip
        self.batch_size = batch_size

    # --- for subclasses -------------------------------------------------------------------

    def _weights(self, state: Mapping[str, Any], path: Path) -> dict[str, Any]:
        """The network's state dict inside the checkpoint, keys as the network names them."""
        raise NotImplementedError

    def _architecture_of(self, weights: Mapping[str, Any]) -> str | None:
        """The variant the keys belong to, if they tell."""
        raise NotImplementedError

    def _build(self, architecture: str) -> Any:
        """A fresh ``torch.nn.Module`` of ``architecture``."""
        raise NotImplementedError

    # --- the Embedder protocol ------------------------------------------------------------

    @property
    def name(self) -> str:
        """Zoo name of the model, or the file name of an unlisted checkpoint."""
        return self._model.name

    @property
    def sha256(self) -> str:
        """sha256 of the checkpoint (what galleries are bound to)."""
        return self._model.sha256[0]

    @property
    def dim(self) -> int:
        """Embedding dimension ``D``."""
        return int(self._spec.embedding_dim or 512)

    @property
    def input_size(self) -> tuple[int, int]:
        """Crop ``(width, height)`` the network takes."""
        return self._spec.input_size

    @property
    def template(self) -> str:
        """Name of the alignment template of the crops (see `facekit.aligners`)."""
        return self._spec.template or "arcface112"

    @property
    def preprocessing(self) -> tuple[str, float, float]:
        """``(color, mean, std)``: the network sees ``(pixel - mean) / std`` in that channel
        order. The same three values make an exported ONNX file run in `ArcFace`."""
        return self._spec.color, self._spec.mean, self._spec.std

    @property
    def thresholds(self) -> Thresholds | None:
        """Verification thresholds on cosine similarity: the ones given, else the zoo's;
        ``None`` when the model is not calibrated (`FaceRecognizer` then asks for them)."""
        return self._thresholds

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.architecture}, flip={self.flip})"

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embeddings of aligned crops.

        Args:
            crops: ``(N, H, W, 3)`` uint8 RGB crops of `input_size` (one ``(H, W, 3)`` crop
                is accepted too).

        Returns:
            ``(N, D)`` float32, each row of unit L2 norm.
        """
        return self.embed_with_norms(crops)[0]

    def embed_with_norms(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and the L2 norm of each crop's raw (unnormalised) feature.

        Returns:
            ``(N, D)`` float32 unit vectors and ``(N,)`` float32 norms of the unmirrored
            crops' features.
        """
        summed, norms = flip_summed(check_crops(crops, self.input_size), self._run, self.flip)
        return l2_normalize(summed), norms

    def _blob(self, crops: np.ndarray) -> np.ndarray:
        """``(M, H, W, 3)`` uint8 RGB → ``(M, 3, H, W)`` float32 as the network wants it."""
        color, mean, std = self.preprocessing
        return nchw(crops, mean, std, bgr=color == "BGR")

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        blob = self._blob(crops)
        parts = []
        with torch.inference_mode():
            for start in range(0, blob.shape[0], self.batch_size):
                batch = torch.from_numpy(blob[start : start + self.batch_size]).to(self._device)
                parts.append(self._net(batch).float().cpu().numpy())
        return np.concatenate(parts)

    def export_onnx(self, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
        """Write the network as an ONNX file with a dynamic batch: input ``input``
        ``(N, 3, H, W)`` preprocessed crops, output ``embedding`` ``(N, D)`` raw features.

        Preprocessing stays outside the graph; run the file with
        ``ArcFace(path, color=..., mean=..., std=...)`` using `preprocessing`. The file is
        written to a temporary name, flushed to disk and renamed into place
        (`facekit._atomic.replacing`).

        Returns:
            The path written.
        """
        torch = self._torch
        target = Path(path)
        width, height = self.input_size
        example = torch.zeros((2, 3, height, width), device=self._device)
        with replacing(target) as temporary, warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of the torch.export one,
            # which needs onnxscript; this one needs nothing beyond torch.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                self._net,
                (example,),
                str(temporary),
                input_names=["input"],
                output_names=["embedding"],
                dynamic_axes={"input": {0: "batch"}, "embedding": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        return target
