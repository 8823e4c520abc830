"""``facekit identify``: who is in these photos, or in this video?"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import replacing
from ..errors import ConfigError, FacekitError, StreamError
from ._common import (
    add_index_option,
    add_model_options,
    add_progress_option,
    add_ray_options,
    check_ray_options,
    command,
    open_gallery,
    print_json,
    progress,
    recognizer,
    recognizer_options,
)
from ._images import Outcome, add_draw_options, planned_drawing, report, run_each

if TYPE_CHECKING:
    import numpy as np

    from ..stream import TrackSummary
    from ..types import FaceMatch

_DEFAULT_FPS = 25.0
_NO_IMAGE: Any = None
"""What `_on_ray`'s work gives as the image when nothing is drawn (never looked at)."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    identify = command(commands, "identify", "who is in these photos, or in this video?")
    identify.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help="image files, or folders: their jpg/jpeg/png/webp/bmp files, recursively, sorted",
    )
    identify.add_argument(
        "--gallery",
        required=True,
        help="gallery file (see facekit enroll), or a milvus-lite:///... or milvus://... URI",
    )
    add_index_option(identify)
    add_model_options(identify)
    identify.add_argument("--top-k", type=int, default=1, help="candidates listed per face")
    identify.add_argument(
        "--threshold",
        type=float,
        help="similarity below which a face is unknown (default: the embedder's 'same' threshold)",
    )
    add_draw_options(identify)
    add_ray_options(identify, "detect and embed the images")
    video = identify.add_argument_group("video (instead of images)")
    video.add_argument(
        "--video",
        metavar="FILE",
        help="a video file (or a camera index / rtsp:// URL): one result per face track",
    )
    video.add_argument("--every", type=int, default=1, metavar="N", help="analyse every N-th frame")
    video.add_argument(
        "--out",
        metavar="FILE",
        help="write the annotated video here (.mp4, MPEG-4 part 2); --overwrite replaces it",
    )
    identify.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_progress_option(identify)
    identify.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Identify every face of every image, largest first; an image that fails is reported
    and the others go on (exit code 1). With ``--ray``, the images are detected and embedded
    on Ray (`facekit.distributed.identify`), with the same output. With ``--video``, every
    face track of the video."""
    check_ray_options(args)
    if args.video is not None:
        if args.ray is not None:
            raise ConfigError("--ray identifies image files, not --video")
        return _run_video(args)
    if args.out is not None:
        raise ConfigError("--out writes an annotated video: it needs --video")
    if not args.images:
        raise ConfigError("give image files, or --video FILE")
    args.images = _image_files(args.images)
    from ..draw import draw_matches

    targets = planned_drawing(args)
    if args.ray is not None:
        return report(args, _on_ray(args, targets), _line)
    fr = recognizer(args, gallery=open_gallery(args))

    def work(path: str) -> tuple[np.ndarray, Sequence[FaceMatch]]:
        image = fr.load(path)
        return image, fr.identify(image, top_k=args.top_k, threshold=args.threshold)

    outcomes = run_each(args, targets, work, draw_matches)
    return report(args, outcomes, _line)


def _image_files(inputs: Sequence[str]) -> list[str]:
    """``inputs`` with each folder replaced by its image files (as `facekit enroll` lists
    them: jpg/jpeg/png/webp/bmp in any case, recursively, sorted by path).

    Raises:
        ConfigError: a folder without image files.
    """
    from ..sources import folder_sources

    files: list[str] = []
    for name in inputs:
        if not os.path.isdir(name):
            files.append(name)
            continue
        found = [str(path) for _, path in folder_sources(name)]
        if not found:
            raise ConfigError(f"{name}: no image files in this folder")
        files.extend(found)
    return files


def _on_ray(args: argparse.Namespace, targets: list[Path] | None) -> list[Outcome[FaceMatch]]:
    """``--ray``: `facekit.distributed.identify` of ``args.images``; then per image, in
    order, its matches or its error (reported on stderr), and its annotated copy when
    ``--draw`` asks for one (the image is read again here)."""
    from ..distributed import identify
    from ..draw import draw_matches
    from ..io import load_image

    with open_gallery(args) as gallery:
        found = identify(
            args.images,
            gallery=gallery,
            address=args.ray or None,
            actors=args.actors,
            top_k=args.top_k,
            threshold=args.threshold,
            progress=progress(args),
            **recognizer_options(args),
        )
    results = iter(found)

    def work(path: str) -> tuple[np.ndarray, Sequence[FaceMatch]]:
        matches = next(results)
        if isinstance(matches, FacekitError):
            raise matches
        return (load_image(path) if targets is not None else _NO_IMAGE), matches

    return run_each(args, targets, work, draw_matches)


def _line(m: FaceMatch) -> str:
    x1, y1, x2, y2 = m.face.box
    who = m.identity if m.identity is not None else "unknown"
    others = ", ".join(f"{n} {s:.3f}" for n, s in m.candidates)
    return (
        f"{who} (similarity {m.similarity:.3f}, margin {m.margin:.3f}) at "
        f"({x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}); candidates: {others}"
    )


def _run_video(args: argparse.Namespace) -> int:
    """`facekit.stream.stream` over ``--video``: one line (or JSON object) per track, and
    the annotated video in ``--out``, written to a temporary file renamed when complete."""
    import cv2
    from tqdm.auto import tqdm

    from ..draw import draw_matches
    from ..stream import TrackLog, stream

    if args.images:
        raise ConfigError("give image files or --video, not both")
    if args.draw:
        raise ConfigError("--draw is for images; with --video use --out FILE")
    if args.every < 1:
        raise ConfigError(f"--every must be at least 1, got {args.every}")
    source: int | str = int(args.video) if args.video.isdigit() else args.video
    out = Path(args.out) if args.out is not None else None
    if out is not None and os.path.lexists(out) and not args.overwrite:
        raise ConfigError(f"{out} already exists: pass --overwrite to replace it")
    fr = recognizer(args, gallery=open_gallery(args))
    frames = stream(fr, source, every=args.every, threshold=args.threshold, top_k=args.top_k)
    fps, total = _rate_and_length(source)
    log = TrackLog()
    count = 0
    # The video is written to a temporary file (`replacing`), made at the first frame (no
    # frame: no file) and renamed to --out once the writer is released after the last one.
    with (
        ExitStack() as video,
        tqdm(total=total, unit="frame", disable=not progress(args), file=sys.stderr) as bar,
    ):
        writer: Any = None
        for frame in frames:
            log.add(frame)
            count += 1
            bar.update()
            if out is None:
                continue
            if writer is None:
                partial = video.enter_context(replacing(out))
                writer = _writer(partial, fps, frame.image.shape[1], frame.image.shape[0])
                video.callback(writer.release)
            drawn = draw_matches(frame.image, [f.match for f in frame.faces if f.match])
            writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    _report_tracks(args, log.summaries(), count, out if count else None)
    return 0


def _rate_and_length(source: int | str) -> tuple[float, int | None]:
    """The frame rate written to ``--out`` (the source's, else 25) and the frame count for
    the progress bar (``None`` when unknown: cameras, streams)."""
    import cv2

    if isinstance(source, int) or "://" in source:
        return _DEFAULT_FPS, None
    capture = cv2.VideoCapture(source)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS))
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return (fps if 0 < fps < 1000 else _DEFAULT_FPS), (frames if frames > 0 else None)


def _writer(path: Path, fps: float, width: int, height: int) -> Any:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise StreamError(f"{path}: cannot write an MPEG-4 video there (use a .mp4 name)")
    return writer


def _report_tracks(
    args: argparse.Namespace, tracks: Sequence[TrackSummary], frames: int, out: Path | None
) -> None:
    if args.json:
        result: dict[str, Any] = {
            "video": args.video,
            "frames": frames,
            "tracks": [track.to_dict() for track in tracks],
        }
        if out is not None:
            result["drawn"] = str(out)
        print_json(result)
        return
    drawn = f", drawn to {out}" if out is not None else ""
    print(f"{args.video}: {frames} frame(s), {len(tracks)} track(s){drawn}")
    for t in tracks:
        who = t.identity if t.identity is not None else "unknown"
        best = f"{t.best_similarity:.3f}" if t.best_similarity is not None else "-"
        print(
            f"  track {t.track_id}: {who} (best similarity {best}) frames {t.first_frame}-"
            f"{t.last_frame} ({t.first_time:.2f}-{t.last_time:.2f} s), embedded {t.embeddings}x"
        )
