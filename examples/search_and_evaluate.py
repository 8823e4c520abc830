"""Split a folder-per-person data set into gallery and probes, and report precision@k.

    python examples/search_and_evaluate.py ../shared/data/orl_faces --model-dir ../shared/models \\
        --tight-crops --gallery-size 5

The first ``--gallery-size`` images (sorted by name) of each person are enrolled into an
in-memory gallery; every other image is a probe. For each probe the ``k`` nearest identities
are retrieved; precision@k is the share of retrieved identities that are the probe's own,
averaged over probes (for one correct identity per probe, precision@1 = rank-1 accuracy and
precision@k <= 1/k · hit@k). Hit@k (the truth among the top k) is printed too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit import FaceRecognizer
from facekit.gallery import Gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--tight-crops", action="store_true", help="pad images before detection")
    parser.add_argument("--gallery-size", type=int, default=5, help="images enrolled per person")
    parser.add_argument("-k", type=int, nargs="+", default=[1, 3, 5])
    args = parser.parse_args()

    small = args.model_dir is not None
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g" if small else None,
        embedder_model="mobilefacenet_128d" if small else None,
        model_dir=args.model_dir,
        detector_options={"padding": 0.5, "input_size": (320, 320)} if args.tight_crops else None,
        gallery=Gallery(None),
    )
    enrol, probes = [], []
    for person in sorted(p for p in args.folder.iterdir() if p.is_dir()):
        images = sorted(person.iterdir())
        enrol += [(person.name, image) for image in images[: args.gallery_size]]
        probes += [(person.name, image) for image in images[args.gallery_size :]]
    report = fr.enroll(enrol)
    print(f"gallery: {len(fr.gallery)} people, {fr.gallery.num_samples} faces ({report})")

    # Embed every probe (one face each), then search them all in one call.
    truths, embeddings = [], []
    for truth, image in probes:
        faces = fr.faces(image)
        if faces:
            truths.append(truth)
            embeddings.append(max(faces, key=lambda f: f.detection.area).embedding)
    k_max = max(args.k)
    results = fr.gallery.search(np.stack(embeddings), threshold=-1.0, top_k=k_max)
    ranked = [[name for name, _ in r.candidates] for r in results]
    print(f"probes: {len(truths)} of {len(probes)} with a face")
    for k in args.k:
        hits = np.array([truth in names[:k] for truth, names in zip(truths, ranked, strict=True)])
        print(f"k={k}: precision@k {hits.mean() / k:.3f}, hit@k {hits.mean():.3f}")


if __name__ == "__main__":
    main()
