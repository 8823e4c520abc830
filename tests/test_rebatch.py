"""Batching what the models allow (issue 12, item 3): verified dynamic-batch re-exports of
fixed-batch ONNX files, flip pairs in one ``session.run``, crops of many images together,
and the ``threads`` option, on the real MobileFaceNet / SCRFD weights and shared photos."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facekit import _rebatch
from facekit._atomic import replacing, write_atomically
from facekit.aligners import SimilarityAligner
from facekit.detectors import SCRFD
from facekit.embedders import ArcFace
from facekit.errors import ConfigError
from facekit.io import load_image
from facekit.zoo import sha256_of

MOBILEFACENET = "mobilefacenet_onnx/mobilefacenet_128d.onnx"
PHOTOS = ("t1.jpg", "t3.jpg", "t5.jpg")


class SessionSpy:
    """Wraps a real onnxruntime session and records the batch of every ``run``."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.batches: list[int] = []

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.batches.append(next(iter(feed.values())).shape[0])
        return self._session.run(names, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def spy_on(model: Any) -> SessionSpy:
    spy = SessionSpy(model._session)
    model._session = spy
    return spy


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty facekit cache for this test."""
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    return tmp_path / "rebatched"


@pytest.fixture(scope="module")
def photos(data_dir: Path) -> list[np.ndarray]:
    return [load_image(data_dir / "insightface_samples" / name) for name in PHOTOS]


@pytest.fixture(scope="module")
def crops(models_dir: Path, photos: list[np.ndarray]) -> np.ndarray:
    """Real aligned faces of several shared photos."""
    detector = SCRFD("scrfd_2.5g", model_dir=models_dir, rebatch=False)
    aligner = SimilarityAligner()
    per_photo = [
        aligner.align(image, np.stack([face.landmarks for face in detector.detect(image)]))
        for image in photos
    ]
    return np.concatenate(per_photo)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with pytest.MonkeyPatch.context() as patch:
        directory = tmp_path_factory.mktemp("cache")
        patch.setenv("FACEKIT_CACHE", str(directory))
        yield directory


@pytest.fixture(scope="module")
def batched(models_dir: Path, shared_cache: Path) -> ArcFace:
    return ArcFace("mobilefacenet_128d", model_dir=models_dir)


@pytest.fixture(scope="module")
def one_by_one(models_dir: Path) -> ArcFace:
    return ArcFace("mobilefacenet_128d", model_dir=models_dir, rebatch=False)


@pytest.fixture(scope="module")
def reference(one_by_one: ArcFace, crops: np.ndarray) -> np.ndarray:
    return one_by_one.embed(crops)


def test_rebatched_mobilefacenet_gives_the_originals_raw_outputs(
    models_dir: Path, crops: np.ndarray, cache: Path
) -> None:
    original = models_dir / MOBILEFACENET
    blob = ((crops.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2)
    copy = _rebatch.dynamic_copy(original, sha256_of(original), check_input=blob[:3])
    assert isinstance(copy, Path)
    assert copy.parent == cache
    before = ort.InferenceSession(str(original), providers=["CPUExecutionProvider"])
    after = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    assert before.get_inputs()[0].shape[0] == 1
    assert isinstance(after.get_inputs()[0].shape[0], str)
    want = np.concatenate([before.run(None, {"input": row[None]})[0] for row in blob])
    got = after.run(None, {"input": blob})[0]
    assert got.shape == (len(crops), 128)
    assert float(np.max(np.abs(got - want))) < 1e-5


def test_rebatched_embedder_equals_the_one_by_one_embedder(
    batched: ArcFace, one_by_one: ArcFace, crops: np.ndarray, reference: np.ndarray
) -> None:
    assert len(crops) >= 8
    assert batched.batch_dynamic
    assert not one_by_one.batch_dynamic
    assert float(np.max(np.abs(batched.embed(crops) - reference))) < 1e-5


def test_flip_pair_runs_in_one_call(
    batched: ArcFace, crops: np.ndarray, reference: np.ndarray
) -> None:
    spy = spy_on(batched)
    try:
        vector = batched.embed(crops[0])
    finally:
        batched._session = spy._session
    assert spy.batches == [2]  # the crop and its mirror together
    assert float(np.max(np.abs(vector[0] - reference[0]))) < 1e-5


def test_crops_of_many_images_run_in_batch_size_chunks(
    batched: ArcFace, crops: np.ndarray, reference: np.ndarray
) -> None:
    spy = spy_on(batched)
    batched.batch_size = 4
    try:
        vectors = batched.embed(crops)
    finally:
        batched._session = spy._session
        batched.batch_size = 32
    count = len(crops)
    assert len(spy.batches) == math.ceil(count / 4)
    assert sum(spy.batches) == 2 * count  # each face with its mirror
    assert float(np.max(np.abs(vectors - reference))) < 1e-5


def test_fixed_batch_graph_runs_each_view_alone(one_by_one: ArcFace, crops: np.ndarray) -> None:
    spy = spy_on(one_by_one)
    try:
        one_by_one.embed(crops[:3])
    finally:
        one_by_one._session = spy._session
    assert spy.batches == [1] * 6


def test_cached_copy_is_reused(
    models_dir: Path,
    crops: np.ndarray,
    reference: np.ndarray,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exports: list[Path] = []
    real = _rebatch._make_dynamic

    def counting(model: Any, onnx: Any, **edits: bool) -> None:
        exports.append(Path())
        real(model, onnx, **edits)

    monkeypatch.setattr(_rebatch, "_make_dynamic", counting)
    first = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    (copy,) = cache.glob("*.onnx")
    stamp = copy.stat().st_mtime_ns
    second = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    assert len(exports) == 1
    assert copy.stat().st_mtime_ns == stamp
    assert copy.name.startswith(sha256_of(models_dir / MOBILEFACENET))
    assert (cache / f"{copy.name}.sha256").read_text() == sha256_of(copy)
    assert first.batch_dynamic
    assert second.batch_dynamic
    assert float(np.max(np.abs(second.embed(crops[:4]) - reference[:4]))) < 1e-5


def test_corrupt_cached_copy_is_rebuilt(
    models_dir: Path,
    crops: np.ndarray,
    reference: np.ndarray,
    cache: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ArcFace("mobilefacenet_128d", model_dir=models_dir)
    (copy,) = cache.glob("*.onnx")
    good = sha256_of(copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in a weight: still a loadable graph
    copy.write_bytes(bytes(data))
    with caplog.at_level(logging.DEBUG, logger="facekit._rebatch"):
        rebuilt = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    assert "does not match its recorded sha256" in caplog.text
    assert sha256_of(copy) == good
    assert rebuilt.batch_dynamic
    assert float(np.max(np.abs(rebuilt.embed(crops[:4]) - reference[:4]))) < 1e-5


def test_without_onnx_falls_back_to_batch_one(
    models_dir: Path,
    crops: np.ndarray,
    reference: np.ndarray,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)
    with caplog.at_level(logging.DEBUG, logger="facekit"):
        embedder = ArcFace("mobilefacenet_128d", model_dir=models_dir)
    assert "the onnx package is not installed" in caplog.text
    assert not embedder.batch_dynamic
    assert not cache.exists()
    assert float(np.max(np.abs(embedder.embed(crops) - reference))) < 1e-5


def test_rebatched_scrfd_finds_the_same_faces_in_fewer_runs(
    models_dir: Path, photos: list[np.ndarray], cache: Path
) -> None:
    plain = SCRFD("scrfd_2.5g", model_dir=models_dir, rebatch=False)
    batched = SCRFD("scrfd_2.5g", model_dir=models_dir, batch_size=2)
    assert plain.batch_size == 1
    assert batched.batch_size == 2
    spy = spy_on(batched)
    got = batched.detect_batch(photos)
    assert spy.batches == [2, 1]
    want = plain.detect_batch(photos)
    assert [len(faces) for faces in got] == [len(faces) for faces in want]
    assert sum(len(faces) for faces in got) >= 8
    for got_faces, want_faces in zip(got, want, strict=True):
        for a, b in zip(got_faces, want_faces, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert abs(a.score - b.score) < 1e-5


def test_graph_that_folds_the_batch_is_left_alone(tmp_path: Path, cache: Path) -> None:
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "folds",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4])],
        [helper.make_tensor("shape", onnx.TensorProto.INT64, [1], [-1])],
    )
    path = tmp_path / "folds.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    check = np.arange(8, dtype=np.float32).reshape(2, 4)
    with pytest.raises(_rebatch.CopyError, match="folds the batch into another axis"):
        _rebatch.dynamic_copy(path, sha256_of(path), check_input=check)
    assert not cache.exists()


def test_copy_whose_outputs_differ_is_not_used(
    models_dir: Path,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # without its Resize rewrite, the fixed 640 SCRFD's copy upsamples image 0's features
    # for every image of a batch: a real broken copy, which the check must reject
    monkeypatch.setattr(_rebatch, "_resize_by_scales", lambda *args: None)
    path = models_dir / "scrfd/scrfd_2.5g_kps_640x640.onnx"
    with caplog.at_level(logging.DEBUG, logger="facekit"):
        detector = SCRFD(path, batch_size=4)
    assert "of image 1 differs by" in caplog.text
    assert detector.batch_size == 1
    assert not cache.exists()


def test_threads_reach_the_session_options(models_dir: Path, cache: Path) -> None:
    embedder = ArcFace("mobilefacenet_128d", model_dir=models_dir, threads=1)
    detector = SCRFD("scrfd_500m", model_dir=models_dir, threads=2)
    default = ArcFace("mobilefacenet_128d", model_dir=models_dir, rebatch=False)
    for model, threads in ((embedder, 1), (detector, 2)):
        options = model._session.get_session_options()
        assert options.intra_op_num_threads == threads
        assert options.inter_op_num_threads == 1
    assert default._session.get_session_options().intra_op_num_threads == 0
    with pytest.raises(ConfigError, match="threads"):
        ArcFace("mobilefacenet_128d", model_dir=models_dir, threads=0)


def _save(tmp_path: Path, name: str, graph: Any) -> Path:
    path = tmp_path / f"{name}.onnx"
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    onnx.save(model, str(path))
    return path


def _conv_graph(batch: int, *, pooled: bool = False) -> Any:
    """A 1×1 convolution of a ``batch×3×8×8`` input, its weights also listed as a graph
    input (as old exporters did); ``pooled``: followed by a global average pool."""
    helper = onnx.helper
    weights = np.arange(12, dtype=np.float32).reshape(4, 3, 1, 1) / 10
    nodes = [helper.make_node("Conv", ["x", "w"], ["c" if pooled else "y"])]
    if pooled:
        nodes.append(helper.make_node("GlobalAveragePool", ["c"], ["y"]))
    side = 1 if pooled else 8
    return helper.make_graph(
        nodes,
        "conv",
        [
            helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [batch, 3, 8, 8]),
            helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [4, 3, 1, 1]),
        ],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [batch, 4, side, side])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )


def test_free_size_copy_of_a_fixed_batch_of_two(tmp_path: Path, cache: Path) -> None:
    path = _save(tmp_path, "conv", _conv_graph(2))
    check = np.random.default_rng(1).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)
    with pytest.raises(_rebatch.CopyError, match="needs a multiple of 2 rows, at least 4"):
        _rebatch.dynamic_copy(path, sha256_of(path), check_input=check[:3], free_size=True)
    copy = _rebatch.dynamic_copy(
        path, sha256_of(path), check_input=check, free_size=True, drop_initializer_inputs=True
    )
    assert copy == cache / f"{sha256_of(path)}.v1.size.weights.onnx"
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"]
    assert session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    image = np.random.default_rng(2).uniform(0, 255, (5, 3, 16, 24)).astype(np.float32)
    (got,) = session.run(None, {"x": image})
    want = np.einsum("oc,nchw->nohw", np.arange(12, dtype=np.float32).reshape(4, 3) / 10, image)
    assert np.allclose(got, want, rtol=1e-5)
    # the batch-only copy of the same file is another cached copy
    batch_only = _rebatch.dynamic_copy(path, sha256_of(path), check_input=check)
    assert batch_only == cache / f"{sha256_of(path)}.v1.onnx"
    assert [i.name for i in onnx.load(str(batch_only)).graph.input] == ["x", "w"]


def test_free_size_needs_outputs_that_follow_the_size(tmp_path: Path, cache: Path) -> None:
    path = _save(tmp_path, "pooled", _conv_graph(1, pooled=True))
    check = np.ones((2, 3, 8, 8), np.float32)
    assert isinstance(_rebatch.dynamic_copy(path, sha256_of(path), check_input=check), Path)
    with pytest.raises(_rebatch.CopyError, match="twice as high and wide has shape"):
        _rebatch.dynamic_copy(path, sha256_of(path), check_input=check, free_size=True)
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "flat",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 3, 16, 1])],
        [helper.make_tensor("shape", onnx.TensorProto.INT64, [4], [1, 3, 16, 1])],
    )
    flat = _save(tmp_path, "flat", graph)
    check = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(_rebatch.CopyError, match="fixes the height and width"):
        _rebatch.dynamic_copy(flat, sha256_of(flat), check_input=check, free_size=True)
    assert not (cache / f"{sha256_of(flat)}.v1.size.onnx").exists()


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "file.bin"
    write_atomically(target, b"old")

    def failing_writer() -> None:
        with replacing(target) as temporary:
            temporary.write_bytes(b"half")
            raise RuntimeError("the writer fails")

    with pytest.raises(RuntimeError, match="the writer fails"):
        failing_writer()
    assert target.read_bytes() == b"old"
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.bin"]
