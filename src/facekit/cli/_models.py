"""``facekit models list|fetch|verify|convert-mxnet|convert-dlib``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelNotFoundError
from ._common import command, print_json

if TYPE_CHECKING:
    from ..zoo import ModelSpec

_DLIB_MODEL = "dlib_resnet_v1"
"""The zoo entry whose converter ``convert-dlib`` runs."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = command(commands, "models", "list, download or check zoo models")
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = command(
        actions,
        "list",
        "the zoo table: licence class (permissive / research only) and whether the files "
        "are here (found, not sha256-checked: see verify)",
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of text")
    listing.add_argument("--model-dir", help="directory searched for model files first")
    presets = command(
        actions, "presets", "the named detector + embedder bundles (FaceRecognizer(preset=...))"
    )
    presets.add_argument("--json", action="store_true", help="print JSON instead of text")
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
    dlib = command(
        actions,
        "convert-dlib",
        "convert dlib's dlib_face_recognition_resnet_model_v1.dat to ONNX (no dlib needed)",
    )
    dlib.add_argument("source", help="the .dat file")
    dlib.add_argument("output", help="ONNX file to write")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.action == "list":
        return _list(args)
    if args.action == "presets":
        return _presets(args)
    if args.action == "convert-dlib":
        return _convert_dlib(Path(args.source), Path(args.output))
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


def _list(args: argparse.Namespace) -> int:
    from .. import zoo

    rows = []
    for spec in zoo.MODELS:
        found = zoo.local_files(spec, model_dir=args.model_dir)
        rows.append(
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
                "license_class": "research only" if spec.research_only else "permissive",
                "license": spec.license,
                "local": _usable(spec, found),
                "local_files": {name: str(path) if path else None for name, path in found.items()},
                "description": spec.description,
            }
        )
    if args.json:
        print_json(rows)
        return 0
    name_width = max(len("name"), *(len(spec.name) for spec in zoo.MODELS))
    backend_width = max(len("backend"), *(len(spec.backend) for spec in zoo.MODELS))
    header = f"{'name':<{name_width}}  {'task':<11}  {'backend':<{backend_width}}"
    print(f"{header}  {'MB':>6}  {'local':<5}  licence")
    for row in rows:
        licence = "RESEARCH ONLY" if row["research_only"] else "permissive"
        print(
            f"{row['name']:<{name_width}}  {row['task']:<11}  "
            f"{row['backend']:<{backend_width}}  {row['size_mb'] or '?':>6}  "
            f"{'yes' if row['local'] else 'no':<5}  {licence}"
        )
    return 0


def _presets(args: argparse.Namespace) -> int:
    from ..presets import DEFAULT_PRESET, PRESETS

    rows = [
        {
            "name": preset.name,
            "default": preset.name == DEFAULT_PRESET,
            "detector": f"{preset.detector}:{preset.detector_model}",
            "embedder": f"{preset.embedder}:{preset.embedder_model}",
            "research_only": preset.research_only,
            "license_class": "research only" if preset.research_only else "permissive",
            "summary": preset.summary,
        }
        for preset in PRESETS.values()
    ]
    if args.json:
        print_json(rows)
        return 0
    for row in rows:
        licence = "RESEARCH ONLY" if row["research_only"] else "permissive"
        default = " (default)" if row["default"] else ""
        print(f"{row['name']}{default}: {row['detector']} + {row['embedder']}  [{licence}]")
        print(f"    {row['summary']}")
    return 0


def _usable(spec: ModelSpec, found: dict[str, Path | None]) -> bool:
    """Whether the model can load without a download: all its files are here, or (for a
    converted model) its converted file is."""
    if spec.convert is not None and found[spec.convert.output.name] is not None:
        return True
    return all(found[file.name] is not None for file in spec.files)


def _convert_dlib(source: Path, output: Path) -> int:
    from .. import zoo
    from ..zoo.conversion import load_converter

    spec = zoo.get_spec(_DLIB_MODEL)
    assert spec.convert is not None  # the table says so; tests check it
    if not source.is_file():
        raise ModelNotFoundError(f"{source} does not exist (or is not a file)")
    load_converter(spec.convert.converter)(source, output)
    digest = zoo.sha256_of(output)
    if zoo.spec_for_sha256(digest) is spec:
        use = f"the zoo's {spec.name}: load it with ArcFace(path) or --embedder-model {output}"
    else:
        use = f"not the bytes the zoo records for {spec.name} (another .dat or facekit version)"
    print(f"wrote {output} (sha256 {digest}); {use}")
    return 0
