"""Options and helpers shared by the commands that run the pipeline."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..protocols import Detector
    from ..recognizer import FaceRecognizer
    from ..types import Detection


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """``--detector``, ``--detector-model``, ``--detector-options``, ``--model-dir``."""
    parser.add_argument("--detector", default="scrfd", help="detector backend (default scrfd)")
    parser.add_argument("--detector-model", help="detector zoo name or model path")
    parser.add_argument(
        "--detector-options",
        type=_json_object,
        default={},
        metavar="JSON",
        help="extra detector arguments, e.g. '{\"padding\": 0.5}' for tight face crops",
    )
    parser.add_argument("--model-dir", help="directory searched for model files first")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The detector options, ``--embedder``, ``--embedder-model`` and ``--thresholds``."""
    add_detector_options(parser)
    parser.add_argument("--embedder", default="arcface", help="embedder backend (default arcface)")
    parser.add_argument("--embedder-model", help="embedder zoo name or model path")
    parser.add_argument(
        "--thresholds", metavar="FILE", help="thresholds file written by facekit calibrate"
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def detector(args: argparse.Namespace) -> Detector:
    """Only the detector of the model options (for commands that embed nothing)."""
    from .. import registry

    built: Detector = registry.create(
        "detector",
        args.detector,
        args.detector_model,
        model_dir=args.model_dir,
        **args.detector_options,
    )
    return built


def recognizer(args: argparse.Namespace, **options: Any) -> FaceRecognizer:
    """A `FaceRecognizer` from the model options (and ``options``)."""
    from ..recognizer import FaceRecognizer

    return FaceRecognizer(
        detector=args.detector,
        embedder=args.embedder,
        detector_model=args.detector_model,
        embedder_model=args.embedder_model,
        model_dir=args.model_dir,
        detector_options=args.detector_options,
        thresholds=args.thresholds,
        **options,
    )


def face_policy(value: str) -> Any:
    """``--face`` value: a policy name or an index."""
    return int(value) if value.isdigit() else value


def detection_json(detection: Detection) -> dict[str, Any]:
    """Box, score and landmarks of a detection, rounded, as JSON-ready data."""
    return {
        "box": [round(v, 2) for v in detection.box],
        "score": round(detection.score, 4),
        "landmarks": [[round(float(v), 2) for v in point] for point in detection.landmarks],
    }
