"""``facekit detect``: where are the faces in these photos?"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._common import add_detector_options, add_progress_option, command, detector
from ._images import add_draw_options, planned_drawing, report, run_each

if TYPE_CHECKING:
    import numpy as np

    from ..types import Detection


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    detect = command(commands, "detect", "find the faces in photos (no embedder needed)")
    detect.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add_detector_options(detect)
    add_draw_options(detect)
    detect.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_progress_option(detect)
    detect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Detect every face of every image, detector order (highest score first); an image
    that fails is reported and the others go on (exit code 1)."""
    from ..draw import draw_faces
    from ..io import load_image

    targets = planned_drawing(args)
    found_by = detector(args)

    def work(path: str) -> tuple[np.ndarray, Sequence[Detection]]:
        image = load_image(path)
        return image, found_by.detect(image)

    def draw(image: np.ndarray, faces: Sequence[Detection]) -> np.ndarray:
        return draw_faces(image, faces, [f"{face.score:.2f}" for face in faces])

    outcomes = run_each(args, targets, work, draw)
    return report(args, outcomes, _line)


def _line(face: Detection) -> str:
    x1, y1, x2, y2 = face.box
    return f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}) score {face.score:.3f}"
