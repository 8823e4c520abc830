"""Opening ONNX Runtime sessions with explicit devices and clear errors."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DeviceError, ModelError
from .zoo import Task, default_model, resolve

__all__ = ["OnnxModel", "open_session", "providers_for"]

_LOG = logging.getLogger(__name__)


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device`` ("cpu", "cuda" or "cuda:N").

    Raises:
        DeviceError: the device is unknown, or its provider is not available in the
            installed onnxruntime (facekit never falls back to the CPU silently).
    """
    import onnxruntime as ort

    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise DeviceError(
                f"device {device!r} requested but this onnxruntime has no CUDA provider "
                f"(available: {', '.join(ort.get_available_providers())}); install "
                "onnxruntime-gpu or use device='cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


def open_session(model: Path | bytes, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for the model at ``model`` (a path, or the
    serialised model itself) on ``device``.

    Args:
        threads: intra-op threads (``intra_op_num_threads``; inter-op threads are then 1);
            ``None`` lets onnxruntime choose.

    Raises:
        ModelError: the file is not a loadable ONNX model.
        DeviceError: see `providers_for`.
    """
    import onnxruntime as ort

    providers = providers_for(device)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # shape-inference warnings of dynamic exports are noise
    # A pipeline alternates between sessions; threads left spinning after one session's run
    # steal the cores the next one needs (benchmarks/bench_pipeline.py measured it).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1 (or None), got {threads}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    provider_options: list[dict[str, Any]] = [{} for _ in providers]
    if device.startswith("cuda:"):
        provider_options[0] = {"device_id": int(device.split(":", 1)[1])}
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(
            source, sess_options=options, providers=providers, provider_options=provider_options
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        shown = f"a model of {len(model)} bytes" if isinstance(model, bytes) else str(model)
        raise ModelError(f"{shown} is not a loadable ONNX model: {exc}") from None


class OnnxModel:
    """Base of the ONNX Runtime backends: resolves and verifies the model file through the
    zoo and opens its session. Subclasses read the graph and do pre- and post-processing.

    Args:
        model: zoo name or path; ``None`` means the default model of ``backend``.
        backend: registry name of the subclass, for its default model.
        task: the zoo task the model must have.
        model_dir, download, progress: see `facekit.zoo.resolve`.
        device: see `providers_for`.
        threads: intra-op threads of the session (see `open_session`).

    Attributes:
        concurrent: ``True``: several threads may call the model at once (ONNX Runtime's
            ``session.run`` is thread-safe and the subclasses keep no per-call state), so
            the pipeline's lanes (`facekit.pipeline`) run it side by side.
    """

    concurrent = True

    def __init__(
        self,
        model: str | os.PathLike[str] | None,
        *,
        backend: str,
        task: Task,
        model_dir: str | os.PathLike[str] | None,
        device: str,
        download: bool | None,
        progress: bool,
        threads: int | None = None,
    ) -> None:
        self._model = resolve(
            model if model is not None else default_model(backend),
            task=task,
            model_dir=model_dir,
            download=download,
            progress=progress,
        )
        self._device = device
        self._threads = threads
        self._session = open_session(self._model.path, device, threads)

    def _use_dynamic_copy(
        self,
        check_input: np.ndarray,
        *,
        free_size: bool = False,
        drop_initializer_inputs: bool = False,
    ) -> None:
        """Switch the session to a verified copy of the model with a symbolic batch
        dimension (see `facekit._rebatch.dynamic_copy`, which the arguments are passed to).

        Raises:
            facekit._rebatch.CopyError: no copy; the session still runs the original.
        """
        from ._rebatch import dynamic_copy

        copy = dynamic_copy(
            self._model.path,
            self.sha256,
            check_input=check_input,
            free_size=free_size,
            drop_initializer_inputs=drop_initializer_inputs,
        )
        self._session = open_session(copy, self._device, self._threads)

    def _use_dynamic_batch(self, check_input: np.ndarray) -> bool:
        """`_use_dynamic_copy` for a graph whose batch is fixed at 1, where running the
        original one image at a time is the fallback.

        Args:
            check_input: ``(N >= 2, ...)`` float32 inputs the copy is checked on.

        Returns:
            Whether the session now runs the copy (``False``: the original at batch 1, the
            reason debug-logged).
        """
        from ._rebatch import CopyError

        try:
            self._use_dynamic_copy(check_input)
        except CopyError as exc:
            _LOG.debug("%s: batch stays 1: %s", self._model.path.name, exc)
            return False
        return True

    @property
    def name(self) -> str:
        """Zoo name of the model, or the file name of an unlisted model."""
        return self._model.name

    @property
    def sha256(self) -> str:
        """sha256 of the model file (what results and galleries are bound to)."""
        return self._model.sha256[0]
