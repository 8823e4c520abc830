"""A gallery in Milvus: enrol a folder per person, identify held-out photos server-side.

    python examples/milvus_gallery.py ../shared/data/orl_faces --model-dir ../shared/models \\
        --people 10 --hold-out 9 10

By default the gallery is an embedded Milvus Lite directory (a temporary
``milvus-lite:///.../faces.db``; one process at a time). Point it at a Milvus server or
cluster instead by changing only the location:

    python examples/milvus_gallery.py FOLDER --gallery milvus://milvus.example:19530/faces
    FACEKIT_MILVUS_TOKEN=root:Milvus python examples/milvus_gallery.py FOLDER \\
        --gallery milvus://localhost:19530/faces

Identification runs in Milvus: a vector search grouped by identity (each identity's best
sample). ``facekit gallery migrate SRC DST`` copies a gallery between SQLite and Milvus.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from facekit import FaceRecognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder per person: FOLDER/NAME/*.png")
    parser.add_argument("--gallery", help="milvus-lite:///ABS/PATH.db or milvus://HOST:PORT/NAME")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--people", type=int, default=10, help="how many people to enrol")
    parser.add_argument("--hold-out", nargs="*", default=["10"], help="file stems to identify")
    args = parser.parse_args()

    location = args.gallery or f"milvus-lite://{Path(tempfile.mkdtemp()) / 'faces.db'}"
    small = args.model_dir is not None
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g" if small else None,
        embedder_model="mobilefacenet_128d" if small else None,
        model_dir=args.model_dir,
        gallery=location,
    )

    # 1. Enrol (re-running skips what the collection holds: content hashes).
    people = sorted(p for p in args.folder.iterdir() if p.is_dir())[: args.people]
    images = [image for person in people for image in sorted(person.iterdir())]
    enrol = [(p.parent.name, p) for p in images if p.stem not in args.hold_out]
    probes = [(p.parent.name, p) for p in images if p.stem in args.hold_out]
    report = fr.enroll(enrol, progress=False)
    counts = fr.gallery.counts()
    print(f"{report}; {location}: {len(counts)} identities, {sum(counts.values())} samples")

    # 2. Identify the held-out photos (the search runs in Milvus).
    correct = 0
    started = time.perf_counter()
    for truth, path in probes:
        matches = fr.identify(path)
        if not matches:
            print(f"{path.parent.name}/{path.name}: no face")
            continue
        best = matches[0]
        correct += best.identity == truth
        print(
            f"{path.parent.name}/{path.name}: {best.identity or 'unknown'} "
            f"({best.similarity:.3f}, margin {best.margin:.3f})"
        )
    seconds = time.perf_counter() - started
    print(f"rank-1 correct: {correct}/{len(probes)} ({seconds:.1f} s with detection)")
    fr.gallery.close()


if __name__ == "__main__":
    main()
