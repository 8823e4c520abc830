"""Per-stage time of facekit's pipeline against bare ONNX Runtime on the same inputs.

Stages: decode (``facekit.load_image`` on the file bytes), detect (SCRFD-2.5G, ``det_2.5g``),
align (``SimilarityAligner``), embed (ArcFace wrapper around ``mobilefacenet_128d``,
flip-averaged) and the whole pipeline (``FaceRecognizer.faces`` on the file bytes). Each is
timed side by side with a baseline in the same process on the same inputs:

- detect / embed: bare ``onnxruntime.InferenceSession.run`` of the same model file, with a
  session opened with the same options as facekit's (``facekit._onnx.open_session``) and
  inputs prepared in advance (the letterboxed 640x640 blob; the normalised aligned crops,
  plain and mirrored, so the work is equal: 2 runs per face, as the model's batch is 1);
- decode: bare Pillow (``Image.open(...).convert("RGB")`` and ``np.asarray``);
- align: bare ``cv2.warpAffine`` with the similarity transforms computed in advance;
- pipeline: the detector run plus 2 embedder runs per face, network time only.

The ratio facekit / bare is the cost of facekit's own pre- and post-processing. Detection and
embedding are also timed at batch 16 (``detect_batch`` on 16 images, ``embed`` on 16 crops).
Times are medians over ``--repeats`` after ``--warmup`` rounds; facekit and baseline
alternate within each round, each call after ``--pause`` seconds idle (see
:func:`time_pair`). Both use ONNX Runtime's default threading. Nothing is asserted about
the times. Usage::

    python benchmarks/bench_pipeline.py --shared ../shared [--repeats 7] [--pause 0.1]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from PIL import Image

import facekit
from facekit import FaceRecognizer
from facekit.aligners import SimilarityAligner
from facekit.detectors import SCRFD
from facekit.detectors._common import letterbox  # the exact letterbox facekit applies
from facekit.embedders import ArcFace
from facekit.zoo import resolve

REPO = Path(__file__).resolve().parents[1]
DETECTOR = "scrfd_2.5g"
EMBEDDER = "mobilefacenet_128d"
BATCH = 16
IMAGES = (
    "insightface_samples/t1.jpg",
    "openface/adams.jpg",
    "openface/carell.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/lennon-1.jpg",
    "openface/lennon-2.jpg",
    "openface/longoria-cooper.jpg",
)

NETWORK_STAGES = ("detect", "embed")  # the stages whose bare baseline is a network run

Work = Callable[[], object]


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the result table; times in ms per ``unit``.

    ``ratio`` is the median over rounds of facekit / bare timed in the same round, and
    ``ratio_range`` its smallest and largest value. Being paired, the ratio is not biased
    by the machine getting faster or slower between rounds.
    """

    stage: str
    batch: int | str
    unit: str
    facekit_ms: float
    bare_ms: float
    ratio: float
    ratio_range: tuple[float, float] | None


def bare_session(path: Path) -> Any:
    """A bare CPU session as a user would open one: default ``SessionOptions`` (only the log
    level changed, which does not affect speed). facekit's own sessions differ in one
    setting, intra-op thread spinning off (see ``facekit._onnx.open_session``)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path), sess_options=options, providers=["CPUExecutionProvider"], provider_options=[{}]
    )


def time_pair(
    facekit_work: Work, bare_work: Work, repeats: int, warmup: int, pause: float
) -> tuple[list[float], list[float]]:
    """Seconds per round of each callable; they alternate, swapping order every round.

    Each call starts after ``pause`` seconds of idling: after a run, ONNX Runtime's worker
    threads keep spinning (about 50 ms on the reference machine) and, with few cores, would
    slow down whichever session runs next. The pause gives each call a quiet machine, so
    facekit and the baseline do not tax each other; switches between facekit's own two
    sessions inside one call (the pipeline total) are still measured.
    """
    facekit_times: list[float] = []
    bare_times: list[float] = []
    for round_ in range(warmup + repeats):
        order = [(facekit_work, facekit_times), (bare_work, bare_times)]
        if round_ % 2:
            order.reverse()
        for work, times in order:
            time.sleep(pause)
            start = time.perf_counter()
            work()
            elapsed = time.perf_counter() - start
            if round_ >= warmup:
                times.append(elapsed)
    return facekit_times, bare_times


def row(
    stage: str, batch: int, unit: str, count: int, pair: tuple[Work, Work], args: argparse.Namespace
) -> Row:
    """Time ``pair``, per image or face (``count`` of them per call); progress to stderr."""
    facekit_s, bare_s = time_pair(*pair, repeats=args.repeats, warmup=args.warmup, pause=args.pause)
    ratios = [f / b for f, b in zip(facekit_s, bare_s, strict=True)]
    result = Row(
        stage,
        batch,
        unit,
        1000 * statistics.median(facekit_s) / count,
        1000 * statistics.median(bare_s) / count,
        statistics.median(ratios),
        (min(ratios), max(ratios)),
    )
    print(
        f"  {stage}, batch {batch}: {result.facekit_ms:.2f} vs {result.bare_ms:.2f} ms",
        file=sys.stderr,
    )
    return result


def stage_sum(rows: Sequence[Row], faces_per_image: float) -> Row:
    """The batch-1 stage times added up per image, to compare with the pipeline total."""
    per_image = {"image": 1.0, "face": faces_per_image}
    stages = [r for r in rows if r.batch == 1]
    facekit_ms = sum(r.facekit_ms * per_image[r.unit] for r in stages)
    bare_ms = sum(r.bare_ms * per_image[r.unit] for r in stages if r.stage in NETWORK_STAGES)
    return Row(
        "sum of the batch-1 stages", "—", "image", facekit_ms, bare_ms, facekit_ms / bare_ms, None
    )


def pil_decode(data: bytes) -> np.ndarray:
    """Bare decode: what load_image does for an RGB JPEG, without checks or EXIF rotation."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def detector_blob(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The ``1x3xHxW`` float32 input SCRFD gets for ``image``, made once in advance."""
    canvas, _ = letterbox(image, size)
    blob = (canvas[None].astype(np.float32) - 127.5) / 128.0
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


def embedder_blobs(crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``1x3x112x112`` inputs of a crop and of its mirror (MobileFaceNet: (x-127.5)/128)."""
    blobs: list[np.ndarray] = []
    for pixels in (crop, crop[:, ::-1]):
        blob = (pixels[None].astype(np.float32) - 127.5) / 128.0
        blobs.append(np.ascontiguousarray(blob.transpose(0, 3, 1, 2)))
    return blobs[0], blobs[1]


def machine() -> list[str]:
    """Lines describing the machine and the library versions."""
    cpu = platform.processor() or platform.machine()
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return [
        f"- CPU: platform.processor() = {platform.processor()!r} ({cpu}"
        + (f", {model}" if model else "")
        + f"); os.cpu_count() = {os.cpu_count()}"
        + (f", usable by this process: {usable}" if usable is not None else ""),
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}; "
        "both on CPUExecutionProvider; bare: default session options, "
        "facekit: thread spinning off), "
        f"numpy {np.__version__}, OpenCV {cv2.__version__}, facekit {facekit.__version__}",
    ]


def markdown(rows: Sequence[Row]) -> str:
    """The result table: ms per image or face, and the paired ratio with its range."""
    lines = [
        "| stage | batch | unit | facekit (ms) | bare (ms) | facekit / bare | ratio range |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        spread = f"{r.ratio_range[0]:.2f}–{r.ratio_range[1]:.2f}" if r.ratio_range else "—"
        lines.append(
            f"| {r.stage} | {r.batch} | per {r.unit} | {r.facekit_ms:.2f} | {r.bare_ms:.2f} "
            f"| {r.ratio:.2f} | {spread} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("FACEKIT_SHARED", REPO.parent / "shared")),
        help="folder holding models/ and data/ (default: $FACEKIT_SHARED or ../shared)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (median; default 7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.1,
        help="idle seconds before each timed call, so ONNX Runtime threads of the previous "
        "call stop spinning (default 0.1; 0 measures back to back)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.pause < 0:
        parser.error("--repeats must be >= 1, --warmup and --pause >= 0")
    models, data = args.shared / "models", args.shared / "data"
    for needed in [models, *(data / name for name in IMAGES)]:
        if not needed.exists():
            parser.error(f"{needed} is missing (pass --shared)")
    started = time.perf_counter()

    detector = SCRFD(DETECTOR, model_dir=models, download=False)
    embedder = ArcFace(EMBEDDER, model_dir=models, download=False)
    aligner = SimilarityAligner(embedder.template)
    recognizer = FaceRecognizer(detector, embedder, aligner=aligner)
    bare_detector = bare_session(resolve(DETECTOR, model_dir=models, download=False).path)
    bare_embedder = bare_session(resolve(EMBEDDER, model_dir=models, download=False).path)
    det_input = bare_detector.get_inputs()[0].name
    emb_input = bare_embedder.get_inputs()[0].name

    # Inputs, all prepared before any timing.
    encoded = [(data / name).read_bytes() for name in IMAGES]
    arrays = [facekit.load_image(blob) for blob in encoded]
    detections = [detector.detect(array) for array in arrays]
    landmarks = [np.stack([d.landmarks for d in found]) for found in detections]
    matrices = [aligner.transforms(points) for points in landmarks]
    crops_per_image = [aligner.align(a, p) for a, p in zip(arrays, landmarks, strict=True)]
    det_blobs = [detector_blob(array, detector.input_size) for array in arrays]
    emb_blobs = [[embedder_blobs(crop) for crop in crops] for crops in crops_per_image]
    all_crops = np.concatenate(crops_per_image)
    crops16 = all_crops[np.arange(BATCH) % len(all_crops)]
    blobs16 = [embedder_blobs(crop) for crop in crops16]
    arrays16 = [arrays[i % len(arrays)] for i in range(BATCH)]
    det_blobs16 = [det_blobs[i % len(arrays)] for i in range(BATCH)]
    n_images, n_faces = len(arrays), len(all_crops)

    # The baseline computes the same thing: check once (correctness, not speed).
    raw = (
        np.concatenate(
            [bare_embedder.run(None, {emb_input: b})[0] for pair in blobs16 for b in pair]
        )
        .reshape(BATCH, 2, -1)
        .sum(axis=1)
    )
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    difference = float(np.abs(raw - embedder.embed(crops16)).max())
    if difference > 1e-4:
        raise SystemExit(f"baseline embeddings differ from facekit's by {difference}")

    def run_detector(blobs: Sequence[np.ndarray]) -> None:
        for blob in blobs:
            bare_detector.run(None, {det_input: blob})

    def run_embedder(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
        for plain, mirrored in pairs:
            bare_embedder.run(None, {emb_input: plain})
            bare_embedder.run(None, {emb_input: mirrored})

    def warp_all() -> None:
        width, height = aligner.size
        for array, per_image in zip(arrays, matrices, strict=True):
            for matrix in per_image:
                cv2.warpAffine(array, matrix, (width, height), borderValue=0.0)

    def bare_pipeline() -> None:
        for blob, pairs in zip(det_blobs, emb_blobs, strict=True):
            bare_detector.run(None, {det_input: blob})
            run_embedder(pairs)

    print(
        f"{n_images} images, {n_faces} faces; {args.repeats} repeats after {args.warmup} "
        f"warm-up round(s), {args.pause:g} s pause before each call",
        file=sys.stderr,
    )
    rows = [
        row(
            "decode",
            1,
            "image",
            n_images,
            (
                lambda: [facekit.load_image(blob) for blob in encoded],
                lambda: [pil_decode(blob) for blob in encoded],
            ),
            args,
        ),
        row(
            "detect",
            1,
            "image",
            n_images,
            (
                lambda: [detector.detect(array) for array in arrays],
                lambda: run_detector(det_blobs),
            ),
            args,
        ),
        row(
            "detect",
            BATCH,
            "image",
            BATCH,
            (
                lambda: detector.detect_batch(arrays16),
                lambda: run_detector(det_blobs16),
            ),
            args,
        ),
        row(
            "align",
            1,
            "face",
            n_faces,
            (
                lambda: [aligner.align(a, p) for a, p in zip(arrays, landmarks, strict=True)],
                warp_all,
            ),
            args,
        ),
        row(
            "embed",
            1,
            "face",
            BATCH,
            (
                lambda: [embedder.embed(crop) for crop in crops16],
                lambda: run_embedder(blobs16),
            ),
            args,
        ),
        row(
            "embed",
            BATCH,
            "face",
            BATCH,
            (
                lambda: embedder.embed(crops16),
                lambda: run_embedder(blobs16),
            ),
            args,
        ),
    ]
    rows.append(stage_sum(rows, n_faces / n_images))
    rows.append(
        row(
            "pipeline total",
            1,
            "image",
            n_images,
            (
                lambda: [recognizer.faces(blob) for blob in encoded],
                bare_pipeline,
            ),
            args,
        )
    )

    print("## Machine\n")
    print("\n".join(machine()))
    print(
        f"\n## Results\n\nDetector {DETECTOR} (`det_2.5g.onnx`, 640x640), embedder "
        f"{EMBEDDER} (flip-averaged); {n_images} images with {n_faces} faces "
        f"({', '.join(Path(n).name for n in IMAGES)}); embed rows on {BATCH} of those crops. "
        f"Median of {args.repeats} rounds after {args.warmup} warm-up round(s); facekit and bare "
        f"alternate, each call after {args.pause:g} s idle.\n\n"
        "- facekit: decode = `facekit.load_image(bytes)`; detect = `SCRFD.detect` per image "
        f"(batch 1) or `detect_batch` of {BATCH} images; align = `SimilarityAligner.align`; "
        f"embed = `ArcFace.embed` of 1 crop or of {BATCH} crops; pipeline total = "
        "`FaceRecognizer.faces(bytes)`.\n"
        "- bare: decode = Pillow open + convert + `np.asarray`; detect = "
        "`InferenceSession.run` on the letterboxed blob made in advance; align = "
        "`cv2.warpAffine` with transforms computed in advance; embed = 2 `run`s per face "
        "(crop and mirror, normalised in advance); pipeline total = detector run + 2 embedder "
        "runs per face (network time only).\n"
        "- sum of the batch-1 stages: the rows above added per image "
        f"({n_faces / n_images:.2f} faces per image); bare = detect + embed only.\n"
        "- facekit / bare: median of the per-round ratios (paired, so it can differ from the "
        "ratio of the two medians); ratio range: smallest and largest per-round ratio.\n"
    )
    print(markdown(rows))
    print(f"\nTotal benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
