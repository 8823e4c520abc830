"""facekit: face detection, alignment, embedding and verification.

``import facekit`` is light: ONNX Runtime, OpenCV and the backends load when first used,
and torch or mxnet only when a backend that needs them is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ChecksumError,
    ConfigError,
    FacekitError,
    GalleryError,
    ImageError,
    ModelError,
    MultipleFacesError,
    NoFaceError,
    StreamError,
)
from .types import (
    Detection,
    EnrolledFace,
    EnrollProblem,
    EnrollReport,
    Face,
    FaceMatch,
    Thresholds,
    Verification,
)

if TYPE_CHECKING:
    from .gallery import Gallery
    from .io import load_image
    from .recognizer import FaceRecognizer

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "ConfigError",
    "Detection",
    "EnrollProblem",
    "EnrollReport",
    "EnrolledFace",
    "Face",
    "FaceMatch",
    "FaceRecognizer",
    "FacekitError",
    "Gallery",
    "GalleryError",
    "ImageError",
    "ModelError",
    "MultipleFacesError",
    "NoFaceError",
    "StreamError",
    "Thresholds",
    "Verification",
    "__version__",
    "load_image",
]

_LAZY = {
    "FaceRecognizer": "facekit.recognizer",
    "Gallery": "facekit.gallery",
    "load_image": "facekit.io",
}


def __dir__() -> list[str]:
    """The module's names, including those loaded on first use (`_LAZY`)."""
    return sorted({*globals(), *_LAZY})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facekit' has no attribute {name!r}")
