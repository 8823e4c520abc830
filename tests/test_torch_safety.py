"""Checkpoints are read only with a torch whose ``weights_only`` loader is safe.

torch < 2.6 runs code from a crafted checkpoint even with ``weights_only=True``
(CVE-2025-32434), and torch < 2.10 can corrupt memory in the same loader (CVE-2026-24747):
facekit refuses to read a checkpoint with such a torch, before ``torch.load`` is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from facekit import _torch
from facekit.detectors import MTCNN
from facekit.errors import ModelError


@pytest.mark.parametrize(
    "version",
    ["1.13.1", "2.1.0", "2.5.1+cu121", "2.6.0", "2.9.1", "2.9.1+cpu", "2.9.99.dev20260101"],
)
def test_old_torch_versions_are_refused(version: str) -> None:
    with pytest.raises(ModelError, match="CVE-2025-32434") as info:
        _torch.require_safe_torch(version)
    assert version in str(info.value)
    assert "torch>=2.10" in str(info.value)  # and says what to install


@pytest.mark.parametrize(
    "version", ["2.10.0", "2.10.0a0+git1234abc", "2.10.1+cu128", "2.13.0+cpu", "2.20.0", "3.0.0"]
)
def test_safe_torch_versions_are_accepted(version: str) -> None:
    _torch.require_safe_torch(version)


@pytest.mark.parametrize("version", ["", "unknown", "v2", "2"])
def test_unreadable_torch_version_is_refused(version: str) -> None:
    with pytest.raises(ModelError, match="cannot tell"):
        _torch.require_safe_torch(version)


def test_installed_torch_is_safe_and_reads_the_real_checkpoint(models_dir: Path) -> None:
    _torch.require_safe_torch(str(torch.__version__))
    state = _torch.checkpoint_state(models_dir / "mtcnn_torch" / "pnet.pt")
    assert tuple(state["conv1.weight"].shape) == (10, 3, 3, 3)


@pytest.fixture
def old_torch(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """torch reports 2.5.1 and records every ``torch.load`` call (then loads as usual)."""
    calls: list[Any] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "__version__", "2.5.1")
    monkeypatch.setattr(torch, "load", spy)
    return calls


@pytest.mark.parametrize("trust", [False, True])
def test_old_torch_never_reads_a_real_checkpoint(
    models_dir: Path, old_torch: list[Any], trust: bool
) -> None:
    path = models_dir / "mtcnn_torch" / "pnet.pt"
    with pytest.raises(ModelError, match=r"torch 2\.5\.1") as info:
        _torch.checkpoint_state(path, trust=trust)
    assert "CVE-2026-24747" in str(info.value)
    assert old_torch == []  # refused before torch.load was called


def test_old_torch_refused_by_the_mtcnn_backend(models_dir: Path, old_torch: list[Any]) -> None:
    with pytest.raises(ModelError, match=r"torch>=2\.10"):
        MTCNN(models_dir / "mtcnn_torch")
    assert old_torch == []
