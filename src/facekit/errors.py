"""The typed errors facekit raises.

Every error derives from `FacekitError`, so ``except FacekitError`` catches all of
them. Errors about bad arguments also derive from `ValueError`, and a missing
optional dependency also derives from `ImportError`, so generic handlers keep working.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ChecksumError",
    "ConfigError",
    "DeviceError",
    "FacekitError",
    "GalleryError",
    "ImageError",
    "ModelError",
    "ModelNotFoundError",
    "MultipleFacesError",
    "NoFaceError",
    "StreamError",
]


class FacekitError(Exception):
    """Base class of every error raised by facekit."""


class ConfigError(FacekitError, ValueError):
    """An argument or setting is invalid (unknown backend name, bad threshold, ...)."""


class ImageError(FacekitError, ValueError):
    """An input could not be read as an image, or is one facekit refuses (too large, ...)."""


class NoFaceError(FacekitError):
    """No face was found where one was required."""


class MultipleFacesError(FacekitError):
    """Several faces were found where the face policy requires exactly one."""


class ModelError(FacekitError):
    """A model file is missing, corrupt, or not the kind of model the backend expects."""


class ModelNotFoundError(ModelError):
    """A model file is not available locally and could not be downloaded."""


class ChecksumError(ModelError):
    """A model file's sha256 does not match the one the zoo records."""


class GalleryError(FacekitError):
    """A gallery file is malformed, from a newer facekit, or bound to another embedder;
    or an identity operation is impossible (unknown name, name taken)."""


class BackendError(FacekitError, ImportError):
    """A backend needs an optional dependency that is not installed (``pip install facekit[x]``)."""


class DeviceError(FacekitError):
    """The requested compute device is not usable (facekit never falls back silently)."""


class StreamError(FacekitError):
    """A video source cannot be opened, or stopped sending frames (a camera or stream that
    stalls or disconnects)."""
