"""The "open" preset next to SCRFD + MobileFaceNet and native dlib: accuracy on the shared
pairs and end-to-end speed.

Runs in facekit's dev environment (``dlib`` comes from the ``dlib-bin`` wheel of the dev
extra; it is only the reference here, never a facekit dependency)::

    python benchmarks/compare_open.py --shared ../shared

Pipelines, each on the faces it finds (an image where it finds none fails, and every pair
with that image is left out of its own row; the "common pairs" columns use only the pairs
all three scored):

- open: ``FaceRecognizer(model_dir=...)``, the default preset: CenterFace + dlib's ResNet
  converted to ONNX (``dlib_resnet_v1``, template ``dlib150``), flip-averaged, cosine;
- SCRFD + MobileFaceNet: ``FaceRecognizer(detector_model="scrfd_2.5g",
  embedder_model="mobilefacenet_128d")``, the models facekit's tests use, cosine;
- native dlib as ``face_recognition`` does it: dlib's HOG detector with one upsample,
  the 5-point shape predictor, ``get_face_chip(size=150, padding=0.25)``,
  ``compute_face_descriptor``, similarity = -Euclidean distance (largest face).

Pairs: those of ``scripts/make_shared_pairs.py`` (every pair of ORL subjects 1-25, images
1-4, and six OpenFace photos: 5,565 pairs, 152 same), read with `facekit.evaluation.read_pairs`
(10 folds, seeded), scored with `roc_auc` and `ten_fold_accuracy` as ``facekit eval verify``
does. ORL's 92x112 crops are so tight that no detector finds a face in them as they are,
so every pipeline gets the same copies with a black border of 30 % of the longer side.
Speed: every face of 12 photos (293x473 to 1665x2048 pixels), decoding included,
contenders alternating over ``--repeats`` rounds, medians. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime
from _rounds import alternate, median_ratio
from compare_libraries import PHOTOS

import facekit
from facekit import FaceRecognizer
from facekit.evaluation import (
    Embeddings,
    Pair,
    embed_images,
    read_pairs,
    roc_auc,
    ten_fold_accuracy,
)

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True, slots=True)
class Scored:
    """The pairs one pipeline scored.

    Attributes:
        scores: pair (index into the pair list) → similarity (higher = more alike).
        missed: images where the pipeline found no face.
    """

    scores: dict[int, float]
    missed: frozenset[Path]


def shared_pairs(data: Path, folder: Path) -> list[Pair]:
    """``scripts/make_shared_pairs.py``'s pairs, with the ORL crops padded into ``folder``."""
    spec = importlib.util.spec_from_file_location(
        "make_shared_pairs", REPO / "scripts/make_shared_pairs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows: list[str] = module.pair_rows(data)
    for name in {part for row in rows[1:] for part in row.split(",")[:2]}:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.startswith("orl_faces/"):
            gray = cv2.imread(str(data / name))
            assert gray is not None, name
            border = int(0.3 * max(gray.shape[:2]))
            cv2.imwrite(
                str(target),
                cv2.copyMakeBorder(gray, border, border, border, border, cv2.BORDER_CONSTANT),
            )
        elif not target.exists():
            target.symlink_to(data / name)
    listing = folder / "shared_pairs.csv"
    listing.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return read_pairs(listing, folder)


def score(pairs: list[Pair], embeddings: Embeddings, *, distance: bool) -> Scored:
    """Similarity of every pair whose two images have a face: cosine, or -Euclidean
    distance for raw dlib descriptors."""
    rows = {path: index for index, path in enumerate(embeddings.paths)}
    scores: dict[int, float] = {}
    for index, pair in enumerate(pairs):
        if pair.a in embeddings.failures or pair.b in embeddings.failures:
            continue
        a, b = embeddings.vectors[rows[pair.a]], embeddings.vectors[rows[pair.b]]
        scores[index] = -float(np.linalg.norm(a - b)) if distance else float(a @ b)
    return Scored(scores, frozenset(embeddings.failures))


def accuracy(pairs: list[Pair], scores: dict[int, float], keep: Sequence[int]) -> str:
    """``ROC AUC | 10-fold accuracy ± std`` on the pairs ``keep``."""
    values = np.array([scores[i] for i in keep])
    same = np.array([pairs[i].same for i in keep])
    folds = np.array([pairs[i].fold for i in keep])
    ten = ten_fold_accuracy(values, same, folds)
    return f"{roc_auc(values[same], values[~same]):.5f} | {ten.accuracy:.4f} ± {ten.std:.4f}"


class NativeDlib:
    """face_recognition's pipeline, written out with dlib's own calls."""

    def __init__(self, models: Path) -> None:
        import dlib

        self.dlib = dlib
        self.hog = dlib.get_frontal_face_detector()
        self.points = dlib.shape_predictor(
            str(models / "dlib/shape_predictor_5_face_landmarks.dat")
        )
        self.network = dlib.face_recognition_model_v1(
            str(models / "dlib/dlib_face_recognition_resnet_model_v1.dat")
        )

    def descriptors(self, path: Path, *, largest: bool) -> list[np.ndarray]:
        """Raw 128-d descriptors of the faces HOG finds in ``path`` (only the largest one
        with ``largest``)."""
        bgr = cv2.imread(str(path))
        assert bgr is not None, path
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes = list(self.hog(rgb, 1))
        if largest and boxes:
            boxes = [max(boxes, key=lambda r: r.area())]
        out = []
        for box in boxes:
            chip = self.dlib.get_face_chip(rgb, self.points(rgb, box), size=150, padding=0.25)
            out.append(np.asarray(self.network.compute_face_descriptor(chip), dtype=np.float32))
        return out

    def embed_images(self, paths: list[Path]) -> Embeddings:
        """The largest face's descriptor of each distinct image, as `embed_images` does."""
        unique = list(dict.fromkeys(paths))
        vectors = np.zeros((len(unique), 128), dtype=np.float32)
        failures: dict[Path, str] = {}
        for index, path in enumerate(unique):
            found = self.descriptors(path, largest=True)
            if found:
                vectors[index] = found[0]
            else:
                failures[path] = "no face found"
        return Embeddings(tuple(unique), vectors, failures)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (5)")
    args = parser.parse_args(argv)
    import dlib

    models, data = args.shared / "models", args.shared / "data"
    root = Path(tempfile.mkdtemp(prefix="compare_open-"))
    pairs = shared_pairs(data, root)
    images = [p.a for p in pairs] + [p.b for p in pairs]
    open_fr = FaceRecognizer(model_dir=models)
    test_fr = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models
    )
    native = NativeDlib(models)
    print("embedding the pair set ...", file=sys.stderr)
    results = {
        "open (CenterFace + dlib ResNet ONNX)": score(
            pairs, embed_images(open_fr, images, progress=False), distance=False
        ),
        "SCRFD-2.5G + MobileFaceNet-128d": score(
            pairs, embed_images(test_fr, images, progress=False), distance=False
        ),
        "native dlib (face_recognition's pipeline)": score(
            pairs, native.embed_images(images), distance=True
        ),
    }
    common = sorted(set.intersection(*(set(r.scores) for r in results.values())))
    n_images = len(set(images))
    n_same = sum(p.same for p in pairs)
    print("# The open preset, SCRFD + MobileFaceNet and native dlib on the shared pairs\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}; facekit "
        f"{facekit.__version__}, onnxruntime {onnxruntime.__version__}, dlib {dlib.__version__}\n"
    )
    print(
        f"{len(pairs)} pairs of {n_images} images ({n_same} same); common pairs: the "
        f"{len(common)} every pipeline scored ({sum(pairs[i].same for i in common)} same).\n"
    )
    print(
        "| pipeline | images without a face | pairs scored | ROC AUC | 10-fold accuracy "
        "| ROC AUC, common pairs | 10-fold accuracy, common pairs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        own = sorted(result.scores)
        print(
            f"| {name} | {len(result.missed)} of {n_images} | {len(own)} | "
            f"{accuracy(pairs, result.scores, own)} | "
            f"{accuracy(pairs, result.scores, common)} |"
        )
    print()
    for name, result in results.items():
        if result.missed:
            missed = ", ".join(sorted(str(p.relative_to(root)) for p in result.missed))
            print(f"- {name} misses: {missed}")
    print()
    _operating_points(pairs, results, open_fr)

    # Speed: every face of the same photos.
    photos = [data / name for name in PHOTOS]
    open_plain = FaceRecognizer(model_dir=models, embedder_options={"flip": False})
    contenders: dict[str, Callable[[Path], Sequence[object]]] = {
        "open preset": open_fr.faces,
        "open preset, flip-averaging off": open_plain.faces,
        "native dlib": functools.partial(native.descriptors, largest=False),
    }
    found = {name: [len(run(photo)) for photo in photos] for name, run in contenders.items()}
    times = alternate(
        {name: functools.partial(_each, run, photos) for name, run in contenders.items()},
        args.repeats,
    )
    print(
        f"\nEnd to end, every face of {len(photos)} photos ({args.repeats} rounds, medians; "
        "facekit with its defaults, dlib as the dlib-bin wheel runs it):\n"
    )
    print("| pipeline | faces found | s per run | images/s | time / open |")
    print("|---|---:|---:|---:|---:|")
    for name in contenders:
        seconds = statistics.median(times[name])
        ratio = median_ratio(times, name, "open preset")
        print(
            f"| {name} | {sum(found[name])} | {seconds:.2f} | {len(photos) / seconds:.1f} | "
            f"{ratio:.2f} |"
        )
    print("\nFaces found where the pipelines differ:\n")
    for index, photo in enumerate(photos):
        counts = {name: found[name][index] for name in ("open preset", "native dlib")}
        if len(set(counts.values())) > 1:
            print(
                f"- {photo.relative_to(data)}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            )
    return 0


def _operating_points(
    pairs: list[Pair], results: dict[str, Scored], open_fr: FaceRecognizer
) -> None:
    """The shipped decision rules on the pairs each pipeline scored: the open preset's
    calibrated thresholds and dlib's documented tolerance (distance < 0.6)."""
    print("Decision rules as shipped (FAR / TAR on each pipeline's own pairs):\n")
    print("| rule | FAR | TAR | accuracy |")
    print("|---|---:|---:|---:|")
    open_scores, _, dlib_scores = results.values()
    thresholds = open_fr.thresholds
    rules = [
        (f"open, likely (cosine >= {thresholds.likely})", open_scores, thresholds.likely),
        (f"open, same (cosine >= {thresholds.same})", open_scores, thresholds.same),
        ("native dlib, distance < 0.6", dlib_scores, -0.6),
    ]
    for label, result, cut in rules:
        keep = sorted(result.scores)
        values = np.array([result.scores[i] for i in keep])
        same = np.array([pairs[i].same for i in keep])
        accept = values > cut if label.startswith("native") else values >= cut
        print(
            f"| {label} | {np.mean(accept[~same]):.5f} | {np.mean(accept[same]):.4f} | "
            f"{np.mean(accept == same):.4f} |"
        )


def _each(run: Callable[[Path], object], photos: list[Path]) -> None:
    for photo in photos:
        run(photo)


if __name__ == "__main__":
    sys.exit(main())
