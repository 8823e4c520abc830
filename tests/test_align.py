"""5-point similarity alignment: the transform against scikit-image, crops on real faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.transform import SimilarityTransform

from facekit.aligners import TEMPLATES, SimilarityAligner, estimate_similarity
from facekit.detectors import SCRFD
from facekit.errors import ConfigError
from facekit.io import load_image


def test_transform_matches_scikit_image() -> None:
    rng = np.random.default_rng(0)
    target = TEMPLATES["arcface112"].points
    # random faces: template rotated, scaled, shifted, plus noise
    sources = []
    for _ in range(20):
        angle, scale = rng.uniform(-0.8, 0.8), rng.uniform(0.3, 4.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        sources.append(
            target @ rotation.T * scale + rng.uniform(-500, 500, 2) + rng.normal(0, 2, (5, 2))
        )
    matrices = estimate_similarity(np.stack(sources), target)
    for source, matrix in zip(sources, matrices, strict=True):
        reference = (
            SimilarityTransform.from_estimate(source, target)
            if hasattr(SimilarityTransform, "from_estimate")
            else _estimate(source, target)
        )
        assert np.allclose(matrix, reference.params[:2], atol=1e-6)


def _estimate(source: np.ndarray, target: np.ndarray) -> SimilarityTransform:
    transform = SimilarityTransform()
    transform.estimate(source, target)
    return transform


def test_exact_landmarks_map_onto_template() -> None:
    for template in TEMPLATES.values():
        shifted = template.points * 2.5 + np.float32([40, 70])
        matrix = estimate_similarity(shifted[None], template.points)[0]
        mapped = shifted @ matrix[:, :2].T + matrix[:, 2]
        assert np.allclose(mapped, template.points, atol=1e-4)


@pytest.mark.parametrize(
    ("name", "size"),
    [("arcface112", (112, 112)), ("arcface96x112", (96, 112)), ("arcface160", (160, 160))],
)
def test_real_faces_align_onto_each_template(
    models_dir: Path, data_dir: Path, name: str, size: tuple[int, int]
) -> None:
    image = load_image(data_dir / "insightface_samples/t1.jpg")
    faces = SCRFD("scrfd_2.5g", model_dir=models_dir).detect(image)
    landmarks = np.stack([face.landmarks for face in faces])
    aligner = SimilarityAligner(name)
    crops = aligner.align(image, landmarks)
    assert crops.shape == (6, size[1], size[0], 3)
    assert crops.dtype == np.uint8
    # after the warp, the detected landmarks sit close to the template points
    matrices = aligner.transforms(landmarks)
    mapped = np.einsum("nij,nkj->nki", matrices[:, :, :2], landmarks) + matrices[:, None, :, 2]
    residual = np.linalg.norm(mapped - TEMPLATES[name].points, axis=2)  # (faces, 5) pixels
    assert residual.mean() < 0.05 * size[0]  # turned heads leave a few pixels at the nose
    assert residual.max() < 0.15 * size[0]
    # a face is there: crops are not black and differ from each other
    assert crops.mean() > 40
    assert np.abs(crops[0].astype(int) - crops[1]).mean() > 10


def test_single_face_landmarks_and_errors() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    points = TEMPLATES["arcface112"].points + 40
    assert SimilarityAligner().align(image, points).shape == (1, 112, 112, 3)
    with pytest.raises(ConfigError, match="unknown alignment template"):
        SimilarityAligner("nope")
    with pytest.raises(ConfigError, match="NaN"):
        SimilarityAligner().align(image, np.full((5, 2), np.nan))
