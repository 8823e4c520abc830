"""MTCNN (torch) images/s at batch 1 and batch 8, against SCRFD (ONNX Runtime), same images.

Two image sets from ``shared/data``: the photos as they are (mixed sizes: MTCNN batches
their R-Net and O-Net crops across images, but each size gets its own P-Net pyramid), and
the same photos resized to 640x480 (one size: the whole P-Net pyramid runs batched too).
For each set these run side by side in one process, alternating within every round with the
order rotated: ``MTCNN.detect_batch`` on chunks of 1 and of 8 images, and
``SCRFD("scrfd_2.5g").detect_batch`` (640x640 input; that export has a fixed batch of 1, so
it runs image by image whatever the chunk). Images are decoded before timing. Times are
medians over ``--repeats`` rounds after one warm-up round; ratios are medians of per-round
ratios. Faces found are reported so the speeds are compared on equal work. Nothing is
asserted about the times. Usage::

    python benchmarks/bench_mtcnn.py --shared ../shared [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from _rounds import alternate, median_ratio

import facekit
from facekit.detectors import MTCNN, SCRFD
from facekit.io import load_image

IMAGES = (
    "insightface_samples/t1.jpg",
    "insightface_samples/t3.jpg",
    "insightface_samples/t4.jpg",
    "insightface_samples/t6.jpg",
    "facenet_pytorch/multiface.jpg",
    "openface/lennon-1.jpg",
    "openface/clapton-1.jpg",
    "openface/carell.jpg",
    "openface/adams.jpg",
    "openface/longoria-cooper.jpg",
    "mtcnn/ivan.jpg",
    "mtcnn/no-faces.jpg",
    "insightface_samples/t5.jpg",
    "openface/lennon-2.jpg",
    "openface/clapton-2.jpg",
    "insightface_samples/t2.jpg",
)


def chunks(
    detect: Callable[[Sequence[np.ndarray]], list[list[object]]], size: int
) -> Callable[[list[np.ndarray]], int]:
    """A run over all images in chunks of ``size``; returns the number of faces found."""

    def run(images: list[np.ndarray]) -> int:
        return sum(
            len(found)
            for start in range(0, len(images), size)
            for found in detect(images[start : start + size])
        )

    return run


def measure(
    contenders: dict[str, Callable[[list[np.ndarray]], int]],
    images: list[np.ndarray],
    repeats: int,
) -> tuple[dict[str, float], dict[str, int]]:
    """Median seconds per run of each contender, alternating, after one warm-up round."""
    names = list(contenders)
    faces = {name: contenders[name](images) for name in names}  # warm-up
    times = alternate(
        {name: functools.partial(run, images) for name, run in contenders.items()}, repeats
    )
    ratios = {name: median_ratio(times, name, "MTCNN batch 8") for name in names}
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        **{f"{n} s": v for n, v in medians.items()},
        **{f"{n} ratio": ratios[n] for n in names},
    }, faces


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (5)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models, data = args.shared / "models", args.shared / "data"
    mtcnn = MTCNN(models / "mtcnn_torch")
    scrfd = SCRFD("scrfd_2.5g", model_dir=models)
    photos = [load_image(data / name) for name in IMAGES]
    sets = {
        "photos as they are (mixed sizes)": photos,
        "resized to 640x480 (one size)": [
            cv2.resize(p, (640, 480), interpolation=cv2.INTER_AREA) for p in photos
        ],
    }
    contenders = {
        "MTCNN batch 1": chunks(mtcnn.detect_batch, 1),
        "MTCNN batch 8": chunks(mtcnn.detect_batch, 8),
        "SCRFD-2.5G": chunks(scrfd.detect_batch, 8),
    }
    print(f"# MTCNN vs SCRFD, {len(photos)} images, {args.repeats} rounds\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), facekit {facekit.__version__}\n"
    )
    print("| images | detector | s per run | images/s | faces | time / MTCNN batch 8 |")
    print("|---|---|---:|---:|---:|---:|")
    for label, images in sets.items():
        print(f"measuring {label} ...", file=sys.stderr)
        result, faces = measure(contenders, images, args.repeats)
        for name in contenders:
            seconds = result[f"{name} s"]
            print(
                f"| {label} | {name} | {seconds:.2f} | {len(images) / seconds:.1f} | "
                f"{faces[name]} | {result[f'{name} ratio']:.2f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
