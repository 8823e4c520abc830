"""ArcFace-style embedder on the real MobileFaceNet weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from facekit.aligners import SimilarityAligner
from facekit.detectors import SCRFD
from facekit.embedders import ArcFace
from facekit.errors import ConfigError, ModelError
from facekit.io import load_image


@pytest.fixture(scope="module")
def crops(models_dir: Path, data_dir: Path) -> np.ndarray:
    image = load_image(data_dir / "insightface_samples/t1.jpg")
    faces = SCRFD("scrfd_2.5g", model_dir=models_dir).detect(image)
    return SimilarityAligner().align(image, np.stack([f.landmarks for f in faces]))


@pytest.fixture(scope="module")
def embedder(models_dir: Path) -> ArcFace:
    return ArcFace("mobilefacenet_128d", model_dir=models_dir)


def test_embeddings_are_unit_float32(embedder: ArcFace, crops: np.ndarray) -> None:
    vectors = embedder.embed(crops)
    assert vectors.shape == (6, 128)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == 128
    assert embedder.template == "arcface112"


def test_flip_average_is_the_normalised_sum_of_both_views(
    models_dir: Path, embedder: ArcFace, crops: np.ndarray
) -> None:
    session = ort.InferenceSession(
        str(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx"),
        providers=["CPUExecutionProvider"],
    )

    def raw(crop: np.ndarray) -> np.ndarray:
        blob = ((crop.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[None]
        return session.run(None, {"input": blob})[0][0]

    plain = ArcFace("mobilefacenet_128d", model_dir=models_dir, flip=False).embed(crops)
    flipped = embedder.embed(crops)
    for index, crop in enumerate(crops):
        expected = raw(crop) + raw(crop[:, ::-1])
        assert np.allclose(flipped[index], expected / np.linalg.norm(expected), atol=1e-5)
        single = raw(crop)
        assert np.allclose(plain[index], single / np.linalg.norm(single), atol=1e-5)
    # flipping changes the embedding, but not its identity
    cosine = np.sum(plain * flipped, axis=1)
    assert np.all(cosine < 0.9999)
    assert np.all(cosine > 0.8)


def test_batch_and_single_crop_agree(embedder: ArcFace, crops: np.ndarray) -> None:
    batch = embedder.embed(crops)
    one = embedder.embed(crops[3])
    assert one.shape == (1, 128)
    assert np.allclose(batch[3], one[0], atol=1e-6)


def test_wrong_crops_and_wrong_models(embedder: ArcFace, models_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"\(N, 112, 112, 3\)"):
        embedder.embed(np.zeros((2, 96, 112, 3), np.uint8))
    with pytest.raises(ConfigError, match="uint8"):
        embedder.embed(np.zeros((2, 112, 112, 3), np.float32))
    with pytest.raises(ConfigError, match="no crops"):
        embedder.embed(np.zeros((0, 112, 112, 3), np.uint8))
    with pytest.raises(ModelError, match="detection model"):
        ArcFace(models_dir / "scrfd/det_500m.onnx")
    with pytest.raises(ModelError, match="not a recognition model"):
        ArcFace(models_dir / "retinaface_mnet025_onnx/retinaface_mnet025_biubug6_640.onnx")


def test_unlisted_model_has_no_thresholds(models_dir: Path, tmp_path: Path) -> None:
    # The same network in a file the zoo does not know (an extra protobuf field changes its
    # sha256): same embeddings, but no thresholds (None; `FaceRecognizer` asks for them).
    copy = tmp_path / "my_recogniser.onnx"
    copy.write_bytes(
        (models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx").read_bytes() + b"\xc0\x3e\x01"
    )  # + unknown field 1000
    unlisted = ArcFace(copy, mean=127.5, std=128.0)
    assert unlisted.name == "my_recogniser.onnx"
    assert unlisted.thresholds is None
    listed = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    crops = np.random.default_rng(1).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    assert np.allclose(unlisted.embed(crops), listed.embed(crops), atol=1e-6)
