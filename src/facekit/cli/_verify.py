"""``facekit verify``: are the faces of two photos the same person?"""

from __future__ import annotations

import argparse
import json

from ._common import add_model_options, detection_json, face_policy, recognizer


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser("verify", help="are the faces of two photos the same person?")
    verify.add_argument("image_a", help="first image file")
    verify.add_argument("image_b", help="second image file")
    add_model_options(verify)
    verify.add_argument(
        "--face",
        default="largest",
        help="which face when there are several: largest, best, error or an index",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    fr = recognizer(args, face=face_policy(args.face))
    result = fr.verify(args.image_a, args.image_b)
    if args.json:
        report = {
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
            "detector": getattr(fr.detector, "name", None),
            "embedder": fr.embedder.name,
            "face_a": detection_json(result.face_a.detection),
            "face_b": detection_json(result.face_b.detection),
        }
        print(json.dumps(report, indent=2))
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
