"""``facekit models list|fetch|verify``."""

from __future__ import annotations

import argparse

from ._common import command, print_json


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = command(commands, "models", "list, download or check zoo models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(actions, "list", "the zoo table")
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    fetch = command(actions, "fetch", "download into the cache (sha256-checked)")
    fetch.add_argument("names", nargs="+", help="zoo names")
    fetch.add_argument("--model-dir", help="directory searched for model files first")
    check = command(actions, "verify", "check the sha256 of local copies")
    check.add_argument("names", nargs="*", help="zoo names (default: all)")
    check.add_argument("--model-dir", help="directory searched for model files first")
    convert = command(
        actions,
        "convert-mxnet",
        "convert an MXNet RetinaFace or ArcFace checkpoint to ONNX (needs [mxnet])",
    )
    convert.add_argument("prefix", help="checkpoint prefix (DIR/NAME) or zoo name")
    convert.add_argument("output", help="ONNX file to write")
    convert.add_argument("--epoch", type=int, help="params epoch (default: the latest)")
    convert.add_argument(
        "--task", choices=["detection", "recognition"], help="default: read from the checkpoint"
    )
    convert.add_argument(
        "--input-size", type=int, nargs=2, metavar=("W", "H"), help="graph input size"
    )
    convert.add_argument("--layer", default="fc1", help="embedding layer of a recogniser")
    convert.add_argument("--model-dir", help="directory searched for model files first")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.action == "list":
        rows = [
            {
                "name": spec.name,
                "task": spec.task,
                "backend": spec.backend,
                "pack": spec.pack,
                "size_mb": (
                    round(spec.size / 1e6, 1)
                    if all(f.size is not None for f in spec.files)
                    else None  # not published
                ),
                "research_only": spec.research_only,
                "license": spec.license,
                "description": spec.description,
            }
            for spec in zoo.MODELS
        ]
        if args.json:
            print_json(rows)
            return 0
        name_width = max(len("name"), *(len(spec.name) for spec in zoo.MODELS))
        backend_width = max(len("backend"), *(len(spec.backend) for spec in zoo.MODELS))
        header = f"{'name':<{name_width}}  {'task':<11}  {'backend':<{backend_width}}"
        print(f"{header}  {'MB':>6}  licence")
        for row in rows:
            licence = "RESEARCH ONLY" if row["research_only"] else row["license"]
            print(
                f"{row['name']:<{name_width}}  {row['task']:<11}  "
                f"{row['backend']:<{backend_width}}  {row['size_mb'] or '?':>6}  {licence}"
            )
        return 0
    if args.action == "convert-mxnet":
        from ..convert import mxnet_to_onnx

        done = mxnet_to_onnx(
            args.prefix,
            args.output,
            epoch=args.epoch,
            task=args.task,
            input_size=tuple(args.input_size) if args.input_size else None,
            layer=args.layer,
            model_dir=args.model_dir,
        )
        use = "RetinaFace(path)" if done.task == "detection" else "ArcFace(path)"
        print(
            f"wrote {done.path} ({done.task}, input {done.input_shape}, max relative error "
            f"against MXNet {done.max_relative_error:.1e}); load it with {use}"
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
