"""Enrol a folder per person on Ray: actors detect and embed, this process writes the gallery.

    python examples/distributed_enroll.py ../shared/data/orl_faces --model-dir ../shared/models

starts a local Ray (all the cores of this machine) and enrols the 400 ORL photos into a
temporary SQLite gallery; ``--gallery milvus-lite:///tmp/orl.db`` writes to Milvus Lite
instead. On a cluster, start Ray on every node (``ray start --head`` on one,
``ray start --address=HEAD:6379`` on the others), install facekit on each, put the photos
on a file system every node sees, and run this script on the head node with
``--address auto`` (or ``--address ray://HEAD:10001`` from outside the cluster). Nodes with
GPUs get one actor per GPU (install ``onnxruntime-gpu`` there).

Running it again adds nothing: every photo is recognised by its content hash and skipped.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from facekit import distributed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="folder per person: FOLDER/NAME/*.png")
    parser.add_argument("--gallery", help="gallery path or URI (default: a temporary file)")
    parser.add_argument("--model-dir", help="folder with the model files")
    parser.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    parser.add_argument("--actors", type=int, help="actor pool size (default: one per CPU/GPU)")
    args = parser.parse_args()

    gallery = args.gallery or str(Path(tempfile.mkdtemp()) / "registry.facekit")
    small = args.model_dir is not None
    started = time.perf_counter()
    report = distributed.enroll(
        args.folder,
        gallery=gallery,
        address=args.address,
        actors=args.actors,
        # the small models from ../shared/models, and padding for ORL's tight face crops
        detector_model="scrfd_2.5g" if small else None,
        embedder_model="mobilefacenet_128d" if small else None,
        model_dir=args.model_dir,
        detector_options={"padding": 0.5, "input_size": (320, 320)},
    )
    seconds = time.perf_counter() - started
    print(f"{report} -> {gallery} in {seconds:.1f} s (Ray start-up included)")
    for kind, problems in report.failures_by_reason().items():
        print(f"  {kind}: {len(problems)}, e.g. {problems[0].source}")


if __name__ == "__main__":
    main()
