"""``facekit enroll``: add the people in a folder to a gallery."""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..io import read_image_file
from ._common import (
    add_index_option,
    add_model_options,
    add_progress_option,
    add_ray_options,
    check_ray_options,
    command,
    print_json,
    progress,
    recognizer,
    recognizer_options,
)

if TYPE_CHECKING:
    from ..gallery import Gallery
    from ..types import EnrollProblem, EnrollReport

_EXAMPLES = 3
"""Example files shown per group of failures."""
_LISTED = 20
"""Files with several faces listed before "... and N more"."""
_CROP_SIDE = 256
"""Images no larger than this (pixels, both sides) look like face crops to the hints."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enroll = command(commands, "enroll", "add the people in a folder to a gallery")
    enroll.add_argument(
        "folder",
        metavar="FOLDER",
        help="folder per person (FOLDER/alice/*.jpg) or FOLDER/alice.jpg",
    )
    enroll.add_argument(
        "--gallery",
        required=True,
        help="gallery file (created if missing), or a milvus-lite:///... or milvus://... URI",
    )
    add_index_option(enroll)
    add_model_options(enroll)
    enroll.add_argument(
        "--face",
        default="largest",
        choices=("largest", "best", "error"),
        help="which face of a photo with several (error: skip such photos)",
    )
    enroll.add_argument(
        "--aligned",
        action="store_true",
        help="the images are already-aligned face crops at the embedder's size (112x112 "
        "for ArcFace): embed them as they are, without detection",
    )
    add_ray_options(enroll, "detect and embed")
    add_progress_option(enroll)
    enroll.add_argument("--json", action="store_true", help="print JSON instead of text")
    enroll.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Enrol the folder. Exit code 1 when nothing was added and nothing was already there;
    130 on Ctrl-C (what was added is kept: running the command again resumes).

    ``--index`` is the search index the gallery is opened with: a faiss one (hnsw, ivf) is
    built or loaded, grown with the new samples and saved beside the gallery file, so
    that the next search loads it instead of building it."""
    check_ray_options(args)
    if args.ray is not None:
        return _run_on_ray(args)
    from ..gallery import Gallery

    # with the default index the recogniser opens (and binds) the gallery, after its models
    # are built; another index: the gallery is opened here, bound by the first sample added
    location: str | Gallery = (
        args.gallery if args.index == "auto" else Gallery(args.gallery, index=args.index)
    )
    try:
        fr = recognizer(args, gallery=location)
    except BaseException:
        if isinstance(location, Gallery):
            location.close()
        raise
    with fr.gallery:
        try:
            with _per_file_log(shown=args.verbose):
                report = fr.enroll(
                    args.folder, face=args.face, aligned=args.aligned, progress=progress(args)
                )
        except KeyboardInterrupt:
            return _interrupted(args)
        where = str(fr.gallery.path) if fr.gallery.path is not None else args.gallery
        return _summary(args, report, where, len(fr.gallery))


def _run_on_ray(args: argparse.Namespace) -> int:
    """``--ray``: `facekit.distributed.enroll`, then the same summary."""
    from ..distributed import enroll
    from ..errors import ConfigError, GalleryError
    from ..gallery import Gallery

    if args.aligned:
        raise ConfigError("--aligned is not supported with --ray")
    try:
        with _per_file_log(shown=args.verbose):
            report = enroll(
                args.folder,
                gallery=args.gallery,
                address=args.ray or None,
                actors=args.actors,
                face=args.face,
                index=args.index,
                progress=progress(args),
                **recognizer_options(args),
            )
    except KeyboardInterrupt:
        return _interrupted(args)
    try:
        with Gallery(args.gallery, create=False, index=args.index) as gallery:
            identities = len(gallery)
    except GalleryError:
        if report.added or report.skipped:
            raise
        identities = 0  # no image to enrol: the gallery was not created
    return _summary(args, report, args.gallery, identities)


def _interrupted(args: argparse.Namespace) -> int:
    print(
        f"facekit: interrupted; the images enrolled so far are saved in {args.gallery}: "
        "run the same command again to resume (they are skipped)",
        file=sys.stderr,
    )
    return 130


def _summary(args: argparse.Namespace, report: EnrollReport, where: str, identities: int) -> int:
    """Print what ``report`` says (text or JSON) about the gallery at ``where``, which holds
    ``identities`` now; exit code 1 when nothing was added and nothing was already there."""
    nothing = not report.added and not report.skipped
    if args.json:
        print_json({**report.to_dict(), "gallery": where, "identities": identities})
    else:
        print(f"{report} -> {where}: {identities} identities")
        for line in summary_lines(report, args.folder, aligned=args.aligned):
            print(line)
    if nothing:
        what = f"{len(report.failed)} images failed" if report.failed else "no images found"
        print(f"facekit: error: nothing enrolled from {args.folder}: {what}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _per_file_log(*, shown: bool) -> Iterator[None]:
    """The library logs a warning per input it could not enrol; the summary printed after
    groups them, so those lines are shown only with ``-v``."""
    logger = logging.getLogger("facekit.recognizer")
    level = logger.level
    if not shown:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def summary_lines(report: EnrollReport, folder: str, *, aligned: bool) -> list[str]:
    """The failures grouped by reason (count, a few example files, a hint), then the files
    in which several faces were found, to be checked."""
    lines: list[str] = []
    for kind, problems in report.failures_by_reason().items():
        examples = ", ".join(_short(p.source, folder) for p in problems[:_EXAMPLES])
        more = ", ..." if len(problems) > _EXAMPLES else ""
        lines.append(f"  {kind}: {len(problems)} image(s), e.g. {examples}{more}")
        hint = _hint(kind, problems, aligned)
        if hint:
            lines.append(f"    hint: {hint}")
    several = report.several_faces
    if several:
        lines.append(
            f"  {len(several)} image(s) had several faces; check that the right one was used:"
        )
        for enrolled in several[:_LISTED]:
            lines.append(
                f"    {_short(enrolled.source, folder)} ({enrolled.faces_found} faces, "
                f"enrolled as {enrolled.identity})"
            )
        if len(several) > _LISTED:
            lines.append(f"    ... and {len(several) - _LISTED} more (--json lists them all)")
    return lines


def _short(source: str, folder: str) -> str:
    """``source`` relative to the enrolled folder when it is inside it."""
    try:
        relative = os.path.relpath(source, folder)
    except ValueError:  # another drive
        return source
    return source if relative.startswith(os.pardir) else relative


def _hint(kind: str, problems: Sequence[EnrollProblem], aligned: bool) -> str | None:
    if kind == "wrong crop size" or (aligned and kind == "other"):
        return (
            "--aligned expects face crops already aligned at the embedder's input size "
            "(112x112 for ArcFace); leave it out to detect the faces"
        )
    if kind.startswith("no face"):
        sizes = {_size(p.source) for p in problems[:_EXAMPLES]}
        if sizes == {(112, 112)}:
            return "these are 112x112 images: if they are aligned face crops, use --aligned"
        if all(size is not None and _crop_like(*size) for size in sizes):
            w, h = next(iter(sizes)) or (0, 0)
            return (
                f"these look like tight face crops ({w}x{h} pixels); try --aligned if they "
                "are aligned 112x112 crops, else --detector-options '{\"padding\": 0.5}'"
            )
        return "check that these photos show a face, large and upright enough to find"
    if kind.startswith("several"):
        return "--face error skips such photos; use --face largest or best, or crop them"
    if kind.startswith("unreadable"):
        return "facekit reads JPEG, PNG, WebP and BMP files; move other files out of the folder"
    if kind.startswith("invalid identity"):
        return "rename the folder or file: an identity is non-empty, valid UTF-8 text"
    if kind.startswith("quality"):
        return "the quality filter rejected these faces; use larger, sharper photos"
    return None


def _crop_like(width: int, height: int) -> bool:
    """Small and about as wide as high, or higher: the shape of a face crop."""
    return max(width, height) <= _CROP_SIDE and 0.6 <= width / height <= 1.25


def _size(path: str) -> tuple[int, int] | None:
    """Width and height of an image file from its header, or None."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(read_image_file(path))) as image:
            width, height = image.size
            return width, height
    except Exception:  # only a hint: an unreadable file gives none
        return None
