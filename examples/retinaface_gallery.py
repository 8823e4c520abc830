"""The classic InsightFace pipeline on MXNet, step by step: detect, align, filter by pose,
recognise against a gallery whose file names are the identities; draw names on the photos.

    mkdir -p /tmp/people
    cp ../shared/data/openface/lennon-1.jpg /tmp/people/lennon.jpg
    cp ../shared/data/openface/clapton-1.jpg /tmp/people/clapton.jpg
    cp ../shared/data/openface/carell.jpg /tmp/people/carell.jpg
    .venv-mxnet/bin/python examples/retinaface_gallery.py /tmp/people \\
        ../shared/data/openface/lennon-2.jpg ../shared/data/openface/longoria-cooper.jpg \\
        --model-dir ../shared/models --threshold 0.4 --out /tmp/named

Runs in the ``[mxnet]`` environment (RetinaFace mnet0.25 and the MXNet MobileFaceNet from
the zoo). facekit has no calibrated threshold for the MXNet checkpoints, so
``--threshold`` is required: on the shared photos, same-person pairs score 0.58-0.77 and
different people at most 0.25 with these models; calibrate on your own pairs before you
rely on one (``facekit.evaluation.calibrate``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit.aligners import SimilarityAligner
from facekit.detectors import RetinaFace
from facekit.draw import draw_faces, save_image
from facekit.embedders.arcface_mxnet import ArcFaceMXNet
from facekit.gallery import EmbedderInfo, Gallery
from facekit.io import load_image
from facekit.quality import QualityFilter
from facekit.sources import folder_sources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("people", type=Path, help="folder of NAME.jpg photos, one per person")
    parser.add_argument("photos", type=Path, nargs="+", help="photos to name the faces of")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--threshold", type=float, required=True, help="cosine similarity")
    parser.add_argument("--max-yaw", type=float, default=45.0, help="degrees (pose filter)")
    parser.add_argument("--out", type=Path, default=Path("named"), help="output folder")
    args = parser.parse_args()

    detector = RetinaFace("retinaface_mnet025_mxnet", model_dir=args.model_dir)
    aligner = SimilarityAligner("arcface112")
    embedder = ArcFaceMXNet("mobilefacenet_mxnet", model_dir=args.model_dir)
    quality = QualityFilter(max_yaw=args.max_yaw)
    gallery = Gallery(None, embedder=EmbedderInfo.of(embedder))  # in memory

    # Build the gallery: the largest face of each NAME.jpg, if it passes the pose filter.
    for identity, path in folder_sources(args.people):
        image = load_image(path)
        faces = detector.detect(image)  # 1. detect
        if not faces:
            print(f"skipped {path}: no face")
            continue
        face = max(faces, key=lambda d: d.area)
        (reason,) = quality.reasons([face])  # 3. filter by size, score and pose
        if reason is not None:
            print(f"skipped {path}: {reason}")
            continue
        crop = aligner.align(image, face.landmarks)  # 2. align
        gallery.add(identity, embedder.embed(crop), sources=[str(path)])  # 4. recognise
    print(f"gallery: {', '.join(gallery.identities())}")

    # Name every face of each photo and draw the result.
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.photos:
        image = load_image(path)
        faces = detector.detect(image)
        if not faces:
            print(f"{path}: no face")
            continue
        crops = aligner.align(image, np.stack([d.landmarks for d in faces]))
        found = gallery.search(embedder.embed(crops), threshold=args.threshold)
        labels = [
            None if match.identity is None else f"{match.identity} {match.similarity:.2f}"
            for match in found
        ]
        for face, match in zip(faces, found, strict=True):
            who = match.identity or "unknown"
            box = tuple(round(v) for v in face.box)
            print(f"{path.name}: {who} ({match.similarity:.3f}) at {box}")
        target = args.out / f"{path.stem}.png"
        save_image(target, draw_faces(image, faces, labels))
        print(f"  -> {target}")


if __name__ == "__main__":
    main()
