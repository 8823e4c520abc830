"""Find a person in a folder of photos: MTCNN + AdaFace, the classic torch pipeline.

    python examples/mtcnn_adaface_find.py QUERY.jpg --database PHOTOS/ --threshold 0.3

embeds the largest face of every photo under ``--database`` (recursively, with a progress
bar), compares the query's face with all of them at once, and writes to ``--out``:
one side-by-side picture per match (query face | matched face | similarity) and
``non_matches.txt`` listing the photos below the threshold and those without a face.

AdaFace's official weights download from Google Drive on first use (research use only);
facekit has no calibrated threshold for them, so ``--threshold`` is required with AdaFace:
calibrate one on your own pairs (``facekit.evaluation.calibrate``). Any other recogniser
works too; offline, with the small models beside this repository:

    python examples/mtcnn_adaface_find.py ../shared/data/openface/lennon-1.jpg \\
        --database ../shared/data/openface --embedder arcface \\
        --embedder-model mobilefacenet_128d --model-dir ../shared/models --out /tmp/find
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facekit import Face, FaceRecognizer
from facekit.draw import save_image, side_by_side
from facekit.errors import ConfigError, FacekitError
from facekit.sources import IMAGE_SUFFIXES


def embed_largest_faces(
    fr: FaceRecognizer, photos: list[Path], batch_size: int, progress: bool
) -> tuple[list[tuple[Path, Face]], list[str]]:
    """The largest face of each photo, detected and embedded in batches; and one line per
    photo that gave none (unreadable, or no face)."""
    from tqdm.auto import tqdm

    found, problems = [], []
    for start in tqdm(range(0, len(photos), batch_size), unit="batch", disable=not progress):
        batch = photos[start : start + batch_size]
        try:
            results = fr.faces_batch(batch)
        except FacekitError:  # a bad file spoils the batch: redo it photo by photo
            results = []
            for photo in batch:
                try:
                    results.extend(fr.faces_batch([photo]))
                except FacekitError as exc:
                    results.append([])
                    problems.append(f"{photo}: {exc}")
                    continue
                if not results[-1]:
                    problems.append(f"{photo}: no face")
        else:
            empty = [photo for photo, faces in zip(batch, results, strict=True) if not faces]
            problems.extend(f"{photo}: no face" for photo in empty)
        for photo, faces in zip(batch, results, strict=True):
            if faces:
                found.append((photo, max(faces, key=lambda f: f.detection.area)))
    return found, problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("query", type=Path, help="photo of the person to find")
    parser.add_argument("--database", type=Path, required=True, help="folder of photos")
    parser.add_argument("--embedder", default="adaface", help="adaface (default), arcface ...")
    parser.add_argument("--embedder-model", help="zoo name or checkpoint path")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--threshold", type=float, help="cosine similarity for a match")
    parser.add_argument("--out", type=Path, default=Path("matches"), help="output folder")
    parser.add_argument("--batch-size", type=int, default=8, help="photos per batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()

    fr = FaceRecognizer(
        detector="mtcnn",
        embedder=args.embedder,
        embedder_model=args.embedder_model,
        model_dir=args.model_dir,
    )
    try:
        threshold = args.threshold if args.threshold is not None else fr.thresholds.likely
    except ConfigError as exc:
        raise SystemExit(f"pass --threshold: {exc}") from None

    query = fr.faces(args.query)
    if not query:
        raise SystemExit(f"no face in {args.query}")
    face = max(query, key=lambda f: f.detection.area)

    photos = sorted(
        p
        for p in args.database.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() != args.query.resolve()
    )
    found, problems = embed_largest_faces(fr, photos, args.batch_size, not args.no_progress)

    similarities = np.array([f.embedding for _, f in found]) @ face.embedding
    args.out.mkdir(parents=True, exist_ok=True)
    non_matches = list(problems)
    for rank, index in enumerate(np.argsort(-similarities), 1):
        photo, match = found[index]
        similarity = float(similarities[index])
        if similarity < threshold:
            non_matches.append(f"{photo}: similarity {similarity:.3f}")
            continue
        target = args.out / f"{rank:03d}_{photo.stem}.png"
        picture = side_by_side(
            face.crop,
            match.crop,
            similarity=similarity,
            query_label="query",
            match_label=photo.name,
        )
        save_image(target, picture)
        print(f"match: {photo} similarity {similarity:.3f} -> {target}")
    (args.out / "non_matches.txt").write_text("\n".join(non_matches) + "\n", encoding="utf-8")
    print(
        f"{len(photos)} photos, {len(photos) - len(non_matches)} matches at >= {threshold:.3f}, "
        f"{len(non_matches)} non-matches listed in {args.out / 'non_matches.txt'}"
    )


if __name__ == "__main__":
    main()
