"""The ``facekit`` command.

``facekit verify A B``, ``facekit detect IMG...``, ``facekit enroll DIR --gallery G``,
``facekit identify IMG... --gallery G``, ``facekit gallery list|info|remove|rename|migrate``,
``facekit models list|fetch|verify|convert-mxnet|convert-dlib``,
``facekit eval verify|identify|detect``, ``facekit calibrate``.

Exit codes: 0 when the command ran (whatever the verdict), 1 on an error (one line on
stderr per error, never a traceback for an expected failure), 2 on a usage error, 130
when interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence

from .. import __version__
from ..errors import FacekitError
from . import _detect, _enroll, _eval, _gallery, _identify, _models, _verify
from ._common import HelpFormatter

__all__ = ["main"]

_EPILOG = """\
Options of the main command (-v) are also accepted after the sub-command.

environment:
  FACEKIT_HOME     folder of model files, searched after --model-dir and before the cache
  FACEKIT_CACHE    download cache (default: $XDG_CACHE_HOME/facekit or ~/.cache/facekit)
  FACEKIT_OFFLINE  set to 1 to never download models

exit codes: 0 done (whatever the verdict), 1 error, 2 usage error, 130 interrupted
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facekit",
        description="Face recognition toolkit.",
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"facekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _verify.add_parser(commands)
    _detect.add_parser(commands)
    _enroll.add_parser(commands)
    _identify.add_parser(commands)
    _gallery.add_parser(commands)
    _models.add_parser(commands)
    _eval.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    with _logging(args.verbose), _lenient_output():
        try:
            code: int = args.run(args)
            return code
        except FacekitError as exc:
            print(f"facekit: error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("facekit: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:  # output piped into `head` and the like
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
            return 0
        except OSError as exc:  # writing an output file or folder
            where = f"{exc.filename}: " if exc.filename else ""
            print(f"facekit: error: {where}{exc.strerror or exc}", file=sys.stderr)
            return 1


@contextlib.contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """facekit's log records on stderr while the command runs: INFO and up with ``-v``,
    else WARNING and up. The handler looks up ``sys.stderr`` at each record and is removed
    afterwards, so `main` can run many times in one process."""
    logger = logging.getLogger("facekit")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("facekit: %(levelname)s: %(message)s"))
    saved = logger.level, logger.propagate
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to whatever ``sys.stderr`` is now."""

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


@contextlib.contextmanager
def _lenient_output() -> Iterator[None]:
    """Let stdout and stderr print any text: file names that are not valid UTF-8 hold
    surrogates, which would otherwise raise UnicodeEncodeError; they are shown escaped."""
    streams = [s for s in (sys.stdout, sys.stderr) if isinstance(s, io.TextIOWrapper)]
    saved = [s.errors for s in streams]
    for stream in streams:
        stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream, errors in zip(streams, saved, strict=True):
            with contextlib.suppress(OSError, ValueError):  # a broken pipe
                stream.reconfigure(errors=errors)
