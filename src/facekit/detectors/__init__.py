"""Face detectors: image → boxes, scores and 5 landmarks.

Backends are imported on first attribute access, so ``import facekit.detectors`` stays light
(torch and mxnet are imported only when `MTCNN` or an MXNet `RetinaFace` is built).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .centerface import CenterFace
    from .mtcnn import MTCNN
    from .retinaface import RetinaFace
    from .scrfd import SCRFD
    from .yunet import YuNet

__all__ = ["MTCNN", "SCRFD", "CenterFace", "RetinaFace", "YuNet"]

_MODULES = {
    "CenterFace": ".centerface",
    "MTCNN": ".mtcnn",
    "RetinaFace": ".retinaface",
    "SCRFD": ".scrfd",
    "YuNet": ".yunet",
}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
