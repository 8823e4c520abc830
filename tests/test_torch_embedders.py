"""AdaFace and FaceNet on torch.

Their official weights cannot be downloaded here, so these tests build checkpoints in the
official key layouts with random weights: the layouts are written out below from the
papers' code (AdaFace net.py; facenet-pytorch's inception_resnet_v1.py), independently of
facekit's modules, and facekit must load them, preprocess as documented, agree with its own
ONNX export and refuse files that do not fit. No test here says anything about accuracy.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from facekit import FaceRecognizer
from facekit.aligners import BoxAligner, SimilarityAligner
from facekit.embedders import AdaFace, ArcFace, FaceNet
from facekit.errors import ChecksumError, ConfigError, DeviceError, ModelError
from facekit.types import Thresholds


def _bn(state: dict[str, torch.Tensor], prefix: str, channels: int, affine: bool = True) -> None:
    if affine:
        state[f"{prefix}.weight"] = torch.rand(channels) + 0.5
        state[f"{prefix}.bias"] = torch.randn(channels) * 0.1
    state[f"{prefix}.running_mean"] = torch.randn(channels) * 0.1
    state[f"{prefix}.running_var"] = torch.rand(channels) + 0.5
    state[f"{prefix}.num_batches_tracked"] = torch.tensor(100)


def _conv(
    state: dict[str, torch.Tensor], prefix: str, out: int, inp: int, kh: int, kw: int
) -> None:
    state[f"{prefix}.weight"] = torch.randn(out, inp, kh, kw) * (2.0 / (inp * kh * kw)) ** 0.5


def official_adaface_state(units: tuple[int, ...] = (2, 2, 2, 2)) -> dict[str, torch.Tensor]:
    """AdaFace's IR backbone keys and shapes as net.py names them (``Backbone`` with
    ``BasicBlockIR``), random values; IR-18 has 2 units per stage."""
    torch.manual_seed(0)
    state: dict[str, torch.Tensor] = {}
    _conv(state, "input_layer.0", 64, 3, 3, 3)
    _bn(state, "input_layer.1", 64)
    state["input_layer.2.weight"] = torch.full((64,), 0.25)
    index, in_channels = 0, 64
    for depth, count in zip((64, 128, 256, 512), units, strict=True):
        for unit in range(count):
            cin = in_channels if unit == 0 else depth
            prefix = f"body.{index}"
            if cin != depth:  # else the shortcut is a parameter-free MaxPool2d(1, stride)
                _conv(state, f"{prefix}.shortcut_layer.0", depth, cin, 1, 1)
                _bn(state, f"{prefix}.shortcut_layer.1", depth)
            _bn(state, f"{prefix}.res_layer.0", cin)
            _conv(state, f"{prefix}.res_layer.1", depth, cin, 3, 3)
            _bn(state, f"{prefix}.res_layer.2", depth)
            state[f"{prefix}.res_layer.3.weight"] = torch.full((depth,), 0.25)
            _conv(state, f"{prefix}.res_layer.4", depth, depth, 3, 3)
            _bn(state, f"{prefix}.res_layer.5", depth)
            index += 1
        in_channels = depth
    _bn(state, "output_layer.0", 512)  # BatchNorm2d(512)
    state["output_layer.3.weight"] = torch.randn(512, 512 * 7 * 7) * 0.01  # Linear
    state["output_layer.3.bias"] = torch.zeros(512)
    _bn(state, "output_layer.4", 512, affine=False)  # BatchNorm1d(512, affine=False)
    return state


def save_adaface_ckpt(path: Path, units: tuple[int, ...] = (2, 2, 2, 2)) -> Path:
    """A training checkpoint as the official .ckpt files hold it."""
    backbone = official_adaface_state(units)
    state = {f"model.{k}": v for k, v in backbone.items()}
    state["head.kernel"] = torch.randn(512, 100)  # the AdaFace margin head, unused
    torch.save({"epoch": 25, "global_step": 1000, "state_dict": state}, path)
    return path


# Keys and shapes of facenet-pytorch's released InceptionResnetV1 state dicts, sampled
# across the network (from inception_resnet_v1.py: BasicConv2d = conv (no bias) + bn).
FACENET_KEYS = {
    "conv2d_1a.conv.weight": (32, 3, 3, 3),
    "conv2d_2b.bn.running_var": (64,),
    "conv2d_4b.conv.weight": (256, 192, 3, 3),
    "repeat_1.4.branch2.2.conv.weight": (32, 32, 3, 3),
    "repeat_1.0.conv2d.bias": (256,),
    "mixed_6a.branch1.2.conv.weight": (256, 192, 3, 3),
    "repeat_2.9.branch1.1.conv.weight": (128, 128, 1, 7),
    "repeat_2.9.branch1.2.conv.weight": (128, 128, 7, 1),
    "mixed_7a.branch2.2.conv.weight": (256, 256, 3, 3),
    "repeat_3.4.branch1.1.conv.weight": (192, 192, 1, 3),
    "block8.conv2d.weight": (1792, 384, 1, 1),
    "last_linear.weight": (512, 1792),
    "last_bn.weight": (512,),
    "last_bn.running_mean": (512,),
    "logits.weight": (8631, 512),
}


@pytest.fixture(scope="module")
def adaface_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_adaface_ckpt(tmp_path_factory.mktemp("adaface") / "adaface_ir18_test.ckpt")


@pytest.fixture(scope="module")
def adaface(adaface_ckpt: Path) -> AdaFace:
    return AdaFace(adaface_ckpt)


def _crops(count: int, size: int = 112, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_adaface_loads_the_official_layout(adaface: AdaFace) -> None:
    assert adaface.architecture == "ir_18"
    assert (adaface.dim, adaface.input_size, adaface.template) == (512, (112, 112), "arcface112")
    embeddings, norms = adaface.embed_with_norms(_crops(5))
    assert embeddings.shape == (5, 512)
    assert embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert norms.shape == (5,)
    assert (norms > 0).all()
    assert np.array_equal(adaface.embed(_crops(5)), embeddings)


def test_adaface_preprocessing_is_bgr_scaled_to_minus_one_one(adaface: AdaFace) -> None:
    crop = np.zeros((1, 112, 112, 3), dtype=np.uint8)
    crop[..., 0] = 255  # red
    crop[..., 2] = 51  # blue
    blob = adaface._blob(crop)
    assert blob.shape == (1, 3, 112, 112)
    # channel 0 is blue: (51/255 - 0.5)/0.5 = -0.6; channel 2 is red: 1.0; green -1.0
    assert np.allclose(blob[0, 0], -0.6, atol=1e-6)
    assert np.allclose(blob[0, 1], -1.0)
    assert np.allclose(blob[0, 2], 1.0)
    # and the embedding is the network's output on exactly that input, flip-averaged
    pattern = _crops(1, seed=3)
    expected = np.flip(pattern, axis=2)
    bgr = lambda c: torch.from_numpy(  # noqa: E731
        ((c[..., ::-1].astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()
    )
    with torch.inference_mode():
        raw = adaface._net(bgr(pattern)) + adaface._net(bgr(expected))
    reference = (raw / raw.norm(dim=1, keepdim=True)).numpy()
    assert np.abs(adaface.embed(pattern) - reference).max() < 1e-5


def test_adaface_flip_averaging(adaface_ckpt: Path, adaface: AdaFace) -> None:
    crops = _crops(3)
    mirrored = crops[:, :, ::-1]
    plain = AdaFace(adaface_ckpt, flip=False)
    assert np.allclose(adaface.embed(crops), adaface.embed(mirrored), atol=1e-5)
    assert not np.allclose(plain.embed(crops), plain.embed(mirrored), atol=1e-3)


def test_adaface_onnx_export_agrees_and_runs_in_arcface(
    adaface: AdaFace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    fsync = os.fsync

    def spy(fd: int) -> None:  # the real fsync, recording which file it flushed
        synced.append(os.fstat(fd).st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    path = adaface.export_onnx(tmp_path / "adaface.onnx")
    assert path.stat().st_ino in synced  # on disk before it was renamed into place
    assert os.listdir(tmp_path) == ["adaface.onnx"]  # no temporary file left
    color, mean, std = adaface.preprocessing
    assert (color, mean, std) == ("BGR", 127.5, 127.5)
    onnx_embedder = ArcFace(path, color=color, mean=mean, std=std, batch_size=4)
    crops = _crops(6, seed=1)
    # random weights give raw features of magnitude ~1000: compare them relatively, and
    # the unit embeddings (what facekit returns) absolutely
    raw_torch = adaface._run(crops)
    raw_onnx = onnx_embedder._run(crops)
    assert np.abs(raw_torch - raw_onnx).max() / np.abs(raw_torch).max() < 1e-5
    assert np.abs(adaface.embed(crops) - onnx_embedder.embed(crops)).max() < 1e-4
    # without AdaFace's BGR order the same file gives other embeddings
    rgb = ArcFace(path, mean=mean, std=std)
    assert (adaface.embed(crops) * rgb.embed(crops)).sum(axis=1).min() < 0.9999


def test_adaface_variants_from_keys(tmp_path: Path) -> None:
    ir34 = AdaFace(save_adaface_ckpt(tmp_path / "ir34.ckpt", (3, 4, 6, 3)))
    assert ir34.architecture == "ir_34"
    # a bare backbone state dict (no "state_dict", no "model." prefix) loads too
    torch.save(official_adaface_state(), tmp_path / "bare.pt")
    assert AdaFace(tmp_path / "bare.pt").architecture == "ir_18"


def test_adaface_wrong_and_missing_keys(tmp_path: Path) -> None:
    good = official_adaface_state()
    missing = {k: v for k, v in good.items() if not k.startswith("output_layer.3")}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(ModelError, match=r"missing \(output_layer\.3\.bias"):
        AdaFace(tmp_path / "missing.pt")
    extra = {**good, "body.0.extra.weight": torch.zeros(3)}
    torch.save(extra, tmp_path / "extra.pt")
    with pytest.raises(ModelError, match="unexpected"):
        AdaFace(tmp_path / "extra.pt")
    shaped = {**good, "output_layer.3.weight": torch.zeros(256, 512 * 7 * 7)}
    torch.save(shaped, tmp_path / "shape.pt")
    with pytest.raises(ModelError, match="another shape"):
        AdaFace(tmp_path / "shape.pt")
    with pytest.raises(ModelError, match="ir_50 was expected"):
        AdaFace(tmp_path / "missing.pt", architecture="ir_50")
    (tmp_path / "junk.ckpt").write_bytes(b"\x00not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable torch checkpoint"):
        AdaFace(tmp_path / "junk.ckpt")
    torch.save({"state_dict": good, "hparams": pickle.UnpicklingError("x")}, tmp_path / "obj.ckpt")
    with pytest.raises(ModelError, match="trust_checkpoint=True"):
        AdaFace(tmp_path / "obj.ckpt")
    assert AdaFace(tmp_path / "obj.ckpt", trust_checkpoint=True).architecture == "ir_18"
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ModelError, match="not a state dict"):
        AdaFace(tmp_path / "tensor.pt")


def test_adaface_thresholds_device_and_crop_checks(adaface_ckpt: Path, adaface: AdaFace) -> None:
    assert adaface.thresholds is None  # not calibrated: FaceRecognizer asks for them
    given = Thresholds(0.2, 0.3)
    assert AdaFace(adaface_ckpt, thresholds=given).thresholds is given
    with pytest.raises(DeviceError, match="CUDA"):
        AdaFace(adaface_ckpt, device="cuda:0")
    with pytest.raises(ConfigError, match=r"\(N, 112, 112, 3\)"):
        adaface.embed(np.zeros((1, 160, 160, 3), np.uint8))


def test_zoo_checkpoint_is_pinned_on_first_use(
    adaface_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Official AdaFace checkpoints have no published digest: the first copy is pinned."""
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "cache"))
    models = tmp_path / "models"
    models.mkdir()
    target = models / "adaface_ir18_casia.ckpt"
    target.write_bytes(adaface_ckpt.read_bytes())
    first = AdaFace("adaface_ir18_casia", model_dir=models, download=False)
    assert first.name == "adaface_ir18_casia"
    assert (tmp_path / "cache/pins.json").exists()
    assert AdaFace("adaface_ir18_casia", model_dir=models).sha256 == first.sha256
    # the zoo says IR-18 for this name: an IR-34 file under it is refused
    save_adaface_ckpt(tmp_path / "ir34.ckpt", (3, 4, 6, 3))
    target.write_bytes((tmp_path / "ir34.ckpt").read_bytes())
    with pytest.raises(ChecksumError, match="pinned"):
        AdaFace("adaface_ir18_casia", model_dir=models)


def _facenet_state() -> dict[str, torch.Tensor]:
    from facekit.embedders._facenet_nets import InceptionResnetV1

    torch.manual_seed(1)
    state = dict(InceptionResnetV1().state_dict())
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean"):
            state[key] = torch.randn_like(value) * 0.1
    state["logits.weight"] = torch.randn(8631, 512)
    state["logits.bias"] = torch.zeros(8631)
    return state


def test_facenet_layout_export_and_box_mode(tmp_path: Path) -> None:
    state = _facenet_state()
    for key, shape in FACENET_KEYS.items():
        assert tuple(state[key].shape) == shape, key
    torch.save(state, tmp_path / "facenet.pt")
    facenet = FaceNet(tmp_path / "facenet.pt")
    assert (facenet.dim, facenet.input_size, facenet.template) == (512, (160, 160), "arcface160")
    assert facenet.preprocessing == ("RGB", 127.5, 128.0)
    crops = _crops(3, size=160)
    blob = facenet._blob(crops[:1])
    assert np.allclose(blob[0, 0], (crops[0, ..., 0].astype(np.float32) - 127.5) / 128.0)
    onnx_path = facenet.export_onnx(tmp_path / "facenet.onnx")
    color, mean, std = facenet.preprocessing
    onnx_embedder = ArcFace(onnx_path, color=color, mean=mean, std=std)
    raw = facenet._run(crops)
    assert np.abs(raw - onnx_embedder._run(crops)).max() / np.abs(raw).max() < 1e-5
    assert np.abs(facenet.embed(crops) - onnx_embedder.embed(crops)).max() < 1e-4
    boxed = FaceNet(tmp_path / "facenet.pt", alignment="box")
    assert boxed.template == "box160"
    with pytest.raises(ConfigError):
        FaceNet(tmp_path / "facenet.pt", alignment="crop")  # type: ignore[arg-type]
    del state["last_bn.running_mean"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ModelError, match=r"last_bn\.running_mean"):
        FaceNet(tmp_path / "broken.pt")


def test_box_aligner_crops_the_box_with_margin() -> None:
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[50:150, 100:200] = 200  # a bright 100x100 "face"
    aligner = BoxAligner(160, margin=0)
    (crop,) = aligner.align(image, np.zeros((1, 5, 2)), np.array([[100, 50, 200, 150]]))
    assert crop.shape == (160, 160, 3)
    assert (crop == 200).all()
    # margin 32 (pixels of the 160 px output) widens a 100 px box by 100·32/128 = 25 px,
    # so the face fills 128 of the 160 output pixels and 16 px of black lie on each side
    (wide,) = BoxAligner(160, margin=32).align(
        image, np.zeros((1, 5, 2)), np.array([[100, 50, 200, 150]])
    )
    row = wide[80, :, 0]
    dark = np.flatnonzero(row < 100)
    assert 30 <= dark.size <= 34
    assert abs(int((dark < 80).sum()) - int((dark >= 80).sum())) <= 2
    with pytest.raises(ConfigError, match="boxes"):
        aligner.align(image, np.zeros((1, 5, 2)))


def test_torch_embedders_in_the_facade(
    tmp_path: Path, models_dir: Path, data_dir: Path, adaface_ckpt: Path
) -> None:
    """By name, with MTCNN: the aligner follows the embedder's template."""
    torch.save(_facenet_state(), tmp_path / "facenet.pt")
    fr = FaceRecognizer(
        detector="mtcnn",
        embedder="facenet",
        embedder_model=tmp_path / "facenet.pt",
        embedder_options={"alignment": "box"},
        model_dir=models_dir,
        thresholds=Thresholds(0.3, 0.4),
    )
    assert isinstance(fr.aligner, BoxAligner)
    faces = fr.faces(data_dir / "openface/longoria-cooper.jpg")
    assert len(faces) == 2
    assert faces[0].crop.shape == (160, 160, 3)
    ada = FaceRecognizer(
        detector="mtcnn", embedder="adaface", embedder_model=adaface_ckpt, model_dir=models_dir
    )
    assert isinstance(ada.aligner, SimilarityAligner)
    assert ada.embed(data_dir / "mtcnn/ivan.jpg").shape == (512,)
    with pytest.raises(ConfigError, match="not calibrated"):
        ada.verify(data_dir / "mtcnn/ivan.jpg", data_dir / "mtcnn/ivan.jpg")
