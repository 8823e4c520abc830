"""Atomic file writes: readers see the old file or the whole new one, never a partial one."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["replacing", "write_atomically"]


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A new empty temporary file in ``target``'s folder (created with its parents if
    missing) for the block to write; when the block ends without error the file is flushed
    to disk (``fsync``) and renamed over ``target`` (``os.replace``). Whatever happens, the
    temporary file is gone afterwards. Its name is hidden and ends with ``target``'s suffix
    (``.out.k2x9.part.mp4``), for writers that choose the format by the file name. It is
    created like any other file (permissions ``0o666`` less the umask, not
    `tempfile.mkstemp`'s owner-only ``0o600``).

    Raises:
        OSError: the folder or the file cannot be written.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _new_file(target)
    try:
        yield temporary
        handle = os.open(temporary, os.O_RDWR)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data`` through `replacing`.

    Raises:
        OSError: the folder or the file cannot be written.
    """
    with replacing(target) as temporary:
        temporary.write_bytes(data)


def _new_file(target: Path) -> Path:
    """Create a new empty hidden file beside ``target`` with mode ``0o666`` (the umask
    applies); ``O_EXCL``, so a name another writer holds is never reused."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.part{target.suffix}")
        try:
            os.close(os.open(temporary, flags, 0o666))
        except FileExistsError:
            continue
        return temporary
    raise FileExistsError(f"no free temporary name beside {target}")
