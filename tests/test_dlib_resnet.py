"""dlib's face recognition ResNet converted to ONNX without dlib, checked against dlib itself
(``dlib-bin``, a test-only reference) on real chips that dlib cuts from the shared photos."""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dlib
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from facekit.dlib_resnet import dat_to_onnx
from facekit.embedders.arcface import ArcFace
from facekit.errors import BackendError, ModelError
from facekit.io import load_image

DAT = "dlib/dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR = "dlib/shape_predictor_5_face_landmarks.dat"
PHOTOS = (  # (photo, upsamplings dlib's HOG detector needs, faces it finds)
    ("insightface_samples/t1.jpg", 0, 6),
    ("openface/longoria-cooper.jpg", 0, 2),
    ("openface/clapton-1.jpg", 0, 1),
    ("openface/carell.jpg", 0, 1),
    ("mtcnn/ivan.jpg", 1, 1),
)


@pytest.fixture(scope="module")
def dat(models_dir: Path) -> Path:
    return models_dir / DAT


@pytest.fixture(scope="module")
def converted(dat: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("dlib_onnx") / "dlib_resnet_v1.onnx"
    dat_to_onnx(dat, target)
    return target


@pytest.fixture(scope="module")
def chips(models_dir: Path, data_dir: Path) -> np.ndarray:
    """``(11, 150, 150, 3)`` uint8 RGB: dlib's own 5-point chips (size 150, padding 0.25)."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models_dir / PREDICTOR))
    found = []
    for photo, upsample, faces in PHOTOS:
        image = load_image(data_dir / photo)
        boxes = detector(image, upsample)
        assert len(boxes) == faces, photo
        found += [dlib.get_face_chip(image, predictor(image, box), 150, 0.25) for box in boxes]
    return np.stack(found)


@pytest.fixture(scope="module")
def descriptors(dat: Path, chips: np.ndarray) -> np.ndarray:
    """dlib's descriptors of the chips, ``(11, 128)``."""
    network = dlib.face_recognition_model_v1(str(dat))
    return np.array([network.compute_face_descriptor(chip) for chip in chips], np.float32)


def _run(path: Path, chips: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(["embedding"], {"input": _blob(chips)})[0])


def _blob(chips: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(chips.transpose(0, 3, 1, 2), dtype=np.float32)


def test_onnx_gives_dlibs_descriptors(
    converted: Path,
    chips: np.ndarray,
    descriptors: np.ndarray,
    report: Callable[[str], None],
) -> None:
    embeddings = _run(converted, chips)
    assert embeddings.shape == (len(chips), 128)
    assert embeddings.dtype == np.float32
    difference = float(np.max(np.abs(embeddings - descriptors)))
    assert difference < 1e-5
    # dlib's raw descriptor, not re-normalised; and the faces really differ
    assert not np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=0.05)
    distances = np.linalg.norm(descriptors[:, None] - descriptors[None], axis=2)
    assert np.min(distances[~np.eye(len(chips), dtype=bool)]) > 100 * difference
    # one chip alone gives what it gives in the batch (symbolic batch dimension)
    assert np.allclose(_run(converted, chips[3:4])[0], embeddings[3], atol=1e-6)
    report(
        f"dlib ResNet as ONNX vs dlib 20.0.1: max abs diff {difference:.1e} on {len(chips)} chips"
    )


def test_graph_follows_the_documented_architecture(converted: Path) -> None:
    model = onnx.load(str(converted))
    onnx.checker.check_model(model)
    graph = model.graph
    (graph_input,) = graph.input
    (graph_output,) = graph.output
    assert graph_input.name == "input"
    assert graph_output.name == "embedding"
    in_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert in_dims == ["batch", 3, 150, 150]
    assert out_dims == ["batch", 128]
    assert model.producer_name == "facekit.dlib_resnet"
    ops = Counter(node.op_type for node in graph.node)
    # 29 convolutions, each followed by an affine (Mul, Add); 29 relus; 14 residual sums
    # (Add); a max pooling, 4 down-sampling average poolings, the global one, the fc
    expected = {"Conv": 29, "Relu": 29, "Add": 29 + 14, "MaxPool": 1, "AveragePool": 4}
    expected |= {"GlobalAveragePool": 1, "MatMul": 1}
    assert {op: ops[op] for op in expected} == expected
    weights = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    filters = [weights[node.input[1]].shape[0] for node in convs]
    assert filters == [32] + [32] * 6 + [64] * 8 + [128] * 6 + [256] * 8
    strides = [next(a.ints[0] for a in node.attribute if a.name == "strides") for node in convs]
    assert [i for i, stride in enumerate(strides) if stride == 2] == [0, 7, 15, 21, 27]
    assert weights[convs[0].input[1]].shape == (32, 3, 7, 7)
    # input_rgb_image_sized's channel means, read from the file (dlib's defaults)
    assert np.allclose(weights["rgb_means"].ravel(), [122.782, 117.001, 104.298], atol=1e-4)
    assert weights["fc_w"].shape == (256, 128)


def test_conversion_is_deterministic_and_atomic(dat: Path, converted: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.onnx"
    dat_to_onnx(dat, again)
    assert again.read_bytes() == converted.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["again.onnx"]
    # a failed conversion leaves what was there untouched, and no temporary file
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(dat.read_bytes()[:1_000_000])
    with pytest.raises(ModelError):
        dat_to_onnx(truncated, again)
    assert again.read_bytes() == converted.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["again.onnx", "truncated.dat"]


@pytest.mark.parametrize("size", [0, 1, 100, 400, 1_000_000, -100, -1])
def test_truncated_file_is_a_model_error(dat: Path, tmp_path: Path, size: int) -> None:
    data = dat.read_bytes()
    bad = tmp_path / "bad.dat"
    bad.write_bytes(data[:size])
    with pytest.raises(ModelError, match=r"truncated|not a dlib|expected"):
        dat_to_onnx(bad, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def test_flipped_bytes_are_a_model_error(dat: Path, tmp_path: Path) -> None:
    data = dat.read_bytes()
    bad = tmp_path / "bad.dat"
    # the wrappers' versions and the loss layer (structure)
    bad.write_bytes(data[:16] + bytes(b ^ 0xFF for b in data[16:48]) + data[48:])
    with pytest.raises(ModelError, match="dlib_face_recognition_resnet_model_v1"):
        dat_to_onnx(bad, tmp_path / "out.onnx")
    # four bytes 0x7F inside a weight tensor: whatever the alignment, one float gets an
    # exponent of 2**127 or more (the format has no checksum; its size gives it away)
    middle = len(data) // 2
    bad.write_bytes(data[:middle] + b"\x7f" * 4 + data[middle + 4 :])
    with pytest.raises(ModelError, match=r"non-finite|implausible"):
        dat_to_onnx(bad, tmp_path / "out.onnx")
    # trailing bytes: not the file dlib wrote
    bad.write_bytes(data + b"\x00")
    with pytest.raises(ModelError, match="after the network's end"):
        dat_to_onnx(bad, tmp_path / "out.onnx")


def test_random_damage_gives_model_error_or_a_model(dat: Path, tmp_path: Path) -> None:
    """One byte changed at random in the structure (the first 352 bytes: the wrappers'
    versions, the input layer, the first convolution's header; the last 64: the outer layers'
    bookkeeping): a ModelError or a model, never a raw struct/Index/ValueError."""
    data = dat.read_bytes()
    rng = np.random.default_rng(14)
    bad = tmp_path / "bad.dat"
    errors = 0
    positions = [*rng.integers(0, 352, 12), *(len(data) - rng.integers(1, 65, 8))]
    for position in positions:
        damaged = bytearray(data)
        damaged[position] = int(rng.integers(0, 256))
        bad.write_bytes(bytes(damaged))
        try:
            dat_to_onnx(bad, tmp_path / "out.onnx")
        except ModelError:
            errors += 1
    assert errors >= len(positions) // 2


def test_other_files_are_model_errors(models_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    with pytest.raises(ModelError, match=r"loss layer|not a dlib"):
        dat_to_onnx(models_dir / PREDICTOR, out)  # dlib's shape predictor
    with pytest.raises(ModelError):
        dat_to_onnx(models_dir / "centerface/centerface.onnx", out)
    with pytest.raises(ModelError, match="cannot read"):
        dat_to_onnx(tmp_path / "missing.dat", out)
    assert not out.exists()


def test_a_different_network_names_the_layer(dat: Path, tmp_path: Path) -> None:
    data = dat.read_bytes()
    bad = tmp_path / "bad.dat"
    bad.write_bytes(data.replace(b"max_pool_2", b"avg_pool_2", 1))
    with pytest.raises(ModelError, match=r"layer 3 \(max_pool<3,3,2,2>\)"):
        dat_to_onnx(bad, tmp_path / "out.onnx")
    bad.write_bytes(data.replace(b"\x0dloss_metric_2", b"\x0dloss_mmod_xyz", 1))
    with pytest.raises(ModelError, match="loss layer is 'loss_mmod_xyz'"):
        dat_to_onnx(bad, tmp_path / "out.onnx")


def test_arcface_runs_the_converted_network(
    converted: Path, chips: np.ndarray, descriptors: np.ndarray
) -> None:
    embedder = ArcFace(converted, mean=0.0, std=1.0, color="RGB", flip=False)
    assert embedder.dim == 128
    assert embedder.input_size == (150, 150)
    assert embedder.batch_dynamic
    unit = descriptors / np.linalg.norm(descriptors, axis=1, keepdims=True)
    assert np.allclose(embedder.embed(chips), unit, atol=1e-5)


# --- a training-time batch norm (bn_con2) in place of an affine_, as dlib reads it


def _int(value: int) -> bytes:
    """dlib's packed integer."""
    magnitude = abs(value).to_bytes(max(1, (abs(value).bit_length() + 7) // 8), "little")
    return bytes([len(magnitude) | (0x80 if value < 0 else 0)]) + magnitude


def _text(value: str) -> bytes:
    return _int(len(value)) + value.encode()


def _real(value: float) -> bytes:
    """dlib's float_details: mantissa, exponent."""
    mantissa, exponent = math.frexp(value)
    return _int(int(mantissa * 2**53)) + _int(exponent - 53)


def _tensor(array: np.ndarray) -> bytes:
    shape = (1, array.size, 1, 1) if array.size else (0, 0, 0, 0)
    return _int(2) + b"".join(map(_int, shape)) + array.astype("<f4").tobytes()


def _alias(channels: int) -> bytes:
    return _int(1) + b"".join(map(_int, (1, channels, 1, 1)))


def test_batch_norm_layer_is_folded_as_dlib_folds_it(
    dat: Path, chips: np.ndarray, tmp_path: Path
) -> None:
    data = dat.read_bytes()
    # the first affine_ record (after conv 7×7/2, 32 channels): version, params 64 floats,
    # gamma and beta aliases, mode
    start = data.index(_text("affine_"))
    params_at = start + len(_text("affine_"))
    header = _int(2) + b"".join(map(_int, (64, 1, 1, 1)))
    assert data[params_at : params_at + len(header)] == header
    params = np.frombuffer(data, "<f4", 64, params_at + len(header))
    end = params_at + len(header) + 256 + 2 * len(_alias(32)) + len(_int(0))
    assert data[end - len(_int(0)) : end] == _int(0)
    gamma, beta = params[:32].astype(np.float64), params[32:].astype(np.float64)
    rng = np.random.default_rng(5)
    mean, variance, eps = rng.uniform(-0.5, 0.5, 32), rng.uniform(0.5, 2.0, 32), 1e-5
    bn_gamma = gamma * np.sqrt(variance + eps)
    bn_beta = beta + gamma * mean
    record = (
        _text("bn_con2")
        + _tensor(np.concatenate([bn_gamma, bn_beta]))
        + _alias(32)
        + _alias(32)
        + _tensor(np.zeros(0))  # means (training batch statistics)
        + _tensor(np.zeros(0))  # invstds
        + _tensor(mean)
        + _tensor(variance)
        + _int(1000)  # num_updates
        + _int(1000)  # running_stats_window_size
        + b"".join(_real(v) for v in (1.0, 0.0, 1.0, 1.0))  # learning-rate multipliers
        + _real(eps)
    )
    training = tmp_path / "bn.dat"
    training.write_bytes(data[:start] + record + data[end:])
    network = dlib.face_recognition_model_v1(str(training))
    expected = np.array([network.compute_face_descriptor(chip) for chip in chips[:3]])
    dat_to_onnx(training, tmp_path / "bn.onnx")
    assert np.max(np.abs(_run(tmp_path / "bn.onnx", chips[:3]) - expected)) < 1e-5


def test_without_onnx_package_is_a_backend_error(
    dat: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(BackendError, match="pip install onnx"):
        dat_to_onnx(dat, tmp_path / "out.onnx")
