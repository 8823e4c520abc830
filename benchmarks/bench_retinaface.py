"""RetinaFace on MXNet against its ONNX conversion and against SCRFD, on the same images.

Run in the ``[mxnet]`` environment. RetinaFace MobileNet-0.25 (``shared/models``) is
converted to ONNX with ``facekit.convert.mxnet_to_onnx`` (640x640 input) into a temporary
folder first. Then, side by side in one process on the same decoded photos, alternating
within every round (order rotated), after one warm-up round:

- ``RetinaFace(mnet.25, input_size=(640, 640))`` on MXNet: the same input as the ONNX file,
  so the two differ only in the runtime;
- ``RetinaFace(mnet25.onnx)`` on ONNX Runtime, the converted file;
- ``RetinaFace(mnet.25)`` on MXNet with its default scale rule (shorter side 640, longer
  at most 1024), which is what the backend does out of the box;
- ``SCRFD("scrfd_2.5g")`` on ONNX Runtime at 640x640.

Times are medians over ``--repeats`` rounds, ratios medians of per-round ratios against
the ONNX conversion; faces found are reported. Nothing is asserted about the times. Usage::

    .venv-mxnet/bin/python benchmarks/bench_retinaface.py --shared ../shared [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from _rounds import alternate, median_ratio

import facekit
from facekit.convert import mxnet_to_onnx
from facekit.detectors import SCRFD, RetinaFace
from facekit.io import load_image

IMAGES = (
    "insightface_samples/t1.jpg",
    "insightface_samples/t3.jpg",
    "insightface_samples/t4.jpg",
    "insightface_samples/t5.jpg",
    "insightface_samples/t6.jpg",
    "facenet_pytorch/multiface.jpg",
    "openface/lennon-1.jpg",
    "openface/clapton-1.jpg",
    "openface/carell.jpg",
    "openface/adams.jpg",
    "openface/longoria-cooper.jpg",
    "mtcnn/ivan.jpg",
)
BASELINE = "RetinaFace ONNX (converted, 640x640)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (5)")
    args = parser.parse_args(argv)
    import mxnet

    models, data = args.shared / "models", args.shared / "data"
    prefix = models / "retinaface_mnet025_mxnet/mnet.25"
    converted = mxnet_to_onnx(prefix, Path(tempfile.mkdtemp()) / "mnet25.onnx")
    images = [load_image(data / name) for name in IMAGES]
    detectors: dict[str, Callable[[np.ndarray], list[object]]] = {
        "RetinaFace MXNet (640x640)": RetinaFace(prefix, input_size=(640, 640)).detect,
        BASELINE: RetinaFace(converted.path).detect,
        "RetinaFace MXNet (scale rule 640/1024)": RetinaFace(prefix).detect,
        "SCRFD-2.5G ONNX (640x640)": SCRFD("scrfd_2.5g", model_dir=models).detect,
    }
    names = list(detectors)
    faces = {name: sum(len(detectors[name](image)) for image in images) for name in names}
    times = alternate(
        {name: functools.partial(_each, detect, images) for name, detect in detectors.items()},
        args.repeats,
    )
    print(f"# RetinaFace: MXNet, converted ONNX and SCRFD on {len(images)} photos\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, mxnet {mxnet.__version__}, facekit "
        f"{facekit.__version__}; conversion's relative error against MXNet "
        f"{converted.max_relative_error:.1e}; {args.repeats} rounds\n"
    )
    print("| detector | s per run | images/s | faces | time / ONNX conversion |")
    print("|---|---:|---:|---:|---:|")
    for name in names:
        ratio = median_ratio(times, name, BASELINE)
        seconds = statistics.median(times[name])
        print(
            f"| {name} | {seconds:.2f} | {len(images) / seconds:.1f} | {faces[name]} | "
            f"{ratio:.2f} |"
        )
    return 0


def _each(detect: Callable[[np.ndarray], list[object]], images: list[np.ndarray]) -> None:
    for image in images:
        detect(image)


if __name__ == "__main__":
    sys.exit(main())
