"""Embedder instances plug into `FaceRecognizer` whether or not they have thresholds.

On Python < 3.12 ``isinstance`` against a runtime-checkable protocol reads every property,
so an embedder whose ``thresholds`` raised could not be passed as an instance at all. Each
backend is checked here on the CI's Python: real weights where the shared folder has them
(an unlisted copy of MobileFaceNet), random-weight checkpoints in the official layouts for
the torch backends (as tests/test_torch_embedders.py builds them).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch

from facekit import FaceRecognizer
from facekit.detectors import SCRFD
from facekit.embedders import AdaFace, ArcFace, FaceNet
from facekit.embedders.arcface_mxnet import ArcFaceMXNet
from facekit.errors import ConfigError
from facekit.io import load_image
from facekit.protocols import Detector, Embedder
from facekit.types import Thresholds
from test_torch_embedders import _facenet_state, save_adaface_ckpt

_GIVEN = Thresholds(0.2, 0.3, "given by the test")


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> SCRFD:
    return SCRFD("scrfd_500m", model_dir=models_dir)


@pytest.fixture(scope="module")
def unlisted_onnx(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MobileFaceNet with one changed docstring: same network, a sha256 the zoo does not
    know, hence an unlisted model without thresholds."""
    graph = onnx.load(str(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx"))
    graph.doc_string = "an unlisted copy"
    path = tmp_path_factory.mktemp("unlisted") / "my_embedder.onnx"
    onnx.save(graph, str(path))
    return path


@pytest.fixture(scope="module")
def adaface_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_adaface_ckpt(tmp_path_factory.mktemp("adaface") / "my_adaface.ckpt")


@pytest.fixture(scope="module")
def facenet_pt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("facenet") / "my_facenet.pt"
    torch.save(_facenet_state(), path)
    return path


def _embedder(kind: str, path: Path, thresholds: Thresholds | None = None) -> Embedder:
    backend = {"arcface": ArcFace, "adaface": AdaFace, "facenet": FaceNet}[kind]
    embedder: Embedder = backend(path, thresholds=thresholds, flip=False)  # one pass: faster
    return embedder


@pytest.mark.parametrize("kind", ["arcface", "adaface", "facenet"])
def test_instance_without_thresholds_plugs_in(
    kind: str,
    unlisted_onnx: Path,
    adaface_ckpt: Path,
    facenet_pt: Path,
    detector: SCRFD,
    data_dir: Path,
) -> None:
    path = {"arcface": unlisted_onnx, "adaface": adaface_ckpt, "facenet": facenet_pt}[kind]
    embedder = _embedder(kind, path)
    assert embedder.thresholds is None  # reading it never raises
    assert isinstance(embedder, Embedder)
    assert isinstance(detector, Detector)

    fr = FaceRecognizer(detector=detector, embedder=embedder)
    photo = load_image(data_dir / "openface/clapton-2.jpg")
    vector = fr.embed(photo)
    assert vector.shape == (embedder.dim,)
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)
    # a verdict needs thresholds: the recogniser asks for them with the clear message
    with pytest.raises(ConfigError, match="no calibrated thresholds for my_"):
        _ = fr.thresholds
    assert FaceRecognizer(detector=detector, embedder=embedder, thresholds=_GIVEN).thresholds is (
        _GIVEN
    )


def test_thresholds_given_to_the_backend_are_used(
    unlisted_onnx: Path, detector: SCRFD, data_dir: Path
) -> None:
    embedder = _embedder("arcface", unlisted_onnx, _GIVEN)
    assert embedder.thresholds is _GIVEN
    assert isinstance(embedder, Embedder)
    fr = FaceRecognizer(detector=detector, embedder=embedder)
    result = fr.verify(data_dir / "openface/clapton-1.jpg", data_dir / "openface/clapton-2.jpg")
    assert result.thresholds is _GIVEN


def test_listed_model_keeps_its_calibrated_thresholds(models_dir: Path) -> None:
    from facekit.zoo import get_spec

    embedder = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    assert embedder.thresholds == get_spec("mobilefacenet_128d").thresholds
    assert embedder.thresholds is not None
    assert isinstance(embedder, Embedder)


def test_mxnet_embedder_property_does_not_raise() -> None:
    """MXNet is not in this environment: the property itself is checked on a bare
    object holding no thresholds (the MXNet suite builds the real one)."""
    bare = SimpleNamespace(_thresholds=None, name="model_mobilefacenet")
    assert ArcFaceMXNet.thresholds.fget(bare) is None  # type: ignore[attr-defined]
    bare_given = SimpleNamespace(_thresholds=_GIVEN, name="model_mobilefacenet")
    assert ArcFaceMXNet.thresholds.fget(bare_given) is _GIVEN  # type: ignore[attr-defined]
