"""``facekit eval verify|identify|detect`` and ``facekit calibrate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ._common import (
    add_detector_options,
    add_model_options,
    add_progress_option,
    command,
    detector,
    print_json,
    progress,
    recognizer,
)


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    evaluate = command(commands, "eval", "measure verification, identification, detection")
    kinds = evaluate.add_subparsers(dest="kind", required=True, metavar="KIND")

    verify = command(kinds, "verify", "pairs file: 10-fold accuracy, ROC, EER, TAR@FAR")
    _pairs_options(verify)
    add_model_options(verify)
    _output_options(verify)
    verify.set_defaults(run=run_verify)

    identify = command(kinds, "identify", "folder per person: rank-k, precision@k")
    identify.add_argument("--root", required=True, help="folder per identity: ROOT/NAME/*.jpg")
    identify.add_argument(
        "--probe-every", type=int, default=5, help="1 of every N images per person probes"
    )
    identify.add_argument(
        "--unknown", type=float, default=0.0, help="share of identities left out (open set)"
    )
    identify.add_argument("--ranks", type=int, nargs="+", default=[1, 5], help="k for rank-k")
    identify.add_argument("--seed", type=int, default=0, help="seed of the split")
    add_model_options(identify)
    _output_options(identify)
    identify.set_defaults(run=run_identify)

    detect = command(kinds, "detect", "box ground truth: AP at IoU 0.5, recall")
    detect.add_argument("--truth", required=True, help="JSON, CSV or WIDER FACE .txt/.mat")
    detect.add_argument("--root", required=True, help="folder the image names are relative to")
    detect.add_argument("--iou", type=float, default=0.5, help="IoU for a match")
    add_detector_options(detect)
    _output_options(detect)
    detect.set_defaults(run=run_detect)

    calibrate = command(
        commands, "calibrate", "thresholds from your own pairs, for FaceRecognizer(thresholds=FILE)"
    )
    _pairs_options(calibrate)
    calibrate.add_argument(
        "--far", type=float, default=1e-3, help="target FAR of the 'same' threshold"
    )
    calibrate.add_argument("--output", required=True, help="thresholds JSON file to write")
    add_model_options(calibrate)
    calibrate.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_progress_option(calibrate)
    calibrate.set_defaults(run=run_calibrate)


def _pairs_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pairs", required=True, help="LFW pairs.txt or CSV img_a,img_b,same")
    parser.add_argument("--root", required=True, help="folder the image names are relative to")
    parser.add_argument(
        "--folds", type=int, default=10, help="folds, for pair files that have none"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of that fold split")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--out", help="folder for report.json, report.md (and embeddings.npz, plots)"
    )
    parser.add_argument(
        "--plots", action="store_true", help="with --out: PNG plots (needs facekit[plot])"
    )
    add_progress_option(parser)


def _emit(args: argparse.Namespace, summary: dict[str, Any], markdown: str) -> None:
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        (folder / "report.md").write_text(markdown, encoding="utf-8")
    if args.json:
        print_json(summary)
    else:
        print(markdown, end="")


def _describe(fr: Any) -> dict[str, Any]:
    return {
        "detector": getattr(fr.detector, "name", type(fr.detector).__name__),
        "embedder": fr.embedder.name,
        "embedder_sha256": fr.embedder.sha256,
    }


def run_verify(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_verification, read_pairs

    fr = recognizer(args)
    pairs = read_pairs(args.pairs, args.root, folds=args.folds, seed=args.seed)
    report, embeddings = evaluate_verification(fr, pairs, progress=progress(args))
    summary = {**_describe(fr), **report.to_dict()}
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        embeddings.save(Path(args.out) / "embeddings.npz")
        if args.plots:
            from ..evaluation.plots import plot_verification

            thresholds = fr.thresholds if _has_thresholds(fr) else None
            plot_verification(report, Path(args.out), thresholds)
    _emit(args, summary, report.markdown())
    return 0


def _has_thresholds(fr: Any) -> bool:
    from ..errors import ConfigError

    try:
        fr.thresholds  # noqa: B018 - raises for embedders without thresholds
    except ConfigError:
        return False
    return True


def run_identify(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_identification

    fr = recognizer(args)
    report, embeddings, _ = evaluate_identification(
        fr,
        args.root,
        probe_every=args.probe_every,
        unknown=args.unknown,
        ranks=tuple(args.ranks),
        seed=args.seed,
        progress=progress(args),
    )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        embeddings.save(Path(args.out) / "embeddings.npz")
    _emit(args, {**_describe(fr), **report.to_dict()}, report.markdown())
    return 0


def run_detect(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate_detection, read_boxes

    found = detector(args)
    report = evaluate_detection(found, read_boxes(args.truth), args.root, iou=args.iou)
    if args.out and args.plots:
        from ..evaluation.plots import plot_detection

        plot_detection(report, Path(args.out))
    name = getattr(found, "name", type(found).__name__)
    _emit(args, {"detector": name, **report.to_dict()}, report.markdown())
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from ..evaluation import calibrate_pairs, evaluate_verification, read_pairs

    fr = recognizer(args)
    pairs = read_pairs(args.pairs, args.root, folds=args.folds, seed=args.seed)
    report, _ = evaluate_verification(fr, pairs, progress=progress(args))
    calibration = calibrate_pairs(
        report,
        embedder=fr.embedder,
        detector=getattr(fr.detector, "name", type(fr.detector).__name__),
        target_far=args.far,
        description=f"pairs {Path(args.pairs).name}:",
    )
    path = calibration.save(args.output)
    if args.json:
        print_json({**calibration.to_dict(), "path": str(path)})
        return 0
    t = calibration.thresholds
    print(f"wrote {path}: likely same >= {t.likely:.4f}, same >= {t.same:.4f}")
    print(f"  {t.protocol}")
    if report.failed:
        print(f"  {len(report.failed)} pairs not scored (see facekit eval verify)")
    return 0
