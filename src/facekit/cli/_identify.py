"""``facekit identify``: who is in these photos?"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import (
    add_model_options,
    add_progress_option,
    command,
    existing_gallery,
    recognizer,
)
from ._images import add_draw_options, planned_drawing, report, run_each

if TYPE_CHECKING:
    import numpy as np

    from ..types import FaceMatch


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    identify = command(commands, "identify", "who is in these photos?")
    identify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    identify.add_argument("--gallery", required=True, help="gallery file (see facekit enroll)")
    add_model_options(identify)
    identify.add_argument("--top-k", type=int, default=1, help="candidates listed per face")
    identify.add_argument(
        "--threshold",
        type=float,
        help="similarity below which a face is unknown (default: the embedder's 'same' threshold)",
    )
    add_draw_options(identify)
    identify.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_progress_option(identify)
    identify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Identify every face of every image, largest first; an image that fails is reported
    and the others go on (exit code 1)."""
    from ..draw import draw_matches

    targets = planned_drawing(args)
    fr = recognizer(args, gallery=existing_gallery(args.gallery))

    def work(path: str) -> tuple[np.ndarray, Sequence[FaceMatch]]:
        image = fr.load(path)
        return image, fr.identify(image, top_k=args.top_k, threshold=args.threshold)

    outcomes = run_each(args, targets, work, draw_matches)
    return report(args, outcomes, _line)


def _line(m: FaceMatch) -> str:
    x1, y1, x2, y2 = m.face.box
    who = m.identity if m.identity is not None else "unknown"
    others = ", ".join(f"{n} {s:.3f}" for n, s in m.candidates)
    return (
        f"{who} (similarity {m.similarity:.3f}, margin {m.margin:.3f}) at "
        f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}); candidates: {others}"
    )
