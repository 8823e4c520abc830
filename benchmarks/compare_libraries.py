"""facekit side by side with insightface and face_recognition: accuracy on the same pairs,
agreement with insightface on the same model files, and end-to-end speed.

Install the other libraries in an environment of their own (they are never part of
facekit's install)::

    python3 -m venv .venv-compare && .venv-compare/bin/pip install -e . \\
        -r benchmarks/requirements-compare.txt
    .venv-compare/bin/pip install --no-deps face_recognition==1.3.0 face_recognition_models
    .venv-compare/bin/python benchmarks/compare_libraries.py --shared ../shared

What runs, on the same images in one process:

- facekit: ``FaceRecognizer(detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d")``
  with its defaults (flip-averaged embeddings, largest face); for speed also with
  flip-averaging off, which is the work insightface does (one embedding run per face);
- insightface: ``model_zoo.get_model`` on the *same two ONNX files*, SCRFD at 640x640 and
  threshold 0.5, ``face_align.norm_crop`` and ``ArcFaceONNX.get_feat`` (largest face);
- face_recognition: dlib's HOG detector (``face_locations``, 1 upsample) and its ResNet
  (``face_encodings``), similarity = -distance, its documented match at distance <= 0.6.

Pairs: every pair of 406 images: the 400 ORL faces, each copied with a black border of 30 %
of its longer side (ORL's crops are so tight that SCRFD finds no face in them otherwise;
every library gets the same padded files), and six OpenFace photos. Each library's
failures (no face found) are counted; accuracy is compared on the pairs *every* library
scored, with one metric code for all (facekit.evaluation: ROC AUC, 10-fold accuracy with
folds dealt round-robin). Speed: images/s end to end
(decode, detect, align, embed the largest face) over 12 photos of 293x473 to 1400x1050
pixels, contenders alternating over ``--repeats`` rounds. Agreement: on faces both find in
those photos, box IoU and the cosine between facekit's embedding without flip-averaging and
insightface's (same weights), and with it. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from _rounds import alternate, median_ratio

import facekit
from facekit import FaceRecognizer
from facekit.embedders import ArcFace
from facekit.evaluation import roc_auc, ten_fold_accuracy

PHOTOS = (
    "openface/lennon-1.jpg",
    "openface/lennon-2.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/carell.jpg",
    "openface/adams.jpg",
    "openface/longoria-cooper.jpg",
    "facenet_pytorch/angelina_jolie/1.jpg",
    "facenet_pytorch/paul_rudd/1.jpg",
    "mtcnn/ivan.jpg",
    "insightface_samples/t1.jpg",
    "insightface_samples/t4.jpg",
)

Embedder = Callable[[Path], "np.ndarray | None"]


def pair_set(data: Path, folder: Path) -> tuple[list[Path], list[str]]:
    """Padded copies of the ORL faces in ``folder`` and the OpenFace photos, with labels."""
    labels = {}
    for person in sorted((data / "orl_faces").iterdir(), key=lambda p: int(p.name[1:])):
        for image in sorted(person.glob("*.png"), key=lambda p: int(p.stem)):
            gray = cv2.imread(str(image))
            border = int(0.3 * max(gray.shape[:2]))
            padded = cv2.copyMakeBorder(gray, *[border] * 4, cv2.BORDER_CONSTANT, value=0)
            target = folder / f"{person.name}_{image.stem}.png"
            cv2.imwrite(str(target), padded)
            labels[target] = person.name
    for name, who in (
        ("lennon-1", "lennon"),
        ("lennon-2", "lennon"),
        ("clapton-1", "clapton"),
        ("clapton-2", "clapton"),
        ("carell", "carell"),
        ("adams", "adams"),
    ):
        labels[data / f"openface/{name}.jpg"] = who
    return list(labels), list(labels.values())


def facekit_embedder(models: Path, flip: bool = True) -> Embedder:
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder=ArcFace("mobilefacenet_128d", model_dir=models, flip=flip),
        model_dir=models,
    )

    def run(path: Path) -> np.ndarray | None:
        faces = fr.faces(path)
        return max(faces, key=lambda f: f.detection.area).embedding if faces else None

    return run


def insightface_embedder(models: Path) -> tuple[Embedder, Callable[[np.ndarray], list]]:
    from insightface.model_zoo import get_model
    from insightface.utils import face_align

    detector = get_model(str(models / "scrfd/det_2.5g.onnx"))
    detector.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=0.5)
    recogniser = get_model(str(models / "mobilefacenet_onnx/mobilefacenet_128d.onnx"))
    recogniser.prepare(ctx_id=-1)

    def detect(bgr: np.ndarray) -> list:
        boxes, points = detector.detect(bgr, max_num=0, metric="default")
        return list(zip(boxes, points, strict=True))

    def run(path: Path) -> np.ndarray | None:
        bgr = cv2.imread(str(path))
        found = detect(bgr)
        if not found:
            return None
        _, points = max(found, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
        feature = recogniser.get_feat(face_align.norm_crop(bgr, landmark=points)).ravel()
        return feature / np.linalg.norm(feature)

    return run, detect


def face_recognition_embedder() -> Embedder:
    import face_recognition

    def run(path: Path) -> np.ndarray | None:
        rgb = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(rgb, number_of_times_to_upsample=1, model="hog")
        if not boxes:
            return None
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        return face_recognition.face_encodings(rgb, [largest])[0]

    return run


def scores_of(
    vectors: list[np.ndarray | None], labels: list[str], distance: bool
) -> tuple[dict[tuple[int, int], float], set[int]]:
    failed = {i for i, v in enumerate(vectors) if v is None}
    scores = {}
    for i, j in itertools.combinations(range(len(vectors)), 2):
        if i in failed or j in failed:
            continue
        a, b = vectors[i], vectors[j]
        assert a is not None
        assert b is not None
        scores[(i, j)] = -float(np.linalg.norm(a - b)) if distance else float(a @ b)
    return scores, failed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (5)")
    args = parser.parse_args(argv)
    import face_recognition
    import insightface

    models, data = args.shared / "models", args.shared / "data"
    paths, labels = pair_set(data, Path(tempfile.mkdtemp()))
    insight, insight_detect = insightface_embedder(models)
    libraries: dict[str, tuple[Embedder, bool]] = {
        "facekit": (facekit_embedder(models), False),
        "insightface": (insight, False),
        "face_recognition": (face_recognition_embedder(), True),
    }
    print("embedding the pair set ...", file=sys.stderr)
    results = {}
    for name, (embed, distance) in libraries.items():
        results[name] = scores_of([embed(p) for p in paths], labels, distance)
    common = set.intersection(*(set(scores) for scores, _ in results.values()))
    same = {pair: labels[pair[0]] == labels[pair[1]] for pair in common}
    order = sorted(common)
    folds = np.arange(len(order)) % 10
    print("# facekit, insightface and face_recognition on the same images\n")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; facekit {facekit.__version__}, insightface "
        f"{insightface.__version__}, face_recognition {face_recognition.__version__}\n"
    )
    print(
        f"Accuracy on the {len(order)} pairs every library scored "
        f"({sum(same.values())} same, {len(order) - sum(same.values())} different):\n"
    )
    print(f"| library | images without a face (of {len(paths)}) | ROC AUC | 10-fold accuracy |")
    print("|---|---:|---:|---:|")
    for name, (scores, failed) in results.items():
        values = np.array([scores[p] for p in order])
        truth = np.array([same[p] for p in order])
        auc = roc_auc(values[truth], values[~truth])
        fold = ten_fold_accuracy(values, truth, folds)
        print(f"| {name} | {len(failed)} | {auc:.4f} | {fold.accuracy:.4f} ± {fold.std:.4f} |")
    fr_scores = results["face_recognition"][0]
    fr_values = np.array([fr_scores[p] for p in order])
    fr_truth = np.array([same[p] for p in order])
    default = np.mean((fr_values >= -0.6) == fr_truth)
    print(
        f"\nface_recognition at its documented tolerance (distance <= 0.6): accuracy {default:.4f}"
    )

    # Agreement with insightface on the photos.
    fr_plain = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder=ArcFace("mobilefacenet_128d", model_dir=models, flip=False),
        model_dir=models,
    )
    fr_flip = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models
    )
    from insightface.utils import face_align

    recogniser = insightface.model_zoo.get_model(
        str(models / "mobilefacenet_onnx/mobilefacenet_128d.onnx")
    )
    print(
        "\nAgreement with insightface, per photo (faces matched by landmarks; facekit clips "
        "boxes to the image, insightface does not, so the IoU is taken on clipped boxes):\n"
    )
    print(
        "| photo | size | faces (facekit / insightface) | min box IoU | max landmark "
        "difference (px) | min cosine, facekit without flip | min cosine, with flip |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name in PHOTOS:
        bgr = cv2.imread(str(data / name))
        height, width = bgr.shape[:2]
        theirs = insight_detect(bgr)
        ours = fr_plain.faces(data / name)
        flipped = fr_flip.faces(data / name)
        ious, shifts, plain, flip = [], [], [], []
        for face, face_flip in zip(ours, flipped, strict=True):
            if not theirs:
                break
            box, points = min(theirs, key=lambda t: np.abs(t[1] - face.detection.landmarks).max())
            clipped = np.clip(box[:4], 0, [width, height, width, height])
            ious.append(_iou(face.box, clipped))
            shifts.append(float(np.abs(points - face.detection.landmarks).max()))
            feature = recogniser.get_feat(face_align.norm_crop(bgr, landmark=points)).ravel()
            feature = feature / np.linalg.norm(feature)
            plain.append(float(face.embedding @ feature))
            flip.append(float(face_flip.embedding @ feature))
        print(
            f"| {name} | {width}x{height} | {len(ours)} / {len(theirs)} | {min(ious):.4f} | "
            f"{max(shifts):.2f} | {min(plain):.4f} | {min(flip):.4f} |"
        )
    print()

    # Speed on the photos.
    photos = [data / name for name in PHOTOS]
    contenders = {name: embed for name, (embed, _) in libraries.items()}
    # insightface embeds each face once; facekit twice (crop and mirror) by default
    contenders["facekit, flip-averaging off"] = facekit_embedder(models, flip=False)
    names = list(contenders)
    for name in names:  # warm-up
        contenders[name](photos[0])
    times = alternate(
        {name: functools.partial(_each, embed, photos) for name, embed in contenders.items()},
        args.repeats,
    )
    print(f"End to end on {len(photos)} photos ({args.repeats} rounds, medians):\n")
    print("| library | s per run | images/s | time / facekit |")
    print("|---|---:|---:|---:|")
    for name in names:
        ratio = median_ratio(times, name, "facekit")
        seconds = statistics.median(times[name])
        print(f"| {name} | {seconds:.2f} | {len(photos) / seconds:.1f} | {ratio:.2f} |")
    return 0


def _each(embed: Embedder, photos: list[Path]) -> None:
    for photo in photos:
        embed(photo)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


if __name__ == "__main__":
    sys.exit(main())
