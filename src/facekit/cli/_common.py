"""Options and helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..gallery import Gallery
    from ..protocols import Detector
    from ..recognizer import FaceRecognizer


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the epilog's line breaks and shows each option's default, except for flags
    (off by default) and options without one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS or default == {}:
            return action.help
        return super()._get_help_string(action)


def _global_options() -> argparse.ArgumentParser:
    """Options every command accepts after its name too (``facekit verify -v A B``).

    Their default is SUPPRESS so that leaving them out after the command keeps the value
    given before it."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log what happens"
    )
    return options


_GLOBAL = _global_options()


def command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """A sub-command parser with the global options and the help formatter."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text,
        description=kwargs.pop("description", text[:1].upper() + text[1:]),
        parents=[_GLOBAL],
        formatter_class=HelpFormatter,
        **kwargs,
    )
    return parser


def add_detector_options(parser: argparse.ArgumentParser) -> None:
    """``--preset``, ``--detector``, ``--detector-model``, ``--detector-options``,
    ``--model-dir``, ``--device``."""
    from ..presets import DEFAULT_PRESET, PRESETS

    parser.add_argument(
        "--preset",
        default=DEFAULT_PRESET,
        choices=list(PRESETS),
        help="detector + embedder bundle: open (commercial use allowed), buffalo_l, "
        "buffalo_m, buffalo_s (research only); see `facekit models presets`",
    )
    parser.add_argument(
        "--detector",
        help="detector backend: centerface, scrfd, yunet, retinaface or mtcnn (default: the "
        "preset's)",
    )
    parser.add_argument(
        "--detector-model", help="detector zoo name or model path (default: the backend's)"
    )
    parser.add_argument(
        "--detector-options",
        type=_json_object,
        default={},
        metavar="JSON",
        help="extra detector arguments, e.g. '{\"padding\": 0.5}' for tight face crops",
    )
    parser.add_argument(
        "--model-dir",
        metavar="DIR",
        help="folder searched for model files first, before $FACEKIT_HOME and the cache",
    )
    parser.add_argument("--device", default="cpu", help="where the models run: cpu, cuda or cuda:N")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The detector options, ``--embedder``, ``--embedder-model`` and ``--thresholds``."""
    add_detector_options(parser)
    parser.add_argument(
        "--embedder", help="embedder backend: arcface, adaface or facenet (default: the preset's)"
    )
    parser.add_argument(
        "--embedder-model", help="embedder zoo name or model path (default: the backend's)"
    )
    parser.add_argument(
        "--thresholds", metavar="FILE", help="thresholds file written by facekit calibrate"
    )


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress`` (a bar is shown only when stderr is a terminal anyway)."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def progress(args: argparse.Namespace) -> bool:
    """Whether to show a progress bar: not asked off, and stderr is a terminal."""
    return not args.no_progress and sys.stderr.isatty()


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
    from ..presets import choose_stage, get_preset

    bundle = get_preset(args.preset)
    backend, model = choose_stage("detector", bundle, args.detector, args.detector_model)
    built: Detector = registry.create(
        "detector",
        backend,
        model,
        model_dir=args.model_dir,
        device=args.device,
        **args.detector_options,
    )
    return built


def recognizer_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `FaceRecognizer` keyword arguments the model options give."""
    return {
        "preset": args.preset,
        "detector": args.detector,
        "embedder": args.embedder,
        "detector_model": args.detector_model,
        "embedder_model": args.embedder_model,
        "model_dir": args.model_dir,
        "device": args.device,
        "detector_options": args.detector_options,
        "thresholds": args.thresholds,
    }


def recognizer(args: argparse.Namespace, **options: Any) -> FaceRecognizer:
    """A `FaceRecognizer` from the model options (and ``options``)."""
    from ..recognizer import FaceRecognizer

    return FaceRecognizer(**recognizer_options(args), **options)


def face_policy(value: str) -> Any:
    """``--face`` value: a policy name or an index."""
    return int(value) if value.isdigit() else value


def print_json(value: Any) -> None:
    """``value`` as indented JSON on stdout, with each list of numbers (a box, landmarks,
    an embedding) on one line."""
    print(_json_text(value, ""))


def _json_text(value: Any, indent: str) -> str:
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(str(k))}: {_json_text(v, inner)}" for k, v in value.items())
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and value and not all(_flat(item) for item in value):
        items = (inner + _json_text(item, inner) for item in value)
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    return json.dumps(value)


def _flat(value: Any) -> bool:
    """A scalar or a list of scalars: shown on one line inside a list."""
    if isinstance(value, list):
        return all(not isinstance(item, (list, dict)) for item in value)
    return not isinstance(value, dict)


def add_index_option(parser: argparse.ArgumentParser) -> None:
    """``--index``: how a gallery is searched."""
    from ..gallery.backends import INDEX_NAMES

    parser.add_argument(
        "--index",
        choices=INDEX_NAMES,
        default="auto",
        help="gallery search: exact, hnsw or ivf (approximate, re-ranked exactly; needs "
        "facekit[ann]), or auto (exact for small galleries, hnsw for large ones)",
    )


def add_ray_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray [ADDRESS]`` and ``--actors N``: ``what`` (e.g. "detect and embed") on a Ray
    cluster. ``--ray`` takes an optional value: write it after the positional arguments."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help=f'{what} on a Ray cluster (pip install "facekit[ray]"): at ADDRESS (auto, '
        "host:6379, ray://head:10001), or a local one when no address is given; write it "
        "after the other arguments, or as --ray=ADDRESS",
    )
    parser.add_argument(
        "--actors", type=int, metavar="N", help="with --ray: actors (default: one per GPU or CPU)"
    )


def check_ray_options(args: argparse.Namespace) -> None:
    """``--actors`` needs ``--ray``.

    Raises:
        ConfigError: ``--actors`` without ``--ray``.
    """
    from ..errors import ConfigError

    if args.ray is None and args.actors is not None:
        raise ConfigError("--actors applies to --ray only")


def open_gallery(args: argparse.Namespace) -> Gallery:
    """The existing gallery ``--gallery`` (a file or a URI), searched with ``--index``."""
    from ..gallery import Gallery

    location = args.gallery if "://" in args.gallery else existing_gallery(args.gallery)
    return Gallery(location, create=False, index=args.index)


def existing_gallery(path: str) -> str:
    """``path`` if it is a file; commands that only read a gallery never create one.

    Raises:
        GalleryError: no such file.
    """
    from pathlib import Path

    from ..errors import GalleryError

    if not Path(path).is_file():
        raise GalleryError(f"{path}: no such gallery (create one with facekit enroll)")
    return path
