"""Files the zoo makes from verified downloads (`Conversion`): made on first use, cached by
the source's sha256, and checked again on every later load.

A converted file lives at ``<cache>/converted/<source sha256>/<output name>``. Its sha256
must be the one the zoo records for it (``Conversion.output.sha256``) or, while the zoo
records none, the one pinned at the first conversion (`facekit.zoo.pins`). A cached copy
that no longer matches is made again; a fresh conversion that does not match is deleted
and reported.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from .._atomic import replacing
from ..errors import BackendError, ChecksumError, ModelError
from .download import sha256_of
from .pins import check_pinned
from .spec import Conversion

__all__ = ["converted_path", "load_converter", "make_converted"]

_LOG = logging.getLogger(__name__)

Converter = Callable[[Path, Path], None]
"""``converter(source, target)``: writes the converted form of ``source`` to ``target``."""


def converted_path(conversion: Conversion, source_sha256: str, cache: Path) -> Path:
    """Where the conversion of the source with digest ``source_sha256`` is cached."""
    return cache / "converted" / source_sha256 / conversion.output.name


def load_converter(converter: str) -> Converter:
    """Import the converter named ``"module:function"``.

    Raises:
        BackendError: the module cannot be imported or has no such function.
    """
    module_name, _, attribute = converter.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(
            f"the converter {converter} is not available ({exc}); this facekit cannot "
            "make the model's file from its download"
        ) from None
    function = getattr(module, attribute, None)
    if not callable(function):
        raise BackendError(f"the converter {converter} does not exist in {module_name}")
    found: Converter = function
    return found


def make_converted(
    conversion: Conversion, source: Path, source_sha256: str, cache: Path
) -> tuple[Path, str]:
    """The converted file of ``source`` (already verified), made now unless a verified copy
    is cached, and its sha256.

    Args:
        conversion: what to make, and the digest it must have.
        source: the verified source file.
        source_sha256: its digest (names the cache folder).
        cache: the zoo's cache directory.

    Raises:
        ChecksumError: the conversion gave other bytes than the zoo records (or pinned).
        BackendError: the converter cannot be imported.
        ModelError: the converter refused the source, or the cache cannot be written.
    """
    target = converted_path(conversion, source_sha256, cache)
    if target.is_file():
        try:
            return target, _check(conversion, target, cache, source)
        except ChecksumError as exc:
            _LOG.warning("%s: converting %s again", exc, source)
            target.unlink(missing_ok=True)
    convert = load_converter(conversion.converter)
    _LOG.info("converting %s to %s with %s", source, target, conversion.converter)
    try:
        with replacing(target) as temporary:
            try:
                convert(source, temporary)
                digest = _check(conversion, temporary, cache, source)
            except OSError as exc:
                raise ModelError(f"converting {source} to {target} failed: {exc}") from None
    except OSError as exc:
        raise ModelError(
            f"cannot write the converted model to {target.parent} ({exc}); set "
            f"$FACEKIT_CACHE to a writable folder"
        ) from None
    _LOG.info("saved %s (sha256 %s)", target, digest)
    return target, digest


def _check(conversion: Conversion, path: Path, cache: Path, source: Path) -> str:
    """The sha256 of the converted file at ``path``, checked against the recorded digest,
    else the pin (pinned now if there is none).

    Raises:
        ChecksumError: it differs.
    """
    output = conversion.output
    digest = sha256_of(path)
    if output.sha256 is None:
        check_pinned(output.name, digest, cache, path)
    elif digest != output.sha256:
        raise ChecksumError(
            f"{output.name} converted from {source} by {conversion.converter} has sha256 "
            f"{digest} ({path.stat().st_size} bytes), but the zoo records {output.sha256} "
            f"({output.size} bytes)"
        )
    return digest
