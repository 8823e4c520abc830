"""The ``facekit`` command: ``facekit verify A B`` and ``facekit models list|fetch|verify``.

Exit codes: 0 when the command ran (whatever the verdict), 1 on an error (one line on
stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .errors import FacekitError

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facekit", description="Face recognition toolkit.")
    parser.add_argument("--version", action="version", version=f"facekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    commands = parser.add_subparsers(dest="command", required=True)

    verify = commands.add_parser("verify", help="are the faces of two photos the same person?")
    verify.add_argument("image_a", help="first image file")
    verify.add_argument("image_b", help="second image file")
    verify.add_argument("--detector", default="scrfd", help="detector backend (default scrfd)")
    verify.add_argument("--detector-model", help="detector zoo name or model path")
    verify.add_argument("--embedder", default="arcface", help="embedder backend (default arcface)")
    verify.add_argument("--embedder-model", help="embedder zoo name or model path")
    verify.add_argument("--model-dir", help="directory searched for model files first")
    verify.add_argument(
        "--face",
        default="largest",
        help="which face when there are several: largest, best, error or an index",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")

    models = commands.add_parser("models", help="list, download or check zoo models")
    actions = models.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="the zoo table")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    fetch = actions.add_parser("fetch", help="download into the cache (sha256-checked)")
    fetch.add_argument("names", nargs="+", help="zoo names")
    fetch.add_argument("--model-dir", help="directory searched for model files first")
    check = actions.add_parser("verify", help="check the sha256 of local copies")
    check.add_argument("names", nargs="*", help="zoo names (default: all)")
    check.add_argument("--model-dir", help="directory searched for model files first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    try:
        if args.command == "verify":
            return _verify(args)
        return _models(args)
    except FacekitError as exc:
        print(f"facekit: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0


def _face_policy(value: str) -> Any:
    return int(value) if value.isdigit() else value


def _verify(args: argparse.Namespace) -> int:
    from .recognizer import FaceRecognizer

    recognizer = FaceRecognizer(
        detector=args.detector,
        embedder=args.embedder,
        detector_model=args.detector_model,
        embedder_model=args.embedder_model,
        model_dir=args.model_dir,
        face=_face_policy(args.face),
    )
    result = recognizer.verify(args.image_a, args.image_b)
    if args.json:
        print(
            json.dumps(
                {
                    "image_a": args.image_a,
                    "image_b": args.image_b,
                    "similarity": round(result.similarity, 6),
                    "same": result.same,
                    "verdict": result.verdict,
                    "threshold": result.threshold,
                    "thresholds": {
                        "likely": result.thresholds.likely,
                        "same": result.thresholds.same,
                        "protocol": result.thresholds.protocol,
                    },
                    "detector": getattr(recognizer.detector, "name", None),
                    "embedder": recognizer.embedder.name,
                    "face_a": _face_json(result.face_a),
                    "face_b": _face_json(result.face_b),
                },
                indent=2,
            )
        )
        return 0
    t = result.thresholds
    print(f"{result.verdict.upper()}: similarity {result.similarity:.3f}")
    print(f"  thresholds: likely same >= {t.likely:.3f}, same >= {t.same:.3f} ({t.protocol})")
    for label, path, face in (
        ("A", args.image_a, result.face_a),
        ("B", args.image_b, result.face_b),
    ):
        x1, y1, x2, y2 = face.box
        print(
            f"  face {label}: {path} box ({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}) "
            f"score {face.detection.score:.2f}"
        )
    return 0


def _face_json(face: Any) -> dict[str, Any]:
    return {
        "box": [round(v, 2) for v in face.box],
        "score": round(face.detection.score, 4),
        "landmarks": [[round(float(v), 2) for v in point] for point in face.detection.landmarks],
    }


def _models(args: argparse.Namespace) -> int:
    from . import zoo

    if args.action == "list":
        rows = [
            {
                "name": spec.name,
                "task": spec.task,
                "backend": spec.backend,
                "pack": spec.pack,
                "size_mb": round(spec.size / 1e6, 1),
                "research_only": spec.research_only,
                "license": spec.license,
                "description": spec.description,
            }
            for spec in zoo.MODELS
        ]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        name_width = max(len("name"), *(len(spec.name) for spec in zoo.MODELS))
        backend_width = max(len("backend"), *(len(spec.backend) for spec in zoo.MODELS))
        header = f"{'name':<{name_width}}  {'task':<11}  {'backend':<{backend_width}}"
        print(f"{header}  {'MB':>6}  licence")
        for row in rows:
            licence = "RESEARCH ONLY" if row["research_only"] else row["license"]
            print(
                f"{row['name']:<{name_width}}  {row['task']:<11}  "
                f"{row['backend']:<{backend_width}}  {row['size_mb']:>6}  {licence}"
            )
        return 0
    specs = [zoo.get_spec(name) for name in args.names] or list(zoo.MODELS)
    failed = False
    for spec in specs:
        if args.action == "fetch":
            resolved = zoo.resolve(spec.name, model_dir=args.model_dir)
            for path in resolved.paths:
                print(f"{spec.name}: {path} (sha256 ok)")
            continue
        for file, status in zoo.verify(spec, model_dir=args.model_dir).items():
            failed = failed or status.startswith("BAD")
            print(f"{spec.name}: {file}: {status}")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
