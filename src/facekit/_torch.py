"""What the torch backends share: importing torch, explicit devices, safe checkpoint loading.

Only the torch backends import this module, so ``import facekit`` never loads torch.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import BackendError, DeviceError, ModelError

__all__ = [
    "SAFE_TORCH",
    "checkpoint_state",
    "import_torch",
    "load_weights",
    "require_safe_torch",
    "torch_device",
]

_LOG = logging.getLogger(__name__)

SAFE_TORCH = (2, 10)
"""The oldest torch whose ``torch.load(weights_only=True)`` has no known way to run code or
corrupt memory: before 2.6 a crafted file runs code (CVE-2025-32434, GHSA-53q9-r3pm-6pq6),
before 2.10 it can corrupt memory (CVE-2026-24747, GHSA-63cw-57p8-fm3p)."""


def import_torch() -> Any:
    """The ``torch`` module.

    Raises:
        BackendError: torch is not installed (``pip install facekit[torch]``).
    """
    try:
        import torch
    except ImportError as exc:
        raise BackendError(
            f"this backend needs PyTorch, which is not installed ({exc}); "
            "install it with: pip install 'facekit[torch]'"
        ) from None
    return torch


def torch_device(device: str) -> Any:
    """The ``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        DeviceError: an unknown device, or CUDA asked for where torch cannot use it
            (facekit never falls back to the CPU silently).
    """
    torch = import_torch()
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {device!r} requested but this torch ({torch.__version__}) cannot use "
                "CUDA (a CPU-only build, or no GPU); use device='cpu'"
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
        return torch.device("cuda", index)
    raise DeviceError(f"unknown device {device!r}; use 'cpu', 'cuda' or 'cuda:N'")


def require_safe_torch(version: str) -> None:
    """Refuse a torch older than `SAFE_TORCH` before any checkpoint is read with it.

    Args:
        version: a torch version string (``torch.__version__``: ``"2.13.0+cpu"``,
            ``"2.10.0a0+git1234"``); only its major and minor numbers are compared, so the
            pre-releases and local builds of a safe release count as that release.

    Raises:
        ModelError: the version is older than `SAFE_TORCH`, or not a version at all.
    """
    found = re.match(r"\s*(\d+)\.(\d+)", version)
    wanted = ".".join(map(str, SAFE_TORCH))
    if found is None:
        raise ModelError(
            f"cannot tell whether torch {version!r} loads checkpoints safely; facekit needs "
            f"torch >= {wanted}: pip install 'torch>={wanted}'"
        )
    if (int(found[1]), int(found[2])) < SAFE_TORCH:
        raise ModelError(
            f"torch {version} can run code or corrupt memory while reading a crafted "
            f"checkpoint, even with weights_only=True (CVE-2025-32434, CVE-2026-24747); "
            f"facekit loads checkpoints only with torch >= {wanted}: "
            f"pip install --upgrade 'torch>={wanted}'"
        )


def checkpoint_state(path: Path, *, trust: bool = False) -> Mapping[str, Any]:
    """The top-level object of a torch checkpoint, read without running its code.

    ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers. A
    checkpoint that pickles other objects (training frameworks sometimes store their
    hyper-parameters as classes) is refused unless ``trust`` is set, which lets the pickle
    run code: only for files whose sha256 you know.

    Raises:
        ModelError: the installed torch is older than `SAFE_TORCH` (nothing is read), not a
            torch checkpoint, or one that needs ``trust``.
    """
    torch = import_torch()
    require_safe_torch(str(torch.__version__))
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:
            raise ModelError(f"{path} is not a readable torch checkpoint: {exc}") from None
        raise ModelError(
            f"{path} stores more than tensors (an object of class {found.group(1)}); loading "
            "it would run code from the file. If you trust it, pass trust_checkpoint=True"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, zip errors ...
        raise ModelError(f"{path} is not a readable torch checkpoint: {exc}") from None
    if not isinstance(loaded, Mapping):
        raise ModelError(
            f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping of names "
            "to tensors)"
        )
    return loaded


def load_weights(
    module: Any,
    state: Mapping[str, Any],
    path: Path,
    *,
    rename: Callable[[str], str | None] = lambda key: key,
) -> None:
    """Copy ``state`` into ``module``, every key and shape checked.

    Args:
        module: a ``torch.nn.Module``.
        state: names → tensors, as read from the file.
        path: the file, for messages.
        rename: maps a file key to the module's key, or to ``None`` for keys the model does
            not use (training heads); applied before checking.

    Raises:
        ModelError: keys missing from the file, unexpected keys, or shapes that differ:
            the file is another model (or another size of this one).
    """
    torch = import_torch()
    renamed: dict[str, Any] = {}
    ignored = 0
    for key, value in state.items():
        target = rename(key)
        if target is None:
            ignored += 1
            continue
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        renamed[target] = value
    expected = module.state_dict()
    missing = sorted(set(expected) - set(renamed))
    unexpected = sorted(set(renamed) - set(expected))
    wrong = sorted(
        f"{key} {tuple(renamed[key].shape)} (model wants {tuple(expected[key].shape)})"
        for key in set(expected) & set(renamed)
        if renamed[key].shape != expected[key].shape
    )
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({', '.join(missing[:5])}...)")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}...)")
        if wrong:
            parts.append(f"{len(wrong)} of another shape ({', '.join(wrong[:3])}...)")
        raise ModelError(
            f"{path} does not fit {type(module).__name__}: keys {'; '.join(parts)}. "
            "It is another model, or another variant of this one."
        )
    module.load_state_dict(renamed, strict=True)
    if ignored:
        _LOG.debug("%s: ignored %d keys the model does not use", path, ignored)
