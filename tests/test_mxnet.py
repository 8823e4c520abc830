"""MXNet backends on the real checkpoints in ``shared/models``: RetinaFace against SCRFD,
the MXNet MobileFaceNet on real pairs, and the ONNX conversions against their originals.

Run in the ``[mxnet]`` environment (``.ci/run`` does, on every run):
``.venv-mxnet/bin/python -m pytest -m mxnet tests/test_mxnet.py``. Elsewhere these tests
are deselected (``-m 'not mxnet'`` in the project's pytest options); nothing here imports
mxnet at collection time.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.detectors import SCRFD, RetinaFace
from facekit.errors import ConfigError, DeviceError, ModelError, ModelNotFoundError
from facekit.io import load_image
from facekit.types import Thresholds

pytestmark = pytest.mark.mxnet

MNET = "retinaface_mnet025_mxnet/mnet.25"
MOBILEFACENET = "mobilefacenet_mxnet/model_mobilefacenet"


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def retinaface(models_dir: Path) -> RetinaFace:
    return RetinaFace(models_dir / MNET)


@pytest.fixture(scope="module")
def converted(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from facekit.convert import mxnet_to_onnx

    out = tmp_path_factory.mktemp("converted")
    detector = mxnet_to_onnx(models_dir / MNET, out / "mnet25.onnx")
    recogniser = mxnet_to_onnx(models_dir / MOBILEFACENET, out / "mobilefacenet.onnx")
    assert (detector.task, detector.input_shape) == ("detection", (1, 3, 640, 640))
    assert (recogniser.task, recogniser.input_shape) == ("recognition", (-1, 3, 112, 112))
    assert max(detector.max_relative_error, recogniser.max_relative_error) < 1e-4
    return {"detector": detector.path, "recogniser": recogniser.path}


@pytest.mark.parametrize(
    ("photo", "faces"),
    [
        ("insightface_samples/t1.jpg", 6),
        ("facenet_pytorch/multiface.jpg", 6),
        ("mtcnn/ivan.jpg", 1),
        ("openface/longoria-cooper.jpg", 2),
    ],
)
def test_retinaface_agrees_with_scrfd(
    retinaface: RetinaFace, models_dir: Path, data_dir: Path, photo: str, faces: int
) -> None:
    """Two independent detectors on the same faces: boxes overlap, landmarks coincide."""
    image = load_image(data_dir / photo)
    reference = SCRFD(models_dir / "scrfd/det_2.5g.onnx").detect(image)
    found = retinaface.detect(image)
    assert len(found) == len(reference) == faces
    for face in reference:
        match = max(found, key=lambda d: _iou(d.box, face.box))
        assert _iou(match.box, face.box) >= 0.7
        error = np.linalg.norm(match.landmarks - face.landmarks, axis=1).max()
        assert error < 0.08 * face.width, (photo, error, face.width)
        eye_l, eye_r = match.landmarks[:2]
        assert eye_l[0] < eye_r[0]


def test_retinaface_empty_batch_flip_and_fixed_size(
    retinaface: RetinaFace, models_dir: Path, data_dir: Path
) -> None:
    empty = data_dir / "mtcnn/no-faces.jpg"
    ivan = data_dir / "mtcnn/ivan.jpg"
    assert [len(f) for f in retinaface.detect_batch([empty, ivan, empty])] == [0, 1, 0]
    (plain,) = retinaface.detect(ivan)
    (flipped,) = RetinaFace(models_dir / MNET, flip=True).detect(ivan)
    assert _iou(plain.box, flipped.box) > 0.9  # the mirror's box, mapped back, merges in
    assert np.abs(plain.landmarks - flipped.landmarks).max() < 3.0
    (fixed,) = RetinaFace(models_dir / MNET, input_size=(640, 640)).detect(ivan)
    assert _iou(plain.box, fixed.box) > 0.85
    with pytest.raises(ConfigError):
        RetinaFace(models_dir / MNET, target_size=1200, max_size=1000)


def test_retinaface_by_zoo_name_and_errors(models_dir: Path, tmp_path: Path) -> None:
    assert RetinaFace("retinaface_mnet025_mxnet", model_dir=models_dir).name == (
        "retinaface_mnet025_mxnet"
    )
    with pytest.raises(ModelNotFoundError, match=r"symbol\.json"):
        RetinaFace(tmp_path / "nothing")
    with pytest.raises(DeviceError):
        RetinaFace(models_dir / MNET, device="gpu:0")
    # a recogniser's checkpoint is not a detector
    with pytest.raises(ModelError):
        RetinaFace(models_dir / MOBILEFACENET)
    # symbol and params of different models: the zoo knows these params
    mixed = tmp_path / "mixed"
    shutil.copy(models_dir / f"{MNET}-symbol.json", tmp_path / "mixed-symbol.json")
    shutil.copy(models_dir / f"{MOBILEFACENET}-0200.params", tmp_path / "mixed-0000.params")
    with pytest.raises(ModelError, match="a recognition model, not a detection model"):
        RetinaFace(mixed)
    # ... and unlisted params that lack some of the symbol's parameters
    import mxnet as mx

    saved = mx.nd.load(str(models_dir / f"{MNET}-0000.params"))
    del saved[next(key for key in saved if key.startswith("arg:"))]
    mx.nd.save(str(tmp_path / "mixed-0000.params"), saved)
    with pytest.raises(ModelError, match="do not belong together"):
        RetinaFace(mixed)
    (tmp_path / "mixed-0000.params").write_bytes(b"not params")
    with pytest.raises(ModelError, match="not a loadable MXNet checkpoint"):
        RetinaFace(mixed)


def test_batch_norm_statistics_renamed_to_the_symbols(
    models_dir: Path, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Checkpoints in the wild spell batch-norm statistics *_moving_* in one file and
    *_running_* in the other; the loader maps them (and says so at debug level)."""
    import mxnet as mx

    saved = mx.nd.load(str(models_dir / f"{MNET}-0000.params"))
    swapped = {}
    for key, value in saved.items():
        if "_running_" in key:
            key = key.replace("_running_", "_moving_")
        elif "_moving_" in key:
            key = key.replace("_moving_", "_running_")
        swapped[key] = value
    assert swapped.keys() != saved.keys()
    mx.nd.save(str(tmp_path / "mnet.25-0000.params"), swapped)
    shutil.copy(models_dir / f"{MNET}-symbol.json", tmp_path / "mnet.25-symbol.json")
    with caplog.at_level(logging.DEBUG, logger="facekit._mxnet"):
        renamed = RetinaFace(tmp_path / "mnet.25")
    assert "renamed 94 batch-norm statistics" in caplog.text
    image = data_dir / "insightface_samples/t1.jpg"
    original = RetinaFace(models_dir / MNET).detect(image)
    again = renamed.detect(image)
    assert [d.box for d in again] == [d.box for d in original]


def test_mxnet_mobilefacenet_ranks_pairs(models_dir: Path, data_dir: Path) -> None:
    fr = FaceRecognizer(
        detector="retinaface",
        embedder="arcface-mxnet",
        model_dir=models_dir,
        thresholds=Thresholds(0.3, 0.4),
    )
    openface = data_dir / "openface"
    same = [("lennon-1", "lennon-2"), ("clapton-1", "clapton-2")]
    different = [("lennon-1", "clapton-1"), ("carell", "adams"), ("lennon-2", "carell")]
    score = {
        pair: fr.verify(openface / f"{pair[0]}.jpg", openface / f"{pair[1]}.jpg").similarity
        for pair in same + different
    }
    assert min(score[p] for p in same) > max(score[p] for p in different) + 0.2
    with pytest.raises(ConfigError, match="no calibrated thresholds"):
        FaceRecognizer(
            detector="retinaface", embedder="arcface-mxnet", model_dir=models_dir
        ).verify(openface / "lennon-1.jpg", openface / "lennon-2.jpg")


def test_mxnet_embedder_instance_plugs_in(models_dir: Path, data_dir: Path) -> None:
    """An instance without thresholds passes the protocol check (on Python < 3.12 that check
    reads the property) and is asked for thresholds only when a decision needs them."""
    from facekit.embedders.arcface_mxnet import ArcFaceMXNet
    from facekit.protocols import Embedder

    embedder = ArcFaceMXNet(models_dir / MOBILEFACENET)
    assert embedder.thresholds is None
    assert isinstance(embedder, Embedder)
    fr = FaceRecognizer(detector=SCRFD("scrfd_500m", model_dir=models_dir), embedder=embedder)
    assert fr.embed(data_dir / "openface/lennon-1.jpg").shape == (embedder.dim,)
    with pytest.raises(ConfigError, match="no calibrated thresholds"):
        _ = fr.thresholds


def test_converted_recogniser_agrees_with_mxnet(
    converted: dict[str, Path], models_dir: Path, data_dir: Path
) -> None:
    from facekit.aligners import SimilarityAligner
    from facekit.embedders import ArcFace
    from facekit.embedders.arcface_mxnet import ArcFaceMXNet

    detector = SCRFD(models_dir / "scrfd/det_2.5g.onnx")
    aligner = SimilarityAligner()
    crops = []
    for name in ("lennon-1", "clapton-2", "carell", "adams"):
        image = load_image(data_dir / f"openface/{name}.jpg")
        crops.append(aligner.align(image, detector.detect(image)[0].landmarks)[0])
    batch = np.stack(crops)
    mxnet_embeddings = ArcFaceMXNet(models_dir / MOBILEFACENET, batch_size=3).embed(batch)
    onnx_embedder = ArcFace(converted["recogniser"])  # normalises in its graph: mean 0, std 1
    onnx_embeddings = onnx_embedder.embed(batch)
    cosine = (mxnet_embeddings * onnx_embeddings).sum(axis=1)
    assert cosine.min() >= 0.999
    assert onnx_embedder.batch_size > 1  # the conversion keeps a dynamic batch


def test_converted_detector_gives_the_same_boxes(
    converted: dict[str, Path], models_dir: Path, data_dir: Path
) -> None:
    onnx_detector = RetinaFace(converted["detector"])  # core install: no mxnet needed
    assert onnx_detector.input_size == (640, 640)
    original = RetinaFace(models_dir / MNET, input_size=(640, 640))
    for photo in ("insightface_samples/t1.jpg", "facenet_pytorch/multiface.jpg"):
        image = load_image(data_dir / photo)
        expected = original.detect(image)
        found = onnx_detector.detect(image)
        assert len(found) == len(expected) >= 6
        for face in expected:
            assert max(_iou(face.box, d.box) for d in found) >= 0.99


def test_convert_command_line(models_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "cli.onnx"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "facekit",
            "models",
            "convert-mxnet",
            str(models_dir / MOBILEFACENET),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "recognition" in done.stdout
    assert "ArcFace(path)" in done.stdout
    assert target.exists()
    assert not list(tmp_path.glob("*.part"))


def test_retinaface_gallery_example(models_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    people = tmp_path / "people"
    people.mkdir()
    for name, photo in (("lennon", "lennon-1"), ("clapton", "clapton-1"), ("carell", "carell")):
        shutil.copy(data_dir / f"openface/{photo}.jpg", people / f"{name}.jpg")
    out = tmp_path / "named"
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "examples/retinaface_gallery.py"),
            str(people),
            str(data_dir / "openface/lennon-2.jpg"),
            str(data_dir / "openface/clapton-2.jpg"),
            str(data_dir / "openface/longoria-cooper.jpg"),
            "--model-dir",
            str(models_dir),
            "--threshold",
            "0.4",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "gallery: carell, clapton, lennon" in done.stdout
    assert "lennon-2.jpg: lennon" in done.stdout
    assert "clapton-2.jpg: clapton" in done.stdout
    assert done.stdout.count("longoria-cooper.jpg: unknown") == 2  # neither is enrolled
    assert sorted(p.name for p in out.iterdir()) == [
        "clapton-2.png",
        "lennon-2.png",
        "longoria-cooper.png",
    ]
