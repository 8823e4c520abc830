"""Build a face registry from a folder per person, then identify new photos.

    python examples/build_registry.py ../shared/data/orl_faces --gallery /tmp/orl.facekit \\
        --model-dir ../shared/models --tight-crops --hold-out 8 9 10

Enrols every image of each person except the held-out numbers (ORL's files are 1.png ...
10.png), then identifies the held-out images and prints who each one is. Crops whose face
fills the frame (like ORL's) enrol with the default options: where the detector finds no
face, a second pass made for such crops runs. ``--tight-crops`` pads every image before the
first pass instead, which saves that second pass when all inputs are tight crops.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from facekit import FaceRecognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder per person: FOLDER/NAME/*.png")
    parser.add_argument("--gallery", type=Path, help="gallery file (default: a temporary one)")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--tight-crops", action="store_true", help="pad images before detection")
    parser.add_argument("--hold-out", nargs="*", default=["10"], help="file stems to identify")
    args = parser.parse_args()

    gallery = args.gallery or Path(tempfile.mkdtemp()) / "registry.facekit"
    small = args.model_dir is not None
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g" if small else None,
        embedder_model="mobilefacenet_128d" if small else None,
        model_dir=args.model_dir,
        detector_options={"padding": 0.5, "input_size": (320, 320)} if args.tight_crops else None,
        gallery=gallery,
    )

    # 1. Enrol: (identity, image) pairs for everything but the held-out files.
    images = sorted(args.folder.glob("*/*"))
    enrol = [(p.parent.name, p) for p in images if p.stem not in args.hold_out]
    probes = [(p.parent.name, p) for p in images if p.stem in args.hold_out]
    report = fr.enroll(enrol)  # shows a progress bar; re-running skips what is enrolled
    print(f"{report}; gallery {gallery}: {len(fr.gallery)} identities")
    for kind, problems in report.failures_by_reason().items():
        print(f"  not enrolled, {kind}: {len(problems)} (e.g. {problems[0].reason})")
    for face in report.several_faces:
        print(f"  check {face.source}: {face.faces_found} faces, the largest was enrolled")

    # 2. Identify the held-out photos.
    correct = 0
    for truth, path in probes:
        matches = fr.identify(path)
        if not matches:
            print(f"{path}: no face")
            continue
        best = matches[0]
        correct += best.identity == truth
        who = best.identity or "unknown"
        where = f"{path.parent.name}/{path.name}"
        print(f"{where}: {who} ({best.similarity:.3f}, margin {best.margin:.3f})")
    print(f"rank-1 correct: {correct}/{len(probes)}")


if __name__ == "__main__":
    main()
