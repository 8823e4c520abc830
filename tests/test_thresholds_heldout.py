"""The shipped MobileFaceNet thresholds on colour photos that did NOT set them.

The zoo's ``mobilefacenet_128d`` thresholds were set by ``scripts/calibrate_thresholds.py``
on every face of "facekit-shared-v1": all 400 ORL crops (40 people), the openface photos
(lennon x2, clapton x2, carell, adams, longoria-cooper.jpg) and facenet-pytorch's four
photos plus its aligned crop of Bradley Cooper. ``test_recognizer.py`` checks that they
reproduce from that set; this file checks that they hold on other people and photos:

- ``insightface_samples/t1.jpg`` and ``facenet_pytorch/multiface.jpg`` both show the six
  Friends actors, years apart: 6 genuine pairs across the two photos (who is who is read
  from the photos, by the horizontal order of the faces, not from the similarities);
- ``insightface_samples/t2.jpg``-``t6.jpg`` (group photos of other people) and
  ``mtcnn/ivan.jpg``: impostors.

Pairs are taken across different photos only: faces of the same group photo share light,
camera and compression, and their impostor similarities run higher (measured and reported,
not asserted; see the report line).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.evaluation import roc_auc
from facekit.zoo import get_spec

REPO = Path(__file__).resolve().parents[1]

# Left to right in each photo.
FRIENDS = {
    "insightface_samples/t1.jpg": ("aniston", "cox", "schwimmer", "perry", "leblanc", "kudrow"),
    "facenet_pytorch/multiface.jpg": ("aniston", "perry", "schwimmer", "kudrow", "cox", "leblanc"),
}
STRANGERS = (
    "insightface_samples/t2.jpg",
    "insightface_samples/t3.jpg",
    "insightface_samples/t4.jpg",
    "insightface_samples/t5.jpg",
    "insightface_samples/t6.jpg",
    "mtcnn/ivan.jpg",
)


def _calibration_paths(shared_dir: Path) -> set[Path]:
    spec = importlib.util.spec_from_file_location(
        "calibrate", REPO / "scripts/calibrate_thresholds.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    paths, _labels = module.shared_faces(shared_dir)
    # longoria-cooper.jpg is embedded separately by the script
    return {path.resolve() for path in paths} | {
        (shared_dir / "data/openface/longoria-cooper.jpg").resolve()
    }


@pytest.fixture(scope="module")
def held_out(models_dir: Path, data_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(N, 128)`` embeddings, ``(N,)`` identity labels (a stranger's is unique) and
    ``(N,)`` source photos of every face found in the held-out photos."""
    recognizer = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )
    embeddings: list[np.ndarray] = []
    labels: list[str] = []
    sources: list[str] = []
    for photo in (*FRIENDS, *STRANGERS):
        faces = sorted(recognizer.faces(data_dir / photo), key=lambda face: face.box[0])
        names = FRIENDS.get(photo)
        if names is not None:
            assert len(faces) == len(names), photo
        for index, face in enumerate(faces):
            embeddings.append(face.embedding)
            labels.append(names[index] if names is not None else f"{photo}#{index}")
            sources.append(photo)
    return np.stack(embeddings), np.asarray(labels), np.asarray(sources)


def test_the_held_out_photos_were_not_used_for_calibration(
    shared_dir: Path, data_dir: Path
) -> None:
    calibration = _calibration_paths(shared_dir)
    assert len(calibration) == 412  # 400 ORL + 11 photos/crops + longoria-cooper.jpg
    for photo in (*FRIENDS, *STRANGERS):
        assert (data_dir / photo).resolve() not in calibration, photo


@pytest.mark.slow
def test_shipped_thresholds_hold_on_held_out_colour_photos(
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray], report: Callable[[str], None]
) -> None:
    embeddings, labels, sources = held_out
    thresholds = get_spec("mobilefacenet_128d").thresholds
    assert thresholds is not None
    similarity = embeddings @ embeddings.T
    first, second = np.triu_indices(len(labels), 1)
    scores = similarity[first, second]
    same_person = labels[first] == labels[second]
    across = sources[first] != sources[second]
    genuine, impostor = scores[same_person], scores[across & ~same_person]
    within = scores[~across]  # different people of one group photo
    assert genuine.size == 6
    assert impostor.size >= 10_000  # enough to resolve FAR 1e-3

    far_likely = float(np.mean(impostor >= thresholds.likely))
    far_same = float(np.mean(impostor >= thresholds.same))
    report(
        f"MobileFaceNet, held-out colour pairs across photos: AUC "
        f"{roc_auc(genuine, impostor):.5f}, FAR {far_likely:.4f} at likely / {far_same:.5f} "
        f"at same ({impostor.size} impostor pairs), TAR "
        f"{np.mean(genuine >= thresholds.likely):.2f} / {np.mean(genuine >= thresholds.same):.2f}"
        f" ({genuine.size} genuine); within one group photo FAR "
        f"{np.mean(within >= thresholds.likely):.3f} / {np.mean(within >= thresholds.same):.3f} "
        f"({within.size} pairs)"
    )
    # the FAR the zoo's protocol promises (1e-2 at likely, 1e-3 at same) holds on
    # held-out pairs (measured 0.0012 and 0)
    assert far_likely <= 0.01
    assert far_same <= 0.001
    # genuine pairs across a decade: measured 6/6 at likely, 4/6 at same
    assert np.mean(genuine >= thresholds.likely) >= 5 / 6
    assert np.mean(genuine >= thresholds.same) >= 3 / 6
    assert roc_auc(genuine, impostor) > 0.999  # measured 0.9998


def test_each_friends_face_finds_its_person_in_the_other_photo(
    held_out: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    """Rank 1 among the six faces of the other photo, for every face of both photos."""
    embeddings, labels, sources = held_out
    photos = [np.flatnonzero(sources == photo) for photo in FRIENDS]
    for probes, gallery in (photos, photos[::-1]):
        nearest = np.argmax(embeddings[probes] @ embeddings[gallery].T, axis=1)
        assert list(labels[gallery][nearest]) == list(labels[probes])
