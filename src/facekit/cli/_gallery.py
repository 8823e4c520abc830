"""``facekit enroll``, ``facekit identify`` and ``facekit gallery list|info|remove|rename``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import add_model_options, detection_json, recognizer


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    enroll = commands.add_parser("enroll", help="add the people in a folder to a gallery")
    enroll.add_argument("folder", help="folder per person (DIR/alice/*.jpg) or DIR/alice.jpg")
    enroll.add_argument("--gallery", required=True, help="gallery file (created if missing)")
    add_model_options(enroll)
    enroll.add_argument(
        "--face",
        default="largest",
        choices=("largest", "best", "error"),
        help="which face of a photo with several (error: skip such photos)",
    )
    enroll.add_argument("--no-progress", action="store_true", help="no progress bar")
    enroll.add_argument("--json", action="store_true", help="print JSON instead of text")
    enroll.set_defaults(run=run_enroll)

    identify = commands.add_parser("identify", help="who is in these photos?")
    identify.add_argument("images", nargs="+", help="image files")
    identify.add_argument("--gallery", required=True, help="gallery file")
    add_model_options(identify)
    identify.add_argument("--top-k", type=int, default=1, help="candidates per face")
    identify.add_argument("--threshold", type=float, help="override the unknown threshold")
    identify.add_argument("--draw", metavar="DIR", help="write annotated copies into DIR")
    identify.add_argument("--json", action="store_true", help="print JSON instead of text")
    identify.set_defaults(run=run_identify)

    gallery = commands.add_parser("gallery", help="inspect or edit a gallery file")
    actions = gallery.add_subparsers(dest="action", required=True)
    for name, text in (("list", "identities and sample counts"), ("info", "binding and size")):
        action = actions.add_parser(name, help=text)
        action.add_argument("gallery", help="gallery file")
        action.add_argument("--json", action="store_true", help="print JSON instead of text")
    remove = actions.add_parser("remove", help="remove an identity")
    remove.add_argument("gallery", help="gallery file")
    remove.add_argument("identity")
    rename = actions.add_parser("rename", help="rename an identity")
    rename.add_argument("gallery", help="gallery file")
    rename.add_argument("old")
    rename.add_argument("new")
    gallery.set_defaults(run=run_gallery)


def run_enroll(args: argparse.Namespace) -> int:
    fr = recognizer(args, gallery=args.gallery)
    report = fr.enroll(args.folder, face=args.face, progress=not args.no_progress)
    if args.json:
        print(
            json.dumps(
                {
                    "added": [
                        {"identity": a.identity, "source": a.source, "box": list(a.box)}
                        for a in report.added
                    ],
                    "skipped": [vars_of(p) for p in report.skipped],
                    "failed": [vars_of(p) for p in report.failed],
                    "identities": len(fr.gallery),
                },
                indent=2,
            )
        )
        return 0
    print(f"{report} -> {fr.gallery.path}: {len(fr.gallery)} identities")
    for problem in report.failed:
        print(f"  failed: {problem.source} ({problem.identity}): {problem.reason}")
    return 0


def vars_of(problem: Any) -> dict[str, str]:
    return {"source": problem.source, "identity": problem.identity, "reason": problem.reason}


def run_identify(args: argparse.Namespace) -> int:
    from ..errors import ImageError

    fr = recognizer(args, gallery=_existing(args.gallery))
    results = []
    for path in args.images:
        matches = fr.identify(path, top_k=args.top_k, threshold=args.threshold)
        results.append((path, matches))
        if args.draw:
            from ..draw import draw_faces, save_image

            labels = [
                f"{m.identity} {m.similarity:.2f}" if m.identity is not None else None
                for m in matches
            ]
            out = Path(args.draw)
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ImageError(f"cannot create {out}: {exc.strerror or exc}") from None
            drawn = draw_faces(fr.load(path), [m.face for m in matches], labels)
            save_image(out / (Path(path).stem + ".png"), drawn)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "image": path,
                        "faces": [
                            {
                                "identity": m.identity,
                                "similarity": round(m.similarity, 6),
                                "margin": round(m.margin, 6) if m.margin != float("inf") else None,
                                "candidates": [[n, round(s, 6)] for n, s in m.candidates],
                                **detection_json(m.face),
                            }
                            for m in matches
                        ],
                    }
                    for path, matches in results
                ],
                indent=2,
            )
        )
        return 0
    for path, matches in results:
        print(f"{path}: {len(matches)} face(s)")
        for m in matches:
            x1, y1, x2, y2 = m.face.box
            who = m.identity if m.identity is not None else "unknown"
            others = ", ".join(f"{n} {s:.3f}" for n, s in m.candidates)
            print(
                f"  {who} (similarity {m.similarity:.3f}, margin {m.margin:.3f}) at "
                f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}); candidates: {others}"
            )
    return 0


def _existing(path: str) -> str:
    from ..errors import GalleryError

    if not Path(path).is_file():
        raise GalleryError(f"{path}: no such gallery (create one with facekit enroll)")
    return path


def run_gallery(args: argparse.Namespace) -> int:
    from ..gallery import Gallery

    with Gallery(_existing(args.gallery), create=False) as gallery:
        if args.action == "list":
            counts = gallery.counts()
            if args.json:
                print(json.dumps(counts, indent=2))
            else:
                for name, count in counts.items():
                    print(f"{name}\t{count}")
        elif args.action == "info":
            info = {
                "path": str(gallery.path),
                "identities": len(gallery),
                "samples": gallery.num_samples,
                "embedder": json.loads(gallery.embedder.to_json()) if gallery.embedder else None,
            }
            if args.json:
                print(json.dumps(info, indent=2))
            else:
                for key, value in info.items():
                    print(f"{key}: {value}")
        elif args.action == "remove":
            removed = gallery.remove(args.identity)
            print(f"removed {args.identity} ({removed} samples)")
        else:
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
    return 0
