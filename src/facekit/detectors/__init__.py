"""Face detectors: image → boxes, scores and 5 landmarks.

Backends are imported on first attribute access, so ``import facekit.detectors`` stays light
(MTCNN's torch is imported only when `MTCNN` is used).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .mtcnn import MTCNN
    from .scrfd import SCRFD

__all__ = ["MTCNN", "SCRFD"]

_MODULES = {"MTCNN": ".mtcnn", "SCRFD": ".scrfd"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
