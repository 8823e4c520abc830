"""Calibrate an embedder's verification thresholds on the real photos in ``shared/data``.

The pair set (what the zoo's ``protocol`` strings refer to as "facekit-shared-v1"):

- ORL faces: 40 people x 10 grayscale 92x112 crops (detected with padding 0.5 at 320x320,
  enlarged to it: CenterFace gets ``upscale=True``, as it runs small images at their own size
  otherwise);
- photos: openface (Lennon x2, Clapton x2, Carell, Adams, Longoria and Cooper from
  longoria-cooper.jpg), facenet-pytorch (Jolie, Siegel, Rudd, Whigham) and facenet-pytorch's
  aligned crop of Bradley Cooper (the same person as Cooper in longoria-cooper.jpg).

Every unordered pair of faces is scored; ``likely`` is the threshold at FAR 1e-2 and ``same``
at FAR 1e-3 over the impostor pairs. Usage::

    python scripts/calibrate_thresholds.py --shared ../shared --embedder-model mobilefacenet_128d
    python scripts/calibrate_thresholds.py --shared ../shared --detector-model centerface \
        --embedder-model dlib_resnet_v1 --dlib-tolerance

The defaults (SCRFD-2.5G, MobileFaceNet) reproduce the ``mobilefacenet_128d`` entry; the
``dlib_resnet_v1`` entry (the "open" preset) was calibrated with CenterFace, its preset's
detector. ``--dlib-tolerance`` (needs the ``dlib`` package, a dev-only reference) also scores
native dlib descriptors of the same images (dlib's HOG detector with one upsample, facekit's
box where HOG finds none; dlib's 5-point predictor; ``get_face_chip`` 150 px, padding 0.25;
``compute_face_descriptor``) and reports dlib's documented tolerance, Euclidean distance
< 0.6, as the FAR and TAR it gives on these pairs, next to the calibrated thresholds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit import FaceRecognizer
from facekit.evaluation import calibrate, pair_scores, roc_auc, tar_at, threshold_at_far
from facekit.zoo import get_spec


def shared_faces(shared: Path) -> tuple[list[Path], list[str]]:
    """Image paths and identity labels of the one-face images of the calibration set."""
    data = shared / "data"
    paths: list[Path] = []
    labels: list[str] = []
    for person in sorted((data / "orl_faces").iterdir()):
        for image in sorted(person.glob("*.png")):
            paths.append(image)
            labels.append(f"orl/{person.name}")
    photos = {
        "openface/lennon-1.jpg": "lennon",
        "openface/lennon-2.jpg": "lennon",
        "openface/clapton-1.jpg": "clapton",
        "openface/clapton-2.jpg": "clapton",
        "openface/carell.jpg": "carell",
        "openface/adams.jpg": "adams",
        "facenet_pytorch/angelina_jolie/1.jpg": "angelina_jolie",
        "facenet_pytorch/kate_siegel/1.jpg": "kate_siegel",
        "facenet_pytorch/paul_rudd/1.jpg": "paul_rudd",
        "facenet_pytorch/shea_whigham/1.jpg": "shea_whigham",
        "facenet_pytorch/test_images_aligned/bradley_cooper/1.png": "bradley_cooper",
    }
    for relative, label in photos.items():
        paths.append(data / relative)
        labels.append(label)
    return paths, labels


def tight_options(detector_model: str) -> dict[str, object]:
    """Detector options for the tight crops (about 100 px): padded by half their size and
    run at 320x320 (CenterFace enlarges small images only with ``upscale=True``)."""
    options: dict[str, object] = {"padding": 0.5, "input_size": (320, 320)}
    if get_spec(detector_model).backend == "centerface":
        options["upscale"] = True
    return options


def embed_calibration_set(
    shared: Path, detector_model: str, embedder_model: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` embeddings and ``(N,)`` labels of the calibration set."""
    models = shared / "models"
    tight = FaceRecognizer(
        detector_model=detector_model,
        embedder_model=embedder_model,
        model_dir=models,
        detector_options=tight_options(detector_model),
    )
    photo = FaceRecognizer(
        detector=tight.detector.__class__(detector_model, model_dir=models),
        embedder=tight.embedder,
    )
    paths, labels = shared_faces(shared)
    embeddings = []
    for path in paths:
        tight_crop = "orl_faces" in path.parts or "test_images_aligned" in path.parts
        embeddings.append((tight if tight_crop else photo).embed(path))
    # longoria-cooper.jpg: Eva Longoria left, Bradley Cooper right.
    two = sorted(photo.faces(shared / "data/openface/longoria-cooper.jpg"), key=lambda f: f.box[0])
    embeddings += [two[0].embedding, two[1].embedding]
    labels += ["longoria", "bradley_cooper"]
    return np.stack(embeddings), np.asarray(labels)


def dlib_descriptors(shared: Path, detector_model: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Native dlib descriptors of the calibration set, in `embed_calibration_set`'s order.

    Returns:
        ``(N, 128)`` raw descriptors (not normalised), ``(N,)`` labels, and how many faces
        took facekit's detector box because dlib's HOG detector found none.
    """
    import dlib

    models = shared / "models"
    hog = dlib.get_frontal_face_detector()
    points = dlib.shape_predictor(str(models / "dlib/shape_predictor_5_face_landmarks.dat"))
    network = dlib.face_recognition_model_v1(
        str(models / "dlib/dlib_face_recognition_resnet_model_v1.dat")
    )
    tight = FaceRecognizer(
        detector_model=detector_model,
        model_dir=models,
        detector_options=tight_options(detector_model),
    )
    photo = FaceRecognizer(detector_model=detector_model, model_dir=models)
    fallbacks = 0

    def boxes(rgb: np.ndarray, recognizer: FaceRecognizer) -> list[tuple[float, ...]]:
        nonlocal fallbacks
        found: list[tuple[float, ...]] = [
            (r.left(), r.top(), r.right(), r.bottom()) for r in hog(rgb, 1)
        ]
        if not found:
            fallbacks += 1
            found = [d.box for d in recognizer.detect(rgb)] or [(0, 0, *rgb.shape[1::-1])]
        return found

    def descriptor(rgb: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
        rect = dlib.rectangle(*(round(v) for v in box))
        chip = dlib.get_face_chip(rgb, points(rgb, rect), size=150, padding=0.25)
        return np.asarray(network.compute_face_descriptor(chip), dtype=np.float64)

    def area(box: tuple[float, ...]) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    paths, labels = shared_faces(shared)
    vectors = []
    for path in paths:
        tight_crop = "orl_faces" in path.parts or "test_images_aligned" in path.parts
        recognizer = tight if tight_crop else photo
        rgb = np.ascontiguousarray(recognizer.load(path))
        vectors.append(descriptor(rgb, max(boxes(rgb, recognizer), key=area)))
    rgb = np.ascontiguousarray(photo.load(shared / "data/openface/longoria-cooper.jpg"))
    two = sorted(boxes(rgb, photo), key=lambda b: b[0])
    if len(two) != 2:
        raise SystemExit(f"expected 2 faces in longoria-cooper.jpg, found {len(two)}")
    vectors += [descriptor(rgb, two[0]), descriptor(rgb, two[1])]
    labels += ["longoria", "bradley_cooper"]
    return np.stack(vectors), np.asarray(labels), fallbacks


def report_dlib_tolerance(
    shared: Path, detector_model: str, facekit: tuple[np.ndarray, np.ndarray]
) -> None:
    """Print dlib's 0.6 tolerance as FAR/TAR on the calibration pairs, and facekit's cosine
    threshold at the same FAR."""
    descriptors, labels, fallbacks = dlib_descriptors(shared, detector_model)
    if not np.array_equal(labels, facekit[1]):
        raise SystemExit("dlib and facekit faces are not in the same order")
    first, second = np.triu_indices(len(labels), k=1)
    distance = np.linalg.norm(descriptors[first] - descriptors[second], axis=1)
    same = labels[first] == labels[second]
    far = float(np.mean(distance[~same] < 0.6))
    tar = float(np.mean(distance[same] < 0.6))
    genuine, impostor = pair_scores(facekit[0], labels)
    print(f"native dlib ({fallbacks} faces on facekit's box: HOG found none)")
    print(f"  ROC AUC (-distance): {roc_auc(-distance[same], -distance[~same]):.6f}")
    print(f"  distance < 0.6: FAR {far:.5f}, TAR {tar:.5f}")
    _, likely, same_point = calibrate(-distance[same], -distance[~same])
    for name, point in (("FAR 1e-2", likely), ("FAR 1e-3", same_point)):
        print(
            f"  distance <= {-point.threshold:.3f}: {name} "
            f"(FAR {point.far:.5f}, TAR {point.tar:.5f})"
        )
    if far > 0:
        cosine = threshold_at_far(impostor, far)
        print(
            f"  facekit cosine at that FAR: {cosine:.4f} "
            f"(FAR {np.mean(impostor >= cosine):.5f}, TAR {tar_at(genuine, cosine):.5f})"
        )
    # 0.6 between unit vectors would be cosine 1 - 0.6**2 / 2; dlib's are not unit vectors.
    naive = 1 - 0.6**2 / 2
    norms = np.linalg.norm(descriptors, axis=1)
    print(
        f"  facekit cosine >= {naive:.2f} (0.6 as if between unit vectors; dlib's norms are "
        f"{norms.min():.3f}-{norms.max():.3f}): FAR {np.mean(impostor >= naive):.5f}, "
        f"TAR {tar_at(genuine, naive):.5f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--detector-model", default="scrfd_2.5g")
    parser.add_argument("--embedder-model", default="mobilefacenet_128d")
    parser.add_argument(
        "--dlib-tolerance",
        action="store_true",
        help="also report dlib's 0.6 tolerance with native dlib descriptors (needs dlib)",
    )
    args = parser.parse_args()
    embeddings, labels = embed_calibration_set(
        args.shared, args.detector_model, args.embedder_model
    )
    genuine, impostor = pair_scores(embeddings, labels)
    thresholds, likely, same = calibrate(genuine, impostor, description="facekit-shared-v1:")
    print(f"faces: {len(labels)}, identities: {len(set(labels))}")
    print(f"ROC AUC: {roc_auc(genuine, impostor):.6f}")
    print(f"likely: {likely}")
    print(f"same:   {same}")
    print(f"Thresholds(likely={thresholds.likely}, same={thresholds.same},")
    print(f"           protocol={thresholds.protocol!r})")
    if args.dlib_tolerance:
        report_dlib_tolerance(args.shared, args.detector_model, (embeddings, labels))


if __name__ == "__main__":
    main()
