"""Are two photos the same person? The whole facekit flow, one stage at a time.

Run from a checkout (the shared test weights and photos sit beside it):

    python examples/verify_two_photos.py ../shared/data/openface/lennon-1.jpg \\
        ../shared/data/openface/lennon-2.jpg --model-dir ../shared/models

Without ``--model-dir`` the SCRFD and ArcFace backends' default models (InsightFace
buffalo_l's SCRFD-10G and ArcFace ResNet-50, non-commercial research only) are looked up in
``$FACEKIT_HOME`` and the cache, and downloaded from GitHub if missing. facekit's own default
(``FaceRecognizer()``, the "open" preset) is CenterFace + dlib's ResNet instead: see
``examples/choose_preset.py``.
"""

from __future__ import annotations

import argparse

import numpy as np

from facekit import FaceRecognizer, load_image
from facekit.aligners import SimilarityAligner
from facekit.detectors import SCRFD
from facekit.embedders import ArcFace


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare the faces of two photos.")
    parser.add_argument("image_a")
    parser.add_argument("image_b")
    parser.add_argument("--model-dir", help="folder with the model files (e.g. ../shared/models)")
    args = parser.parse_args()
    small_models = args.model_dir is not None

    # 1. Load: any path, bytes, array or PIL image becomes an (H, W, 3) uint8 RGB array.
    image_a, image_b = load_image(args.image_a), load_image(args.image_b)
    print(f"image A {image_a.shape}, image B {image_b.shape}")

    # 2. Detect: boxes, scores and 5 landmarks per face, in image pixels.
    detector = SCRFD("scrfd_2.5g" if small_models else None, model_dir=args.model_dir)
    faces_a, faces_b = detector.detect_batch([image_a, image_b])
    print(f"{len(faces_a)} face(s) in A, {len(faces_b)} in B")
    if not faces_a or not faces_b:
        raise SystemExit("each photo needs a face")
    face_a = max(faces_a, key=lambda d: d.area)  # the largest face: the subject
    face_b = max(faces_b, key=lambda d: d.area)

    # 3. Align: a similarity transform puts the landmarks on the embedder's template.
    embedder = ArcFace("mobilefacenet_128d" if small_models else None, model_dir=args.model_dir)
    aligner = SimilarityAligner(embedder.template)
    crops = np.concatenate(
        [aligner.align(image_a, face_a.landmarks), aligner.align(image_b, face_b.landmarks)]
    )
    print(f"aligned crops {crops.shape}")

    # 4. Embed: each crop and its mirror image, summed and L2-normalised.
    vectors = embedder.embed(crops)
    similarity = float(vectors[0] @ vectors[1])  # cosine similarity of unit vectors

    # 5. Decide with the embedder's calibrated thresholds (and where they come from).
    thresholds = embedder.thresholds  # None for a model facekit has no calibration for
    if thresholds is None:
        raise SystemExit(f"no calibrated thresholds for {embedder.name}: run facekit calibrate")
    print(f"similarity {similarity:.3f} -> {thresholds.verdict(similarity)}")
    print(f"thresholds: likely same >= {thresholds.likely}, same >= {thresholds.same}")
    print(f"  ({thresholds.protocol})")

    # The facade does all of the above in one call.
    recognizer = FaceRecognizer(detector=detector, embedder=embedder)
    result = recognizer.verify(args.image_a, args.image_b)
    print(f"FaceRecognizer.verify: {result}")


if __name__ == "__main__":
    main()
