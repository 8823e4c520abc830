"""Write a verification pair list (CSV ``img_a,img_b,same``) from the photos in
``shared/data``: every pair of ORL subjects 1-25 (images 1-4) and six OpenFace photos
(Lennon x2, Clapton x2, Carell, Adams): 106 images, 5,565 pairs, 152 of the same person.
Paths are relative to ``shared/data``. Usage::

    python scripts/make_shared_pairs.py --shared ../shared --out shared_pairs.csv
    facekit eval verify --pairs shared_pairs.csv --root ../shared/data ...
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

PHOTOS = {
    "openface/lennon-1.jpg": "lennon",
    "openface/lennon-2.jpg": "lennon",
    "openface/clapton-1.jpg": "clapton",
    "openface/clapton-2.jpg": "clapton",
    "openface/carell.jpg": "carell",
    "openface/adams.jpg": "adams",
}


def pair_rows(data: Path) -> list[str]:
    """The CSV lines, header first, for the images under ``data`` (``shared/data``).

    Raises:
        SystemExit: an image is missing.
    """
    labels = {f"orl_faces/s{s}/{k}.png": f"s{s}" for s in range(1, 26) for k in range(1, 5)}
    labels.update(PHOTOS)
    missing = [name for name in labels if not (data / name).is_file()]
    if missing:
        raise SystemExit(f"missing in {data}: {', '.join(missing)}")
    rows = ["img_a,img_b,same"]
    rows += [f"{a},{b},{int(labels[a] == labels[b])}" for a, b in itertools.combinations(labels, 2)]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--out", type=Path, default=Path("shared_pairs.csv"))
    args = parser.parse_args()
    rows = pair_rows(args.shared / "data")
    args.out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(rows) - 1} pairs of 106 images")


if __name__ == "__main__":
    main()
