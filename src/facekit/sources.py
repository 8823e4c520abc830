"""What to enrol: the folder layouts people use, as ``(identity, image)`` pairs."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import ConfigError
from .io import ImageInput, read_image_file

__all__ = ["IMAGE_SUFFIXES", "content_sha256", "folder_sources"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
"""File suffixes enrolled from folders, compared case-insensitively."""


def folder_sources(root: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """``(identity, path)`` for every image below ``root``, sorted by path.

    Layouts, which may be mixed:

    - folder per person: ``root/alice/*.jpg`` (also deeper, ``root/alice/2019/x.jpg``): the
      identity is the first folder below ``root``;
    - file name = identity: ``root/alice.jpg``: the identity is the file name without its
      suffix.

    Raises:
        ConfigError: ``root`` is not a directory.
    """
    base = Path(root)
    if not base.is_dir():
        raise ConfigError(f"{base} is not a directory")
    found = []
    for path in sorted(base.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        relative = path.relative_to(base)
        identity = relative.parts[0] if len(relative.parts) > 1 else path.stem
        found.append((identity, path))
    return found


def content_sha256(image: ImageInput) -> str:
    """sha256 of an input's content: a file's bytes, bytes as given, or an array's pixels
    (with its shape and dtype), so re-enrolling the same input can be recognised."""
    digest = hashlib.sha256()
    if isinstance(image, (str, os.PathLike)):
        digest.update(read_image_file(image))  # refuses FIFOs, devices and oversized files
    elif isinstance(image, (bytes, bytearray, memoryview)):
        digest.update(image)
    elif isinstance(image, np.ndarray):
        digest.update(f"{image.shape}{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
    else:  # PIL image and the like
        digest.update(np.asarray(image).tobytes())
    return digest.hexdigest()


def pairs(
    source: str | os.PathLike[str] | Iterable[tuple[str, ImageInput]],
) -> list[tuple[str, ImageInput]]:
    """A folder (see `folder_sources`) or an iterable of ``(identity, image)`` as a list."""
    if isinstance(source, (str, os.PathLike)):
        return list(folder_sources(source))
    return list(source)
