"""Digests pinned on first use, for files whose publishers give no sha256.

The first copy of such a file that facekit sees (downloaded, or found in a model directory)
has its sha256 recorded in ``pins.json`` in the cache directory; every later copy must
match it. That catches a changed or truncated file from then on, but it cannot prove that
the first copy was the published one: the zoo says so for each such file.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._atomic import write_atomically
from ..errors import ChecksumError

if sys.platform != "win32":
    import fcntl

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


def _matches(pins: dict[str, str], name: str, digest: str, path: Path, where: Path) -> bool:
    """Whether ``name`` is pinned to ``digest`` (``False``: not pinned yet).

    Raises:
        ChecksumError: it is pinned to another digest.
    """
    pinned = pins.get(name)
    if pinned is not None and pinned != digest:
        raise ChecksumError(
            f"{where} has sha256 {digest}, but the first copy of {name} facekit saw had "
            f"{pinned} (pinned in {path}; no official digest is published). The file changed "
            f"or is corrupt; if you replaced it on purpose, remove its entry from {path}."
        )
    return pinned is not None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (``flock``: released when the holder exits,
    also if it is killed). On Windows there is no lock; the writes are still atomic."""
    with open(path.with_name(path.name + ".lock"), "ab") as handle:
        if sys.platform != "win32":
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def check_pinned(name: str, digest: str, cache: Path, where: Path) -> None:
    """Compare ``digest`` of the file ``name`` (at ``where``) with its pin, pinning it when
    it has none.

    The pin file is read, updated and replaced under a lock, so pins written at the same
    time by several processes are all kept. A cache that cannot be written is logged: the
    file is then used unpinned.

    Raises:
        ChecksumError: the file differs from the copy pinned before, or the pin file is
            unreadable.
    """
    path = pins_path(cache)
    if _matches(_read(path), name, digest, path, where):
        return
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with _locked(path):
            pins = _read(path)  # again: another process may have pinned it meanwhile
            if _matches(pins, name, digest, path, where):
                return
            pins[name] = digest
            # atomic: readers see the old or the new file
            write_atomically(path, json.dumps(pins, indent=1, sort_keys=True).encode())
    except OSError as exc:
        _LOG.warning(
            "%s has no published sha256 and its digest %s could not be pinned in %s (%s): "
            "later copies cannot be checked against this one",
            name,
            digest,
            path,
            exc,
        )
        return
    _LOG.warning(
        "%s has no published sha256: pinned %s (from %s) on first use in %s",
        name,
        digest,
        where,
        path,
    )
