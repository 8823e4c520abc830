"""The "open" preset, `FaceRecognizer()`'s default: CenterFace + dlib's ResNet converted to
ONNX on first use, with thresholds calibrated on facekit-shared-v1 (issue 14, items 5-6).

Offline: the models come from ``models_dir`` (``centerface/centerface.onnx`` and
``dlib/dlib_face_recognition_resnet_model_v1.dat``); the conversion goes to an empty cache of
this module.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.detectors.centerface import CenterFace
from facekit.detectors.scrfd import SCRFD
from facekit.errors import ConfigError, ModelError
from facekit.evaluation import calibrate, pair_scores, roc_auc
from facekit.presets import PRESETS
from facekit.zoo import get_spec


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty cache for this module; no downloads."""
    folder = tmp_path_factory.mktemp("open-preset-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACEKIT_CACHE", str(folder))
        patch.setenv("FACEKIT_OFFLINE", "1")
        patch.delenv("FACEKIT_HOME", raising=False)
        yield folder


@pytest.fixture(scope="module")
def default(cache: Path, models_dir: Path) -> FaceRecognizer:
    assert not list(cache.rglob("*.onnx"))  # nothing converted before
    return FaceRecognizer(model_dir=models_dir)


def test_default_builds_centerface_and_converted_dlib_resnet(
    default: FaceRecognizer, cache: Path
) -> None:
    assert isinstance(default.detector, CenterFace)
    embedder = default.embedder
    assert embedder.name == "dlib_resnet_v1"
    assert (embedder.dim, embedder.template) == (128, "dlib150")
    # the .dat of the model folder was converted into the (empty) cache, by its sha256
    spec = get_spec("dlib_resnet_v1")
    assert spec.convert is not None
    assert spec.files[0].sha256 is not None
    converted = cache / "converted" / spec.files[0].sha256 / spec.convert.output.name
    assert converted.is_file()
    assert embedder.sha256 == spec.convert.output.sha256
    thresholds = default.thresholds
    assert thresholds == spec.thresholds
    assert 0 < thresholds.likely <= thresholds.same < 1
    assert "FAR 0.01" in thresholds.protocol
    assert "FAR 0.001" in thresholds.protocol


def test_default_tells_same_from_different_people(default: FaceRecognizer, data_dir: Path) -> None:
    openface = data_dir / "openface"
    for a, b in [("lennon-1", "lennon-2"), ("clapton-1", "clapton-2")]:
        result = default.verify(openface / f"{a}.jpg", openface / f"{b}.jpg")
        assert result.same, (a, b, result.similarity)
        assert result.verdict == "same"  # measured 0.956 and 0.959; same = 0.936
        assert result.face_a.embedding.shape == (128,)
    for a, b in [("lennon-1", "clapton-1"), ("carell", "adams"), ("lennon-2", "carell")]:
        result = default.verify(openface / f"{a}.jpg", openface / f"{b}.jpg")
        assert not result.same, (a, b, result.similarity)
        assert result.verdict == "different"  # measured <= 0.884; likely = 0.922


def test_explicit_open_preset_is_the_default(
    default: FaceRecognizer, models_dir: Path, data_dir: Path
) -> None:
    explicit = FaceRecognizer(preset="open", model_dir=models_dir)
    assert isinstance(explicit.detector, CenterFace)
    assert explicit.embedder.sha256 == default.embedder.sha256
    assert explicit.thresholds == default.thresholds
    photo = data_dir / "openface/lennon-1.jpg"
    np.testing.assert_allclose(explicit.embed(photo), default.embed(photo), atol=1e-6)


def test_explicit_detector_model_replaces_only_the_detector(
    default: FaceRecognizer, models_dir: Path, data_dir: Path
) -> None:
    mixed = FaceRecognizer(detector_model="scrfd_2.5g", model_dir=models_dir)
    assert isinstance(mixed.detector, SCRFD)
    assert mixed.embedder.name == "dlib_resnet_v1"
    assert mixed.embedder.sha256 == default.embedder.sha256
    assert mixed.thresholds == default.thresholds
    openface = data_dir / "openface"
    assert mixed.verify(openface / "lennon-1.jpg", openface / "lennon-2.jpg").same


@pytest.mark.parametrize("name", ["closed", "Open", "", ["open"]])
def test_unknown_preset_is_a_config_error(name: object, cache: Path, models_dir: Path) -> None:
    with pytest.raises(ConfigError, match="unknown preset"):
        FaceRecognizer(preset=name, model_dir=models_dir)  # type: ignore[arg-type]


def test_buffalo_l_offline_without_its_files_is_a_model_error(cache: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"'scrfd_10g' needs det_10g\.onnx.*downloads are off"):
        FaceRecognizer(preset="buffalo_l", model_dir=tmp_path, download=False)


def test_licence_classes_of_the_presets() -> None:
    assert PRESETS["open"].research_only is False
    buffalos = [name for name in PRESETS if name.startswith("buffalo_")]
    assert buffalos
    assert all(PRESETS[name].research_only is True for name in buffalos)
    for preset in PRESETS.values():  # every preset names zoo models
        assert get_spec(preset.detector_model).task == "detection"
        assert get_spec(preset.embedder_model).task == "recognition"


@pytest.mark.slow
def test_thresholds_reproduce_from_the_stated_protocol(
    cache: Path, shared_dir: Path, report: Callable[[str], None]
) -> None:
    """The zoo's numbers are what scripts/calibrate_thresholds.py gives with CenterFace."""
    spec = importlib.util.spec_from_file_location(
        "calibrate", Path(__file__).resolve().parents[1] / "scripts/calibrate_thresholds.py"
    )
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    embeddings, labels = script.embed_calibration_set(shared_dir, "centerface", "dlib_resnet_v1")
    genuine, impostor = pair_scores(embeddings, labels)
    assert (genuine.size, impostor.size) == (1803, 83275)
    auc = roc_auc(genuine, impostor)
    report(f"open preset (CenterFace + dlib_resnet_v1) ROC AUC on facekit-shared-v1: {auc:.6f}")
    assert auc > 0.9999  # measured 0.999963
    measured, likely, same = calibrate(genuine, impostor)
    recorded = get_spec("dlib_resnet_v1").thresholds
    assert recorded is not None
    assert abs(measured.likely - recorded.likely) < 0.003
    assert abs(measured.same - recorded.same) < 0.003
    assert likely.tar > 0.99
    assert same.tar > 0.98


def test_choose_preset_example_runs(cache: Path, models_dir: Path, data_dir: Path) -> None:
    photos = [data_dir / "openface" / name for name in ("lennon-1.jpg", "lennon-2.jpg")]
    photos.append(data_dir / "openface" / "clapton-1.jpg")
    example = Path(__file__).resolve().parents[1] / "examples" / "choose_preset.py"
    done = subprocess.run(
        [sys.executable, str(example), *map(str, photos), "--model-dir", str(models_dir)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FACEKIT_CACHE": str(cache), "FACEKIT_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "open       centerface + dlib_resnet_v1: commercial use allowed"
    assert "buffalo_l  scrfd_10g + arcface_r50: research only" in lines
    verdicts = [line.rsplit("-> ", 1)[1] for line in lines if " vs " in line]
    assert verdicts == ["same", "different", "different"]
