"""Throughput of facekit against insightface 2.1: images/s end to end on the same photos and
the same two ONNX files (SCRFD-2.5G ``det_2.5g.onnx``, MobileFaceNet ``mobilefacenet_128d.onnx``).

Run it in the comparison environment (insightface is never part of facekit's install)::

    python3 -m venv .venv-compare && .venv-compare/bin/pip install -e . \\
        -r benchmarks/requirements-compare.txt
    .venv-compare/bin/python benchmarks/bench_throughput.py --shared ../shared

insightface's model download is not needed: its ``FaceAnalysis`` is pointed at a folder
holding links to the two shared files.

Inputs (``--min-inputs``, default 50, distinct files): every colour image in ``data/``
(``openface``, ``facenet_pytorch``, ``insightface_samples``, ``mtcnn``: 20 photos and 11
aligned crops; ORL is grayscale and left out), then half-size copies of the photos (area
resampling, JPEG quality 95, written to a temporary folder) until there are enough. Both
libraries get the file paths: decoding is part of the time.

Contenders, in one process, alternating within every round with the order rotated
(``benchmarks/_rounds.py``), after one untimed warm-up round:

- all faces of every image: facekit ``FaceRecognizer(detector_model="scrfd_2.5g",
  embedder_model="mobilefacenet_128d").faces_batch(paths)`` with its defaults
  (flip-averaged embeddings), the same with ``embedder_options={"flip": False}``, with
  ``workers=0`` (no lanes: every stage in the caller's thread) and with
  ``detector_options={"trim": False}`` (every image in a whole 640x640 input), and insightface
  ``FaceAnalysis`` (detection + recognition, ``det_size=(640, 640)``, ``det_thresh=0.5``)
  ``.get(cv2.imread(path))`` per path, which embeds every face once;
- one face per image: facekit ``embed_each(paths)`` (largest face; images without a face
  get a second detection pass for faces filling the image) and insightface's detector,
  largest box, ``ArcFaceONNX.get`` on it;
- floor: bare ``InferenceSession.run`` of the two files (ORT default options, batch 1 as
  the files declare), on inputs prepared in advance (facekit's letterboxed 640x640
  detector blobs; the aligned crops of the faces facekit found, and their mirrors for the
  flip-on floor), all detector runs first, then all embedder runs: network time only;
- stream (only when ``facekit.stream`` exists): frames/s of ``FaceRecognizer.stream`` on
  a video made here with ``cv2.VideoWriter`` (a shared photo panned and zoomed, then a cut
  to another person), against a plain per-frame loop of ``faces`` and of insightface's
  ``get`` on the same decoded frames.

Ratios are medians over rounds of the per-round ratio facekit / insightface in images/s,
with their smallest and largest value. Nothing is asserted. Progress goes to stderr, the
Markdown report to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from _rounds import alternate, median_ratio

import facekit
import facekit.pipeline
from facekit import FaceRecognizer
from facekit.detectors._common import letterbox  # the exact letterbox facekit applies

REPO = Path(__file__).resolve().parents[1]
DETECTOR_FILE = "scrfd/det_2.5g.onnx"
EMBEDDER_FILE = "mobilefacenet_onnx/mobilefacenet_128d.onnx"
FOLDERS = ("openface", "facenet_pytorch", "insightface_samples", "mtcnn")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# The insightface_samples photos are whole group photos; the `aligned` folders hold crops.
CROP_FOLDERS = ("aligned", "test_images_aligned")


def colour_images(data: Path) -> tuple[list[Path], list[Path]]:
    """The colour photos and the aligned colour crops under ``data``, sorted."""
    photos, crops = [], []
    for folder in FOLDERS:
        for path in sorted((data / folder).rglob("*")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            (crops if set(path.relative_to(data).parts) & set(CROP_FOLDERS) else photos).append(
                path
            )
    return photos, crops


def make_inputs(data: Path, folder: Path, minimum: int) -> tuple[list[Path], int]:
    """At least ``minimum`` distinct files: every colour image, then resized photo copies
    (half size, then a quarter, ...) written to ``folder``. Returns the paths and how
    many are copies."""
    photos, crops = colour_images(data)
    inputs = photos + crops
    copies = 0
    scale = 0.5
    while len(inputs) < minimum:
        for photo in photos:
            if len(inputs) >= minimum:
                break
            image = cv2.imread(str(photo))
            height, width = image.shape[:2]
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            target = folder / f"{photo.parent.name}_{photo.stem}_x{scale:g}.jpg"
            cv2.imwrite(str(target), small, [cv2.IMWRITE_JPEG_QUALITY, 95])
            inputs.append(target)
            copies += 1
        scale /= 2
    return inputs, copies


def insightface_app(models: Path, folder: Path) -> Any:
    """insightface's ``FaceAnalysis`` on a folder of links to the two shared files."""
    from insightface.app import FaceAnalysis

    for name in (DETECTOR_FILE, EMBEDDER_FILE):
        link = folder / Path(name).name
        if not link.exists():
            link.symlink_to(models / name)
    app = FaceAnalysis(name=str(folder), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_thresh=0.5, det_size=(640, 640))
    if set(app.models) != {"detection", "recognition"}:
        raise SystemExit(f"insightface loaded {sorted(app.models)}, not detection + recognition")
    return app


def insightface_all(app: Any, paths: Sequence[Path]) -> int:
    """``FaceAnalysis.get`` on every image, decode included; the number of faces."""
    return sum(len(app.get(cv2.imread(str(path)))) for path in paths)


def insightface_largest(app: Any, paths: Sequence[Path]) -> int:
    """insightface's detector, the largest box, one embedding; the number embedded."""
    from insightface.app.common import Face

    detector, recogniser = app.models["detection"], app.models["recognition"]
    embedded = 0
    for path in paths:
        bgr = cv2.imread(str(path))
        boxes, points = detector.detect(bgr, max_num=0, metric="default")
        if len(boxes) == 0:
            continue
        i = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        face = Face(bbox=boxes[i, :4], kps=points[i], det_score=boxes[i, 4])
        recogniser.get(bgr, face)
        embedded += 1
    return embedded


def facekit_all(recognizer: FaceRecognizer, paths: Sequence[Path]) -> int:
    """``faces_batch`` over all paths; the number of faces."""
    return sum(len(faces) for faces in recognizer.faces_batch(paths))


def facekit_one(recognizer: FaceRecognizer, paths: Sequence[Path]) -> int:
    """``embed_each`` over all paths; the number of images with an embedding."""
    return sum(not isinstance(r, Exception) for r in recognizer.embed_each(paths))


def bare_session(path: Path) -> Any:
    """A CPU session with ONNX Runtime's default options (as insightface opens its own)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def nchw(pixels: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB to a ``1x3xHxW`` float32 blob, (x - 127.5) / 128."""
    blob = (pixels[None].astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


def floor_work(
    recognizer: FaceRecognizer, paths: Sequence[Path], models: Path
) -> tuple[Callable[[], None], Callable[[], None], int]:
    """The bare network runs of the flip-on and flip-off work, on blobs made here, and the
    number of faces (the faces facekit finds)."""
    detector = bare_session(models / DETECTOR_FILE)
    embedder = bare_session(models / EMBEDDER_FILE)
    det_name, emb_name = detector.get_inputs()[0].name, embedder.get_inputs()[0].name
    size = recognizer.detector.input_size  # type: ignore[attr-defined]
    det_blobs, crops = [], []
    for path in paths:
        array = recognizer.load(path)
        det_blobs.append(nchw(letterbox(array, size)[0]))
    for faces in recognizer.faces_batch(paths):
        crops.extend(face.crop for face in faces)
    plain = [nchw(crop) for crop in crops]
    mirrored = [nchw(crop[:, ::-1]) for crop in crops]

    def run(flip: bool) -> None:
        for blob in det_blobs:
            detector.run(None, {det_name: blob})
        for blob in plain + (mirrored if flip else []):
            embedder.run(None, {emb_name: blob})

    return functools.partial(run, True), functools.partial(run, False), len(crops)


def sessions_in(root: object, depth: int = 4) -> list[Any]:
    """The ONNX Runtime sessions reachable from ``root``'s attributes (private included)."""
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: object, level: int) -> None:
        if id(obj) in seen or level > depth:
            return
        seen.add(id(obj))
        if isinstance(obj, ort.InferenceSession):
            found.append(obj)
            return
        if isinstance(obj, (list, tuple, set)):
            children: list[object] = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
            names = list(getattr(obj, "__dict__", {}))
            for klass in type(obj).__mro__:
                names += [s for s in getattr(klass, "__slots__", ()) if isinstance(s, str)]
            children = [getattr(obj, name, None) for name in names]
        else:
            return
        for child in children:
            if child is not None and not isinstance(child, (str, bytes, int, float, np.ndarray)):
                walk(child, level + 1)

    walk(root, 0)
    return found


def thread_settings(label: str, sessions: Sequence[Any]) -> str:
    """One line per session: model input shape, intra/inter-op threads, spinning."""
    lines = []
    for session in sessions:
        options = session.get_session_options()
        try:
            spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        except Exception:  # entry not set: ORT's default (spinning on)
            spinning = ""
        shape = session.get_inputs()[0].shape
        lines.append(
            f"- {label}: input {shape}: intra_op_num_threads = {options.intra_op_num_threads} "
            f"(0 = ORT default: one per physical core), inter_op_num_threads = "
            f"{options.inter_op_num_threads}, intra-op spinning "
            f"{'off' if spinning == '0' else 'on (default)'}"
        )
    return "\n".join(lines) if lines else f"- {label}: no session found"


def source_state() -> str:
    """The commit and the files of src/ changed since it (the code measured)."""
    imported = Path(facekit.__file__).resolve().parents[1]
    if imported != REPO / "src":
        return f"imported from {imported}, not from this checkout"
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    files = [line[3:] for line in changed if line.strip()]
    return f"HEAD {head}" + (f" plus uncommitted changes to {', '.join(files)}" if files else "")


def machine() -> str:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return (
        f"{platform.machine()} ({model or 'unknown CPU'}), os.cpu_count() = {os.cpu_count()}, "
        f"{platform.platform()}, Python {platform.python_version()}"
        + (f"; load average at the start {load[0]:.2f}" if load else "")
    )


def make_video(data: Path, path: Path, frames: int) -> None:
    """A real encoded video (mp4v, 640x360, 25 fps): lennon-1 panned and zoomed over the
    first 2/3 of the frames, then a cut to clapton-1."""
    first = cv2.imread(str(data / "openface/lennon-1.jpg"))
    second = cv2.imread(str(data / "openface/clapton-1.jpg"))
    width, height = 640, 360
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    if not writer.isOpened():
        raise SystemExit("cv2.VideoWriter cannot write mp4v here")
    cut = 2 * frames // 3
    for index in range(frames):
        photo, t = (first, index / cut) if index < cut else (second, (index - cut) / frames)
        zoom = 1.0 + 0.5 * t
        h, w = photo.shape[:2]
        scale = zoom * max(width / w, height / h)
        big = cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        x = round((big.shape[1] - width) * t)
        y = round((big.shape[0] - height) * 0.5)
        writer.write(np.ascontiguousarray(big[y : y + height, x : x + width]))
    writer.release()


def video_frames(path: Path) -> Iterator[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield frame
    finally:
        capture.release()


def stream_rows(
    recognizer: FaceRecognizer, app: Any, data: Path, folder: Path, frames: int, rounds: int
) -> tuple[list[str], str]:
    """Frames/s of facekit's stream and of plain per-frame loops on one video."""
    from facekit import stream as stream_module

    video = folder / "walk.mp4"
    make_video(data, video, frames)

    def facekit_stream() -> int:
        if hasattr(recognizer, "stream"):
            return sum(1 for _ in recognizer.stream(video))
        return sum(1 for _ in stream_module.stream(recognizer, video))

    def facekit_loop() -> int:
        frames = 0
        for frame in video_frames(video):
            recognizer.faces(frame, channel_order="bgr")
            frames += 1
        return frames

    def insightface_loop() -> int:
        frames = 0
        for frame in video_frames(video):
            app.get(frame)
            frames += 1
        return frames

    contenders = {
        "facekit stream (defaults)": facekit_stream,
        "facekit `faces` per frame": facekit_loop,
        "insightface `get` per frame": insightface_loop,
    }
    counts = {name: work() for name, work in contenders.items()}  # warm-up, and frame counts
    times = alternate(contenders, rounds)
    lines = ["| contender | frames | frames/s (median) | frames/s range |", "|---|---:|---:|---:|"]
    for name, seconds in times.items():
        rates = [counts[name] / s for s in seconds]
        lines.append(
            f"| {name} | {counts[name]} | {statistics.median(rates):.1f} | "
            f"{min(rates):.1f}–{max(rates):.1f} |"
        )
    return lines, f"{frames} frames of 640x360 mp4v ({video.stat().st_size // 1024} KiB)"


def grid_report(
    app: Any,
    paths: Sequence[Path],
    common: dict[str, Any],
    rounds: int,
    lanes: Sequence[int],
    batches: Sequence[int],
) -> str:
    """images/s of facekit (flip on, all faces) for each number of lanes and batch size,
    as a ratio to insightface's, alternating with it (the defaults are chosen from this)."""
    contenders: dict[str, Callable[[], int]] = {
        "insightface 2.1": functools.partial(insightface_all, app, paths)
    }
    for workers in lanes:
        recognizer = FaceRecognizer(
            detector_model="scrfd_2.5g",
            embedder_model="mobilefacenet_128d",
            workers=workers,
            **common,
        )
        for batch in batches:
            engine = recognizer.pipeline(batch_size=batch)
            contenders[f"{workers},{batch}"] = functools.partial(
                lambda e: sum(len(r.faces) for r in e.run(paths)), engine
            )
    for work in contenders.values():
        work()
    times = alternate(contenders, rounds)
    lines = [
        f"facekit flip on, images/s ÷ insightface's (median over {rounds} rounds; "
        f"sessions get cores // workers threads, {os.cpu_count()} cores)\n",
        f"| workers \\ batch | {' | '.join(map(str, batches))} |",
        "|---|" + "---:|" * len(batches),
    ]
    for workers in lanes:
        cells = [
            f"{median_ratio(times, 'insightface 2.1', f'{workers},{batch}'):.2f}"
            for batch in batches
        ]
        lines.append(f"| {workers} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("FACEKIT_SHARED", REPO.parent / "shared")),
        help="folder holding models/ and data/ (default: $FACEKIT_SHARED or ../shared)",
    )
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--min-inputs", type=int, default=50, help="distinct inputs (50)")
    parser.add_argument("--video-frames", type=int, default=150, help="stream video length")
    parser.add_argument("--stream-rounds", type=int, default=3, help="stream rounds (3)")
    parser.add_argument("--skip-stream", action="store_true", help="leave the stream rows out")
    parser.add_argument(
        "--grid",
        action="store_true",
        help="instead of the main table: facekit (flip on) for each --grid-workers x "
        "--grid-batches against insightface",
    )
    parser.add_argument("--grid-workers", default="0,1,2,3,4", help="lanes tried (0,1,2,3,4)")
    parser.add_argument("--grid-batches", default="1,4,16", help="batch sizes tried (1,4,16)")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.min_inputs < 1:
        parser.error("--rounds and --min-inputs must be >= 1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # skimage, inside insightface
    import insightface

    started = time.perf_counter()
    start_state = machine()
    models, data = args.shared.resolve() / "models", args.shared.resolve() / "data"
    for needed in (models / DETECTOR_FILE, models / EMBEDDER_FILE, data):
        if not needed.exists():
            parser.error(f"{needed} is missing (pass --shared)")
    folder = Path(tempfile.mkdtemp(prefix="bench_throughput_"))
    paths, copies = make_inputs(data, folder, args.min_inputs)
    links = folder / "insightface_models"
    links.mkdir()
    app = insightface_app(models, links)
    common = {"model_dir": models, "download": False}
    flip_on = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", **common
    )
    flip_off = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        embedder_options={"flip": False},
        **common,
    )
    sequential = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", workers=0, **common
    )
    untrimmed = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        detector_options={"trim": False},
        **common,
    )
    if args.grid:
        print(f"{len(paths)} inputs; grid ...", file=sys.stderr)
        workers = [int(v) for v in args.grid_workers.split(",")]
        batches = [int(v) for v in args.grid_batches.split(",")]
        print(grid_report(app, paths, common, args.rounds, workers, batches))
        return 0
    floor_on, floor_off, floor_faces = floor_work(flip_off, paths, models)

    contenders: dict[str, Callable[[], int]] = {
        "facekit, flip on (default)": functools.partial(facekit_all, flip_on, paths),
        "insightface 2.1": functools.partial(insightface_all, app, paths),
        "facekit, flip off": functools.partial(facekit_all, flip_off, paths),
        "facekit, flip on, `workers=0` (no lanes)": functools.partial(
            facekit_all, sequential, paths
        ),
        "facekit, flip on, `trim=False` (640×640 inputs)": functools.partial(
            facekit_all, untrimmed, paths
        ),
        "facekit `embed_each`, flip on": functools.partial(facekit_one, flip_on, paths),
        "insightface, largest face": functools.partial(insightface_largest, app, paths),
        "floor: bare `session.run`, flip on work": floor_on,
        "floor: bare `session.run`, flip off work": floor_off,
    }
    print(f"{len(paths)} inputs; warm-up round ...", file=sys.stderr)
    counts = {name: work() for name, work in contenders.items()}
    counts["floor: bare `session.run`, flip on work"] = floor_faces
    counts["floor: bare `session.run`, flip off work"] = floor_faces
    print(f"{args.rounds} timed rounds ...", file=sys.stderr)
    times = alternate(contenders, args.rounds)

    def ratio(name: str, baseline: str) -> tuple[float, float, float]:
        """Median, min, max over rounds of name's images/s / baseline's."""
        values = [b / a for a, b in zip(times[name], times[baseline], strict=True)]
        return statistics.median(values), min(values), max(values)

    stream_lines: list[str] = []
    stream_note = ""
    has_stream = importlib.util.find_spec("facekit.stream") is not None
    if has_stream and not args.skip_stream:
        print("stream ...", file=sys.stderr)
        stream_lines, stream_note = stream_rows(
            flip_on, app, data, folder, args.video_frames, args.stream_rounds
        )

    n = len(paths)
    print("## Throughput vs insightface\n")
    print(f"- Machine: {start_state}")
    print(
        f"- Versions: facekit {facekit.__version__} ({source_state()}), insightface "
        f"{insightface.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}, "
        f"OpenCV {cv2.__version__}; `onnx` "
        f"{'installed' if importlib.util.find_spec('onnx') else 'not installed'}"
    )
    print(
        f"- Inputs: {n} files, {n - copies} colour images of shared/data and {copies} "
        "half-size JPEG copies of its photos; decode included on both sides"
    )
    print(f"- {args.rounds} rounds after a warm-up round, contenders alternating, order rotated")
    print("- ONNX Runtime sessions:")
    print(thread_settings("facekit (flip on)", sessions_in(flip_on)))
    print(
        f"- facekit lanes: workers = {flip_on.workers}, batch {facekit.pipeline.DEFAULT_BATCH_SIZE}"
    )
    print(thread_settings("insightface", [m.session for m in app.models.values()]))
    print("- floor: two sessions with ORT's default options (as insightface's)")
    print(
        "\n| contender | faces embedded | s per run (median) | images/s | "
        "images/s ÷ insightface's (median, min–max over rounds) |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in contenders:
        baseline = "insightface, largest face" if "embed_each" in name else "insightface 2.1"
        if name.startswith("insightface"):
            shown = "1"
        else:
            middle, low, high = ratio(name, baseline)
            shown = f"**{middle:.2f}** ({low:.2f}–{high:.2f})"
        seconds = statistics.median(times[name])
        print(f"| {name} | {counts[name]} | {seconds:.2f} | {n / seconds:.1f} | {shown} |")
    print(
        "\nThe `embed_each` row embeds one face per image and is compared with insightface's "
        "largest face; every other row embeds every face (`faces_batch`, `FaceAnalysis.get`) "
        "and is compared with `insightface 2.1`."
    )
    if stream_lines:
        print(f"\nStream, {stream_note}, {args.stream_rounds} rounds:\n")
        print("\n".join(stream_lines))
    else:
        print(
            "\nStream: "
            + ("skipped (--skip-stream)" if has_stream else "no `facekit.stream` in this code")
        )
    print(f"\nTotal benchmark time: {time.perf_counter() - started:.0f} s")
    with contextlib.suppress(OSError):
        for path in sorted(folder.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
