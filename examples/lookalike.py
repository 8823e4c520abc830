"""Which enrolled person does this photo look most like? Top 3, with side-by-side images.

    python examples/lookalike.py ../shared/data/openface/adams.jpg \\
        --people ../shared/data/facenet_pytorch --skip test_images_aligned multiface \\
        --model-dir ../shared/models --out /tmp/lookalike

``--people`` is a folder per person (here facenet-pytorch's four celebrities) or a folder of
``name.jpg`` files; ``--skip`` leaves out identities (there: the aligned crops' folder and
the group photo). The query's 3 nearest identities are printed with their similarity, and
``--out`` receives one side-by-side picture per candidate: the query's aligned face, the
candidate's best-matching enrolled face, and the similarity.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit import FaceRecognizer
from facekit.draw import save_image, side_by_side
from facekit.gallery import Gallery


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--people", type=Path, required=True, help="folder of enrolled people")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--out", type=Path, default=Path("lookalike"), help="output folder")
    parser.add_argument("--skip", nargs="*", default=[], help="identities to leave out")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args()

    small = args.model_dir is not None
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g" if small else None,
        embedder_model="mobilefacenet_128d" if small else None,
        model_dir=args.model_dir,
        gallery=Gallery(None),  # in memory: a look-alike search needs no file
    )
    from facekit.sources import folder_sources

    people = [(name, path) for name, path in folder_sources(args.people) if name not in args.skip]
    report = fr.enroll(people, progress=False)
    print(f"enrolled {len(fr.gallery)} people ({report})")

    query = fr.faces(args.photo)
    if not query:
        raise SystemExit(f"no face in {args.photo}")
    face = max(query, key=lambda f: f.detection.area)
    # A look-alike is always "someone": no threshold, just the nearest identities.
    (found,) = fr.gallery.search(face.embedding[None], threshold=-1.0, top_k=args.top_k)

    # The enrolled crop of each candidate: re-align its source photo (the gallery keeps
    # embeddings and where they came from, not pictures).
    args.out.mkdir(parents=True, exist_ok=True)
    for rank, (name, similarity) in enumerate(found.candidates, 1):
        samples = fr.gallery.samples(name)
        embeddings = fr.gallery.embeddings(name)
        best = samples[int(np.argmax(embeddings @ face.embedding))]
        enrolled = max(fr.faces(best.source or ""), key=lambda f: f.detection.area)
        picture = side_by_side(
            face.crop, enrolled.crop, similarity=similarity, query_label="query", match_label=name
        )
        target = args.out / f"{rank}_{name}.png"
        save_image(target, picture)
        print(f"{rank}. {name}: similarity {similarity:.3f} -> {target}")


if __name__ == "__main__":
    main()
