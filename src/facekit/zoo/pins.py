"""Digests pinned on first use, for files whose publishers give no sha256.

The first copy of such a file that facekit sees (downloaded, or found in a model directory)
has its sha256 recorded in ``pins.json`` in the cache directory; every later copy must
match it. That catches a changed or truncated file from then on, but it cannot prove that
the first copy was the published one: the zoo says so for each such file.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

from ..errors import ChecksumError

__all__ = ["check_pinned", "pins_path"]

_LOG = logging.getLogger(__name__)


def pins_path(cache: Path) -> Path:
    """The pin file in the cache directory ``cache``."""
    return cache / "pins.json"


def _read(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        pins = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ChecksumError(
            f"the pin file {path} is unreadable ({exc}); fix or delete it"
        ) from None
    if not isinstance(pins, dict) or not all(isinstance(v, str) for v in pins.values()):
        raise ChecksumError(f"the pin file {path} is not a name → sha256 mapping; delete it")
    return pins


def check_pinned(name: str, digest: str, cache: Path, where: Path) -> None:
    """Compare ``digest`` of the file ``name`` (at ``where``) with its pin, pinning it when
    it has none.

    Raises:
        ChecksumError: the file differs from the copy pinned before.
    """
    path = pins_path(cache)
    pins = _read(path)
    pinned = pins.get(name)
    if pinned == digest:
        return
    if pinned is not None:
        raise ChecksumError(
            f"{where} has sha256 {digest}, but the first copy of {name} facekit saw had "
            f"{pinned} (pinned in {path}; no official digest is published). The file changed "
            f"or is corrupt; if you replaced it on purpose, remove its entry from {path}."
        )
    pins[name] = digest
    cache.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=cache, prefix="pins.", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(pins, out, indent=1, sort_keys=True)
    os.replace(temp, path)
    _LOG.warning(
        "%s has no published sha256: pinned %s (from %s) on first use in %s",
        name,
        digest,
        where,
        path,
    )
