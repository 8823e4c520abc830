"""``facekit verify``: are the faces of two photos the same person?"""

from __future__ import annotations

import argparse
import sys

from ._common import add_model_options, command, face_policy, print_json, recognizer


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = command(commands, "verify", "are the faces of two photos the same person?")
    verify.add_argument("image_a", metavar="A", help="first image file")
    verify.add_argument("image_b", metavar="B", help="second image file")
    add_model_options(verify)
    verify.add_argument(
        "--face",
        default="largest",
        help="which face when there are several: largest, best, error or an index",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = face_policy(args.face)
    fr = recognizer(args, face=policy)
    result = fr.verify(args.image_a, args.image_b)
    used = {"largest": "the largest", "best": "the highest-scoring"}.get(policy, f"face {policy}")
    for path, count in zip((args.image_a, args.image_b), result.faces_found, strict=True):
        if count > 1:
            print(f"facekit: {count} faces in {path}, used {used} (see --face)", file=sys.stderr)
    if args.json:
        print_json(
            {
                "image_a": args.image_a,
                "image_b": args.image_b,
                **result.to_dict(),
                "detector": getattr(fr.detector, "name", None),
                "embedder": fr.embedder.name,
            }
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
