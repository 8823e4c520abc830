"""What the commands that run over many image files share: a progress bar, per-file errors
that never stop the run, and the names of the annotated copies ``--draw`` writes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..errors import ConfigError, FacekitError, ImageError
from ._common import print_json, progress

if TYPE_CHECKING:
    import numpy as np

DRAW_FORMATS = ("same", "png", "jpg", "webp", "bmp")


def add_draw_options(parser: argparse.ArgumentParser) -> None:
    """``--draw DIR``, ``--draw-format`` and ``--overwrite``."""
    parser.add_argument(
        "--draw",
        metavar="DIR",
        help="write an annotated copy of each image into DIR, keeping the images' folders "
        "below their common parent (a/x.jpg and b/x.jpg give DIR/a/x.jpg and DIR/b/x.jpg)",
    )
    parser.add_argument(
        "--draw-format",
        choices=DRAW_FORMATS,
        default="same",
        help="format of the annotated copies; 'same' keeps each input's format (PNG for "
        "formats facekit does not write)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace annotated copies already in DIR (by default the command refuses to run)",
    )


def draw_targets(images: Sequence[str], folder: str, fmt: str, overwrite: bool) -> list[Path]:
    """The annotated copy's path for each image, all different: the image's path below
    the common folder of all images, inside ``folder``, with the extension of ``fmt``
    (``"same"``: the image's own when `save_image` writes it, else ``.png``). Names that
    would still clash (``x.jpg`` and ``x.png`` drawn as PNG, an image given twice) get a
    ``-2``, ``-3`` ... suffix.

    Raises:
        ConfigError: a path already exists and ``overwrite`` is false (checked before any
            work is done).
    """
    from ..draw import SAVE_EXTENSIONS

    absolute = [os.path.abspath(image) for image in images]
    try:
        common: str | None = os.path.commonpath([os.path.dirname(p) for p in absolute])
    except ValueError:  # different drives
        common = None
    targets: list[Path] = []
    taken: set[Path] = set()
    for path in absolute:
        relative = Path(os.path.relpath(path, common) if common else os.path.basename(path))
        if fmt != "same":
            relative = relative.with_suffix("." + fmt)
        elif relative.suffix.lower() not in SAVE_EXTENSIONS:
            relative = relative.with_suffix(".png")
        target = Path(folder) / relative
        number = 2
        while target in taken:
            target = Path(folder) / relative.with_stem(f"{relative.stem}-{number}")
            number += 1
        taken.add(target)
        targets.append(target)
    existing = [target for target in targets if os.path.lexists(target)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ConfigError(
            f"{existing[0]} already exists{more}: pass --overwrite to replace, or choose "
            "another --draw folder"
        )
    return targets


def planned_drawing(args: argparse.Namespace) -> list[Path] | None:
    """`draw_targets` for ``args.images`` when ``--draw`` is given."""
    if not args.draw:
        return None
    return draw_targets(args.images, args.draw, args.draw_format, args.overwrite)


class _Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


R = TypeVar("R", bound=_Result)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[R]):
    """What one image gave: its results (faces, matches), or the error it raised; and the
    path of its annotated copy, if one was written."""

    image: str
    found: Sequence[R] | FacekitError
    drawn: Path | None


def run_each(
    args: argparse.Namespace,
    targets: list[Path] | None,
    work: Callable[[str], tuple[np.ndarray, Sequence[R]]],
    draw: Callable[[np.ndarray, Sequence[R]], np.ndarray],
) -> list[Outcome[R]]:
    """``work(path) -> (image, results)`` for every image of ``args.images``, and
    ``draw(image, results)`` saved to its target when ``targets`` are given. A progress bar
    is shown on stderr when there are several images and it is wanted. An image that
    raises a `FacekitError` gets the error in its place, reported on stderr at once; it
    never stops the run."""
    from tqdm.auto import tqdm

    outcomes: list[Outcome[R]] = []
    shown = progress(args) and len(args.images) > 1
    with tqdm(total=len(args.images), unit="image", disable=not shown, file=sys.stderr) as bar:
        for index, path in enumerate(args.images):
            try:
                image, found = work(path)
                drawn = targets[index] if targets is not None else None
                if drawn is not None:
                    _save(drawn, draw(image, found), args.overwrite)
                outcomes.append(Outcome(path, found, drawn))
            except FacekitError as exc:
                outcomes.append(Outcome(path, exc, None))
                bar.write(f"facekit: error: {exc}", file=sys.stderr)
            bar.update()
    return outcomes


def report(
    args: argparse.Namespace, outcomes: Sequence[Outcome[R]], line: Callable[[R], str]
) -> int:
    """Print the outcomes as JSON (``--json``: a list of ``{"image", "faces"}`` with
    ``"drawn"`` when drawn, or ``{"image", "error"}``) or as text (per image a header and
    ``line(result)`` per result); the exit code: 1 when an image failed, else 0."""
    if args.json:
        entries: list[dict[str, Any]] = []
        for outcome in outcomes:
            if isinstance(outcome.found, FacekitError):
                entries.append({"image": outcome.image, "error": str(outcome.found)})
                continue
            entry: dict[str, Any] = {
                "image": outcome.image,
                "faces": [result.to_dict() for result in outcome.found],
            }
            if outcome.drawn is not None:
                entry["drawn"] = str(outcome.drawn)
            entries.append(entry)
        print_json(entries)
    else:
        for outcome in outcomes:
            if isinstance(outcome.found, FacekitError):
                continue
            drawn = f", drawn to {outcome.drawn}" if outcome.drawn is not None else ""
            print(f"{outcome.image}: {len(outcome.found)} face(s){drawn}")
            for result in outcome.found:
                print(f"  {line(result)}")
    return 1 if any(isinstance(o.found, FacekitError) for o in outcomes) else 0


def _save(target: Path, image: np.ndarray, overwrite: bool) -> None:
    """Write an annotated copy, making its folder."""
    from ..draw import save_image

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create {target.parent}: {exc.strerror or exc}") from None
    save_image(target, image, overwrite=overwrite)
