"""Face embedders: aligned crops → L2-normalised, flip-averaged vectors.

Backends are imported on first attribute access, so ``import facekit.embedders`` stays light
(torch is imported only when `AdaFace` or `FaceNet` is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .adaface import AdaFace
    from .arcface import ArcFace
    from .facenet import FaceNet

__all__ = ["AdaFace", "ArcFace", "FaceNet"]

_MODULES = {"AdaFace": ".adaface", "ArcFace": ".arcface", "FaceNet": ".facenet"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
