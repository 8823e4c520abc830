"""``facekit gallery list|info|remove|rename``."""

from __future__ import annotations

import argparse
import json

from ._common import command, existing_gallery, print_json


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gallery = command(commands, "gallery", "inspect or edit a gallery file")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "identities and sample counts"), ("info", "binding and size")):
        action = command(actions, name, text)
        action.add_argument("gallery", help="gallery file")
        action.add_argument("--json", action="store_true", help="print JSON instead of text")
    remove = command(actions, "remove", "remove an identity and its samples")
    remove.add_argument("gallery", help="gallery file")
    remove.add_argument("identity")
    rename = command(actions, "rename", "rename an identity")
    rename.add_argument("gallery", help="gallery file")
    rename.add_argument("old")
    rename.add_argument("new")
    gallery.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..gallery import Gallery

    with Gallery(existing_gallery(args.gallery), create=False) as gallery:
        if args.action == "list":
            counts = gallery.counts()
            if args.json:
                print_json(counts)
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
                print_json(info)
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
