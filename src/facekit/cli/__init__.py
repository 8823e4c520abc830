"""The ``facekit`` command.

``facekit verify A B``, ``facekit enroll DIR --gallery G``, ``facekit identify IMG... --gallery
G``, ``facekit gallery list|info|remove|rename G``, ``facekit models
list|fetch|verify|convert-mxnet``, ``facekit eval verify|identify|detect``, ``facekit
calibrate``.

Exit codes: 0 when the command ran (whatever the verdict), 1 on an error (one line on
stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import FacekitError
from . import _eval, _gallery, _models, _verify

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facekit", description="Face recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"facekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)
    _verify.add_parser(commands)
    _gallery.add_parsers(commands)
    _models.add_parser(commands)
    _eval.add_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        code: int = args.run(args)
        return code
    except FacekitError as exc:
        print(f"facekit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
