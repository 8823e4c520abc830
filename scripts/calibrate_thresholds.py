"""Calibrate an embedder's verification thresholds on the real photos in ``shared/data``.

The pair set (what the zoo's ``protocol`` strings refer to as "facekit-shared-v1"):

- ORL faces: 40 people x 10 grayscale 92x112 crops (detected with padding 0.5 at 320x320);
- photos: openface (Lennon x2, Clapton x2, Carell, Adams, Longoria and Cooper from
  longoria-cooper.jpg), facenet-pytorch (Jolie, Siegel, Rudd, Whigham) and facenet-pytorch's
  aligned crop of Bradley Cooper (the same person as Cooper in longoria-cooper.jpg).

Every unordered pair of faces is scored; ``likely`` is the threshold at FAR 1e-2 and ``same``
at FAR 1e-3 over the impostor pairs. Usage::

    python scripts/calibrate_thresholds.py --shared ../shared --embedder-model mobilefacenet_128d
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit import FaceRecognizer
from facekit.evaluation import calibrate, pair_scores, roc_auc


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


def embed_calibration_set(
    shared: Path, detector_model: str, embedder_model: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(N, D)`` embeddings and ``(N,)`` labels of the calibration set."""
    models = shared / "models"
    tight = FaceRecognizer(
        detector_model=detector_model,
        embedder_model=embedder_model,
        model_dir=models,
        # Tight crops of about 100 px: pad them, and a 320 px input is plenty.
        detector_options={"padding": 0.5, "input_size": (320, 320)},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--detector-model", default="scrfd_2.5g")
    parser.add_argument("--embedder-model", default="mobilefacenet_128d")
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


if __name__ == "__main__":
    main()
