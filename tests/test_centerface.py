"""CenterFace on real weights and photos: the faces SCRFD finds, landmarks against documented
truth, an independent decoding of the raw outputs, batching and typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from facekit import _rebatch
from facekit.detectors import SCRFD
from facekit.detectors.centerface import CenterFace
from facekit.errors import ConfigError, ImageError, ModelError
from facekit.io import load_image
from facekit.types import Detection
from facekit.zoo import sha256_of

_MODEL = "centerface/centerface.onnx"


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _match(found: list[Detection], reference: list[Detection]) -> list[tuple[Detection, float]]:
    """For each reference face, the found face overlapping it most and their IoU; every
    found face is used once."""
    pairs = []
    for face in reference:
        best = max(found, key=lambda d: _iou(np.array(d.box), np.array(face.box)))
        pairs.append((best, _iou(np.array(best.box), np.array(face.box))))
    assert len({id(d) for d, _ in pairs}) == len(pairs)
    return pairs


def _plain_decode(model: Path, image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """CenterFace's demo recipe written out cell by cell on a graph made dynamic with the
    ``onnx`` package: image padded (not resized) to multiples of 32, RGB 0..255, boxes
    clipped to the image, no NMS.
    Rows: x1 y1 x2 y2 score, then 5 landmarks x, y, in pixels of ``image``."""
    graph = onnx.load(str(model))
    for value in [graph.graph.input[0], *graph.graph.output]:
        for axis, name in ((0, "n"), (2, "h"), (3, "w")):
            value.type.tensor_type.shape.dim[axis].dim_param = name
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the export lists its initialisers as inputs
    session = ort.InferenceSession(
        graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    h, w = image.shape[:2]
    canvas = np.zeros((-(-h // 32) * 32, -(-w // 32) * 32, 3), np.float32)
    canvas[:h, :w] = image
    heat, scale, offset, marks = session.run(None, {"input.1": canvas.transpose(2, 0, 1)[None]})
    rows = []
    for y, x in zip(*np.nonzero(heat[0, 0] >= threshold), strict=True):
        bh, bw = np.exp(scale[0, 0, y, x]) * 4, np.exp(scale[0, 1, y, x]) * 4
        x1 = (x + offset[0, 1, y, x] + 0.5) * 4 - bw / 2
        y1 = (y + offset[0, 0, y, x] + 0.5) * 4 - bh / 2
        points = []
        for k in range(5):
            points += [x1 + marks[0, 2 * k + 1, y, x] * bw, y1 + marks[0, 2 * k, y, x] * bh]
        rows.append([x1, y1, x1 + bw, y1 + bh, heat[0, 0, y, x], *points])
    found = np.array(rows)
    found[:, [0, 2]] = found[:, [0, 2]].clip(0, w)  # boxes end at the image's edges
    found[:, [1, 3]] = found[:, [1, 3]].clip(0, h)
    return found


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> CenterFace:
    return CenterFace(models_dir / _MODEL)


@pytest.fixture(scope="module")
def scrfd(models_dir: Path) -> SCRFD:
    return SCRFD("scrfd_2.5g", model_dir=models_dir)


@pytest.mark.parametrize(
    ("photo", "faces"),
    [
        ("insightface_samples/t1.jpg", 6),
        ("openface/longoria-cooper.jpg", 2),
        ("mtcnn/no-faces.jpg", 0),
    ],
)
def test_finds_the_faces_scrfd_finds(
    detector: CenterFace, scrfd: SCRFD, data_dir: Path, photo: str, faces: int
) -> None:
    image = load_image(data_dir / photo)
    found, reference = detector.detect(image), scrfd.detect(image)
    assert len(found) == len(reference) == faces
    for face, overlap in _match(found, reference):
        assert overlap >= 0.7
        assert face.landmarks.shape == (5, 2)
        assert face.landmarks.dtype == np.float32
        eye_l, eye_r, nose, mouth_l, mouth_r = face.landmarks
        assert eye_l[0] < eye_r[0]
        assert mouth_l[0] < mouth_r[0]
        assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    for (face, _), other in zip(_match(found, reference), reference, strict=True):
        # measured: per face at most 6.4 % of the face width on average, 11.5 % at worst
        width = other.box[2] - other.box[0]
        distance = np.linalg.norm(face.landmarks - other.landmarks, axis=1) / width
        assert distance.mean() < 0.08
        assert distance.max() < 0.15
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)
    assert all(0.5 <= s <= 1.0 for s in scores)


def test_ivan_landmarks_match_documented_truth(models_dir: Path, data_dir: Path) -> None:
    """By zoo name from a model directory; the truth is ipazc/mtcnn's documented output."""
    truth = json.loads((data_dir / "mtcnn/truth.json").read_text())["ivan.jpg"]
    found = CenterFace("centerface", model_dir=models_dir).detect(data_dir / "mtcnn/ivan.jpg")
    assert len(found) == truth["faces"] == 1
    points = truth["documented_output"]["keypoints"]
    expected = np.array(
        [points[k] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")]
    )
    # measured: 1.3-2.5 px per point on a face about 50 px wide (SCRFD-2.5G: 0.7-2.6 px)
    assert np.linalg.norm(found[0].landmarks - expected, axis=1).max() < 3.0
    x, y, w, h = truth["documented_output"]["box_xywh"]
    x1, y1, x2, y2 = found[0].box
    assert abs((x1 + x2) / 2 - (x + w / 2)) < 4
    assert abs((x2 - x1) - w) < 6
    # MTCNN's box is tighter at the chin
    assert abs(y1 - y) < 5
    assert y + h < y2 < y + h + 10


def test_decoding_matches_the_plain_recipe(
    detector: CenterFace, models_dir: Path, data_dir: Path
) -> None:
    """At scale 1 (an image already a multiple of 32 wide and high fits a 640 input
    untouched) facekit's vectorised decoding gives the plain recipe's boxes after NMS."""
    image = load_image(data_dir / "insightface_samples/t1.jpg")[:448, 320:960]  # 640×448
    reference = _plain_decode(models_dir / _MODEL, image)
    found = detector.detect(image)
    assert len(found) >= 3
    for face in found:
        row = min(reference, key=lambda r: float(np.abs(r[:4] - np.array(face.box)).max()))
        assert np.abs(row[:4] - np.array(face.box)).max() < 1e-3
        assert abs(row[4] - face.score) < 1e-5
        assert np.abs(row[5:] - face.landmarks.ravel()).max() < 1e-3
    assert len(reference) > len(found)  # NMS merged neighbouring cells of the same faces


def test_cached_copy_frees_the_input_and_drops_the_weight_inputs(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy facekit runs differs from the published file only in the shapes of the
    input and outputs and in its weights no longer being graph inputs; made once, then
    reused from the cache."""
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    exports: list[dict[str, bool]] = []
    real = _rebatch._make_dynamic

    def counting(model: Any, onnx: Any, **edits: bool) -> None:
        exports.append(edits)
        real(model, onnx, **edits)

    monkeypatch.setattr(_rebatch, "_make_dynamic", counting)
    first = CenterFace(models_dir / _MODEL)
    original = models_dir / _MODEL
    copy = tmp_path / "rebatched" / f"{sha256_of(original)}.v1.size.weights.onnx"
    assert (tmp_path / "rebatched" / f"{copy.name}.sha256").read_text() == sha256_of(copy)
    second = CenterFace(models_dir / _MODEL)
    assert exports == [{"free_size": True, "drop_initializer_inputs": True}]
    for detector in (first, second):
        assert detector._session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    edited, before = onnx.load(str(copy)), onnx.load(str(original))
    assert len(before.graph.input) == 195  # the input and 194 weights
    assert [value.name for value in edited.graph.input] == ["input.1"]
    for value in [edited.graph.input[0], *edited.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch"
        assert dims[1].dim_value in (1, 2, 3, 10)
    assert edited.graph.initializer == before.graph.initializer
    assert edited.graph.node == before.graph.node


def test_copy_that_differs_from_the_original_is_refused(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copy whose weights changed by 1 % gives other outputs at 10×3×32×32: refused."""
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path))
    real = _rebatch._make_dynamic

    def damaging(model: Any, onnx: Any, **edits: bool) -> None:
        real(model, onnx, **edits)
        first_conv = model.graph.node[0].input[1]
        weights = next(t for t in model.graph.initializer if t.name == first_conv)
        changed = onnx.numpy_helper.to_array(weights) * np.float32(1.01)
        weights.CopyFrom(onnx.numpy_helper.from_array(changed, weights.name))

    monkeypatch.setattr(_rebatch, "_make_dynamic", damaging)
    with pytest.raises(ModelError, match=r"cannot make the input size .*: output 0 .* differs by"):
        CenterFace(models_dir / _MODEL)
    assert not (tmp_path / "rebatched").exists()


def test_unwritable_cache_runs_the_copy_from_memory(
    models_dir: Path, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_bytes(b"")
    monkeypatch.setenv("FACEKIT_CACHE", str(not_a_folder))
    detector = CenterFace(models_dir / _MODEL)
    assert detector._session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert len(detector.detect(data_dir / "mtcnn/ivan.jpg")) == 1


class _ShapeSpy:
    """Records the input shapes a session is run on."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.shapes: list[tuple[int, ...]] = []

    def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
        self.shapes.extend(tuple(blob.shape) for blob in feed.values())
        return self._session.run(names, feed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)


def test_batch_equals_single(models_dir: Path, data_dir: Path) -> None:
    detector = CenterFace(models_dir / _MODEL, batch_size=2)
    empty, ivan = data_dir / "mtcnn/no-faces.jpg", data_dir / "mtcnn/ivan.jpg"
    t1, cooper = data_dir / "insightface_samples/t1.jpg", data_dir / "openface/longoria-cooper.jpg"
    images = [empty, ivan, empty, t1, empty, cooper]
    spy = _ShapeSpy(detector._session)
    detector._session = spy
    batch = detector.detect_batch(images)
    assert [len(found) for found in batch] == [0, 1, 0, 6, 0, 2]
    # not enlarged: 224×160 (the three empty images in 2 runs), 576×576; shrunk and trimmed
    # to 640×448; not enlarged: 320×480
    assert sorted(spy.shapes) == sorted(
        [(2, 3, 160, 224), (1, 3, 160, 224), (1, 3, 576, 576), (1, 3, 448, 640), (1, 3, 480, 320)]
    )
    for image, together in zip(images, batch, strict=True):
        alone = detector.detect(image)
        assert len(alone) == len(together)
        for a, b in zip(alone, together, strict=True):
            assert np.allclose(a.box, b.box, atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
    assert detector.detect_batch([]) == []


def test_small_crops_are_not_enlarged(models_dir: Path, data_dir: Path) -> None:
    """A face filling a 160×160 crop, enlarged to 640, is larger than any CenterFace learnt:
    it then gives a misplaced box and a second, partial one; at the crop's own size, one
    face covering most of the crop."""
    names = ["angelina_jolie", "bradley_cooper", "kate_siegel", "paul_rudd", "shea_whigham"]
    crops = [data_dir / f"facenet_pytorch/test_images_aligned/{name}/1.png" for name in names]
    native = CenterFace(models_dir / _MODEL).detect_batch(crops)
    assert [len(found) for found in native] == [1] * 5
    for (face,) in native:
        x1, y1, x2, y2 = face.box
        assert x2 - x1 > 100
        assert y2 - y1 > 120
    enlarged = CenterFace(models_dir / _MODEL, upscale=True).detect_batch(crops)
    assert sum(len(found) for found in enlarged) > 5  # measured 9


def test_input_size_trim_and_options(models_dir: Path, data_dir: Path) -> None:
    t1 = data_dir / "insightface_samples/t1.jpg"
    small = CenterFace(models_dir / _MODEL, input_size=(320, 320))
    assert small.input_size == (320, 320)
    assert len(small.detect(t1)) == 6
    square = CenterFace(models_dir / _MODEL, trim=False)
    spy = _ShapeSpy(square._session)
    square._session = spy
    assert len(square.detect(t1)) == 6
    assert spy.shapes == [(1, 3, 640, 640)]
    assert len(CenterFace(models_dir / _MODEL, max_faces=2).detect(t1)) == 2
    assert CenterFace(models_dir / _MODEL, score_threshold=0.99).detect(t1) == []
    assert "CenterFace('centerface'" in repr(small)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("score_threshold", 1.5),
        ("nms_threshold", 0.0),
        ("max_faces", 0),
        ("padding", -0.1),
        ("batch_size", 0),
        ("input_size", (300, 320)),
        ("input_size", (0, 320)),
        ("input_size", (320,)),
        ("input_size", "640"),
        ("threads", 0),
    ],
)
def test_bad_options(models_dir: Path, option: str, value: Any) -> None:
    with pytest.raises(ConfigError):
        CenterFace(models_dir / _MODEL, **{option: value})


def test_bad_images(detector: CenterFace, data_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((data_dir / "mtcnn/ivan.jpg").read_bytes()[:100])
    for bad in [tmp_path / "missing.jpg", broken, b"not an image", np.zeros((0, 5, 3), np.uint8)]:
        with pytest.raises(ImageError):
            detector.detect(bad)
    with pytest.raises(ImageError):
        detector.detect_batch([data_dir / "mtcnn/ivan.jpg", b"not an image"])


def test_wrong_model_files(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a CenterFace detector"):
        CenterFace(models_dir / "yunet/face_detection_yunet_2026may.onnx")
    with pytest.raises(ModelError, match="not a CenterFace detector"):
        CenterFace(models_dir / "scrfd/det_2.5g.onnx")
    with pytest.raises(ModelError, match="recognition model"):
        CenterFace(models_dir / "mobilefacenet_onnx/mobilefacenet_128d.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        CenterFace(garbage)
