"""Opening ONNX Runtime sessions with explicit devices and clear errors."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DeviceError, ModelError
from .zoo import Task, default_model, resolve

__all__ = ["OnnxModel", "open_session", "providers_for"]


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


def open_session(path: Path, device: str = "cpu", threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for the model at ``path`` on ``device``.

    Args:
        threads: intra-op threads; ``None`` lets onnxruntime choose.

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
        options.intra_op_num_threads = threads
    provider_options: list[dict[str, Any]] = [{} for _ in providers]
    if device.startswith("cuda:"):
        provider_options[0] = {"device_id": int(device.split(":", 1)[1])}
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=providers, provider_options=provider_options
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise ModelError(f"{path} is not a loadable ONNX model: {exc}") from None


class OnnxModel:
    """Base of the ONNX Runtime backends: resolves and verifies the model file through the
    zoo and opens its session. Subclasses read the graph and do pre- and post-processing.

    Args:
        model: zoo name or path; ``None`` means the default model of ``backend``.
        backend: registry name of the subclass, for its default model.
        task: the zoo task the model must have.
        model_dir, download, progress: see `facekit.zoo.resolve`.
        device: see `providers_for`.
    """

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
    ) -> None:
        self._model = resolve(
            model if model is not None else default_model(backend),
            task=task,
            model_dir=model_dir,
            download=download,
            progress=progress,
        )
        self._session = open_session(self._model.path, device)

    @property
    def name(self) -> str:
        """Zoo name of the model, or the file name of an unlisted model."""
        return self._model.name

    @property
    def sha256(self) -> str:
        """sha256 of the model file (what results and galleries are bound to)."""
        return self._model.sha256[0]
