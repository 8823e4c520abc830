"""facekit.zoo: the model table against the real shared weights, resolving, verifying, and
downloads from a local HTTP server (Range/resume, corrupt bytes, archives)."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import importlib
import io
import json
import logging
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from facekit import zoo
from facekit.errors import ChecksumError, ConfigError, ModelError, ModelNotFoundError
from facekit.zoo import MODELS, ModelFile, Source, download_file, resolve, search_dirs

BY_NAME = {spec.name: spec for spec in MODELS}
Served = tuple[ModelFile, bytes, str]


@pytest.fixture(autouse=True)
def isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No user model folders, an empty cache, never a real download, no proxy for 127.0.0.1."""
    monkeypatch.delenv("FACEKIT_HOME", raising=False)
    monkeypatch.setenv("FACEKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEKIT_OFFLINE", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def shared_files(models_dir: Path) -> dict[str, tuple[Path, str, int]]:
    """File name → (path, real sha256, real size) for every weight file in shared/models."""
    found = {}
    for path in sorted(models_dir.rglob("*")):
        if path.is_file() and path.name != "MANIFEST.md":
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            found[path.name] = (path, digest, path.stat().st_size)
    assert len(found) >= 13
    return found


# ---------------------------------------------------------------- the table


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s.name)
def test_spec_well_formed(spec: zoo.ModelSpec) -> None:
    assert spec.task in ("detection", "recognition")
    assert spec.files
    assert spec.license.strip()
    for file in spec.files:
        if file.sha256 is None:  # nothing published: pinned on first use, and said so
            assert "pinned on first use" in spec.provenance, file.name
            assert file.sources, file.name
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", file.sha256), file.name
            assert file.size is not None
            assert file.size > 0
        for source in file.sources:
            assert source.url.startswith("https://")
    if "research" in spec.license.lower() or spec.pack is not None:
        assert spec.research_only, spec.name
    if spec.task == "recognition":
        assert spec.embedding_dim
        assert spec.template
    if spec.convert is not None:  # made from the model's one (verified) file
        assert len(spec.files) == 1
        assert re.fullmatch(r"[\w.]+:\w+", spec.convert.converter)
        assert not spec.convert.output.sources
        if spec.convert.output.sha256 is None:
            assert "pinned on first use" in spec.provenance


def _all_files(spec: zoo.ModelSpec) -> list[ModelFile]:
    """The files of ``spec``, with its converted file."""
    return [*spec.files, *((spec.convert.output,) if spec.convert else ())]


def test_names_and_digests_unique() -> None:
    assert len(BY_NAME) == len(MODELS)
    digests = [f.sha256 for spec in MODELS for f in _all_files(spec) if f.sha256]
    assert len(set(digests)) == len(digests)
    names = [f.name for spec in MODELS for f in _all_files(spec)]
    assert len(set(names)) == len(names)  # pins are keyed by file name
    for backend, name in zoo.DEFAULT_MODELS.items():
        assert BY_NAME[name].backend == backend


def test_specs_match_the_real_files(shared_files: dict[str, tuple[Path, str, int]]) -> None:
    """Every zoo file that is staged in shared/models matches it byte for byte. The shared
    folder may hold weights the zoo does not list (yet): those are not required here."""
    checked = []
    for spec in MODELS:
        for file in spec.files:
            if file.name in shared_files:
                _, digest, size = shared_files[file.name]
                assert (file.sha256, file.size) == (digest, size), file.name
                assert zoo.spec_for_sha256(digest) is spec, file.name
                checked.append(file.name)
    # the staged zoo models (SCRFD, RetinaFace, YuNet, MobileFaceNet, MTCNN) are all checked
    assert len(checked) >= 13, checked


# ---------------------------------------------------------------- resolving


def test_resolve_by_name_in_subfolders(models_dir: Path) -> None:
    for spec in MODELS:
        if spec.convert is not None:
            continue  # resolves to its converted file: test_zoo_open
        if zoo.verify(spec, model_dir=models_dir) == {f.name: "missing" for f in spec.files}:
            continue  # not staged (the large InsightFace packs)
        found = resolve(spec.name, model_dir=models_dir, download=False)
        assert found.spec == spec
        assert [p.name for p in found.paths] == [f.name for f in spec.files]
        assert all(p.parent.parent == models_dir for p in found.paths)  # one folder down
        assert found.sha256 == tuple(f.sha256 for f in spec.files)
        assert all(v.startswith("ok") for v in zoo.verify(spec, model_dir=models_dir).values())
    assert resolve("scrfd_500m", task="detection", model_dir=models_dir).name == "scrfd_500m"


def test_resolve_path_identifies_zoo_files(models_dir: Path, tmp_path: Path) -> None:
    found = resolve(models_dir / "scrfd" / "det_500m.onnx")
    assert found.spec is BY_NAME["scrfd_500m"]
    assert found.name == "scrfd_500m"
    multi = resolve(str(models_dir / "mtcnn_torch" / "rnet.pt"))  # one file of three
    assert multi.name == "mtcnn"
    assert [p.name for p in multi.paths] == ["pnet.pt", "rnet.pt", "onet.pt"]
    unknown = tmp_path / "mystery.onnx"
    unknown.write_bytes(b"not a zoo model" * 100)
    other = resolve(unknown)
    assert other.spec is None
    assert other.name == "mystery.onnx"
    assert other.sha256 == (hashlib.sha256(unknown.read_bytes()).hexdigest(),)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve(tmp_path / "absent.onnx")


def test_corrupt_copy_raises_checksum_error(models_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    copy = folder / "det_500m.onnx"
    data = bytearray((models_dir / "scrfd" / "det_500m.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(data)
    expected = BY_NAME["scrfd_500m"].files[0].sha256
    # model_dir is searched before $FACEKIT_HOME, so the bad copy is found and refused.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEKIT_HOME", str(models_dir))
        with pytest.raises(ChecksumError) as info:
            resolve("scrfd_500m", model_dir=folder)
    message = str(info.value)
    assert str(copy) in message
    assert expected in message
    assert hashlib.sha256(data).hexdigest() in message
    assert zoo.verify(BY_NAME["scrfd_500m"], model_dir=folder)["det_500m.onnx"].startswith("BAD")
    assert resolve(copy).spec is None  # by path: just an unknown file


def test_missing_model_says_what_and_where(tmp_path: Path, isolated_cache: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    spec = BY_NAME["scrfd_500m"]
    with pytest.raises(ModelNotFoundError) as info:
        resolve("scrfd_500m", model_dir=empty, download=False)
    message = str(info.value)
    for needed in (spec.files[0].name, spec.files[0].sha256, str(empty), str(isolated_cache)):
        assert needed in message


def test_environment_folders_are_searched(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FACEKIT_HOME", str(models_dir))
    assert search_dirs()[0] == models_dir
    assert (
        resolve("yunet_2026may").path == models_dir / "yunet" / "face_detection_yunet_2026may.onnx"
    )
    monkeypatch.delenv("FACEKIT_HOME")
    cache = tmp_path / "other-cache"
    monkeypatch.setenv("FACEKIT_CACHE", str(cache))
    assert zoo.cache_dir() == cache
    assert search_dirs()[-1] == cache
    with pytest.raises(ModelNotFoundError):
        resolve("yunet_2026may")
    (cache / "yunet").mkdir(parents=True)
    shutil.copy(models_dir / "yunet" / "face_detection_yunet_2026may.onnx", cache / "yunet")
    assert resolve("yunet_2026may").path.parent == cache / "yunet"


def test_wrong_task_and_unknown_name(models_dir: Path) -> None:
    # Documented in resolve(): a model of another task raises ModelError.
    with pytest.raises(ModelError, match="detection") as info:
        resolve("scrfd_500m", task="recognition", model_dir=models_dir)
    assert "recognition" in str(info.value)
    with pytest.raises(ModelError, match="not a recognition model"):
        resolve(models_dir / "scrfd" / "det_500m.onnx", task="recognition")
    with pytest.raises(ConfigError, match="unknown model 'scrfd_9000'") as info:
        resolve("scrfd_9000")
    assert "scrfd_500m" in str(info.value)  # lists the known names


# ---------------------------------------------------------------- downloads


class _Server(http.server.ThreadingHTTPServer):
    files: dict[str, bytes]
    mode: str  # "ok", "wrong" (corrupt bytes) or "drop" (close halfway)
    requests: list[tuple[str, str | None]]


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Range")))
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        if self.server.mode == "wrong":
            data = bytes(b ^ 0x55 for b in data)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and int(match[1]) < len(data):
            start = int(match[1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.mode == "drop":
            body = body[: len(body) // 2]
            self.close_connection = True
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.mode, srv.requests = {}, "ok", []
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def served(server: _Server, models_dir: Path) -> Served:
    """The zoo's pnet.pt entry pointed at the local server, with the real bytes."""
    data = (models_dir / "mtcnn_torch" / "pnet.pt").read_bytes()
    server.files["/pnet.pt"] = data
    url = f"http://127.0.0.1:{server.server_address[1]}/pnet.pt"
    file = dataclasses.replace(BY_NAME["mtcnn"].files[0], sources=(Source(url),))
    return file, data, url


def test_download_full(served: Served, server: _Server, tmp_path: Path):
    file, data, _ = served
    path = download_file(file, tmp_path / "dl", progress=False)
    assert path == tmp_path / "dl" / "pnet.pt"
    assert zoo.sha256_of(path) == file.sha256
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["pnet.pt"]  # no .part left
    assert server.requests == [("/pnet.pt", None)]


def test_download_resumes_from_part(served: Served, server: _Server, tmp_path: Path) -> None:
    file, data, _ = served
    folder = tmp_path / "dl"
    folder.mkdir()
    half = len(data) // 2
    (folder / "pnet.pt.part").write_bytes(data[:half])
    path = download_file(file, folder, progress=False)
    assert server.requests == [("/pnet.pt", f"bytes={half}-")]
    assert zoo.sha256_of(path) == file.sha256
    assert not (folder / "pnet.pt.part").exists()


def test_download_wrong_bytes_not_retried(served: Served, server: _Server, tmp_path: Path) -> None:
    file, _, _ = served
    server.mode = "wrong"
    folder = tmp_path / "dl"
    with pytest.raises(ChecksumError, match=file.sha256):
        download_file(file, folder, progress=False)
    assert list(folder.iterdir()) == []  # .part deleted, no final file
    assert len(server.requests) == 1


def test_dropped_connection_keeps_part_for_resume(served: Served, server: _Server, tmp_path: Path):
    file, _, _ = served
    server.mode = "drop"
    folder = tmp_path / "dl"
    with pytest.raises(ModelNotFoundError):
        download_file(file, folder, progress=False)
    assert (folder / "pnet.pt.part").stat().st_size == file.size // 2
    server.mode = "ok"
    assert zoo.sha256_of(download_file(file, folder, progress=False)) == file.sha256
    assert server.requests[-1][1] == f"bytes={file.size // 2}-"


def test_unreachable_source(served: Served, tmp_path: Path) -> None:
    file, _, good = served
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/pnet.pt"
    only_dead = dataclasses.replace(file, sources=(Source(dead),))
    with pytest.raises(ModelNotFoundError) as info:
        download_file(only_dead, tmp_path / "dl", progress=False)
    assert dead in str(info.value)
    assert "pnet.pt" in str(info.value)
    # An unreachable source falls through to the next one.
    both = dataclasses.replace(file, sources=(Source(dead), Source(good)))
    assert zoo.sha256_of(download_file(both, tmp_path / "dl", progress=False)) == file.sha256


def test_download_zip_member(served: Served, server: _Server, tmp_path: Path) -> None:
    file, data, url = served
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as bundle:
        bundle.writestr("pack/README.txt", "not the model")
        bundle.writestr("pack/pnet.pt", data)
    archive = buf.getvalue()
    server.files["/pack.zip"] = archive
    zip_url = url.replace("pnet.pt", "pack.zip")
    digest = hashlib.sha256(archive).hexdigest()
    for member in ("pack/pnet.pt", "pnet.pt"):  # exact path, or another folder depth
        folder = tmp_path / member.replace("/", "_")
        source = Source(zip_url, member=member, archive_sha256=digest, archive_size=len(archive))
        path = download_file(dataclasses.replace(file, sources=(source,)), folder, progress=False)
        assert path == folder / "pnet.pt"
        assert zoo.sha256_of(path) == file.sha256
        assert not list(folder.glob("*.part"))
    bad = Source(zip_url, member="pack/pnet.pt", archive_sha256="0" * 64)
    with pytest.raises(ChecksumError, match=r"0{64}"):
        download_file(dataclasses.replace(file, sources=(bad,)), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "pnet.pt").exists()
    assert not list((tmp_path / "bad").rglob("*.zip*"))


# ---------------------------------------------------------------- model packages


def test_entry_point_model_package(
    models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    site = tmp_path / "site"
    info = site / "fakemodels-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakemodels\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[facekit.models]\n"
        "shared = fakemodels_pkg:MODEL_DIR\n"
        "broken = fakemodels_pkg:NO_SUCH_NAME\n"
    )
    (site / "fakemodels_pkg.py").write_text(f"MODEL_DIR = {str(models_dir)!r}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "fakemodels_pkg", raising=False)
    importlib.invalidate_caches()
    try:
        dirs = search_dirs()
        assert models_dir in dirs  # the broken entry point does not hide it
        assert dirs[-1] == isolated_cache  # the cache comes last
        found = resolve("scrfd_500m", download=False)
        assert found.path == models_dir / "scrfd" / "det_500m.onnx"
        assert found.sha256 == (BY_NAME["scrfd_500m"].files[0].sha256,)
    finally:
        sys.modules.pop("fakemodels_pkg", None)


# ---------------------------------------------------------------- files without a digest


@pytest.fixture
def unpinned(server: _Server, models_dir: Path) -> Served:
    """A zoo-style file with no published sha256 or size, served locally."""
    data = (models_dir / "mtcnn_torch" / "rnet.pt").read_bytes()
    server.files["/weights.ckpt"] = data
    url = f"http://127.0.0.1:{server.server_address[1]}/weights.ckpt"
    return ModelFile("weights.ckpt", None, None, (Source(url),)), data, url


def test_unpublished_digest_is_pinned_on_first_download(
    unpinned: Served, server: _Server, isolated_cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file, data, url = unpinned
    spec = dataclasses.replace(BY_NAME["adaface_ir18_casia"], files=(file,))
    store = importlib.import_module("facekit.zoo.store")
    with caplog.at_level(logging.WARNING, logger="facekit.zoo"):
        found = store._download_missing(spec, [isolated_cache], True, False)
    digest = hashlib.sha256(data).hexdigest()
    assert found.sha256 == (digest,)
    assert found.path.read_bytes() == data
    # the download itself says that this first copy is not verified
    (warning,) = [r.getMessage() for r in caplog.records if "cannot be verified" in r.message]
    assert "weights.ckpt" in warning
    assert url in warning
    assert json.loads((isolated_cache / "pins.json").read_text()) == {"weights.ckpt": digest}
    # the same bytes pass again; other bytes under the same name are refused
    assert store._check(found.path, file) == digest
    found.path.write_bytes(data[:-10])
    with pytest.raises(ChecksumError, match="pinned"):
        store._check(found.path, file)


def test_unpublished_digest_refuses_a_web_page(
    unpinned: Served, server: _Server, tmp_path: Path
) -> None:
    file, _, _ = unpinned
    server.files["/weights.ckpt"] = b"<!DOCTYPE html><html>Google Drive can't scan...</html>"
    folder = tmp_path / "dl"
    with pytest.raises(ChecksumError, match="web page"):
        download_file(file, folder, progress=False)
    assert list(folder.iterdir()) == []


def test_wheel_member_source_for_mtcnn() -> None:
    """MTCNN's files come out of the facenet-pytorch wheel on PyPI, archive digest pinned."""
    for file in BY_NAME["mtcnn"].files:
        (source,) = file.sources
        assert source.url.startswith("https://files.pythonhosted.org/")
        assert source.url.endswith("facenet_pytorch-2.6.0-py3-none-any.whl")
        assert source.member == f"facenet_pytorch/data/{file.name}"
        assert source.archive_sha256 is not None
        assert source.archive_size == 1881930


def test_mxnet_archive_members_renamed_to_a_checkpoint_prefix(
    server: _Server, models_dir: Path, isolated_cache: Path
) -> None:
    """InsightFace's MXNet zips hold model-symbol.json / model-0000.params in a folder: the
    zoo saves them as PREFIX-symbol.json / PREFIX-0000.params (unique names, a checkpoint
    pair), from a Dropbox-style URL with a query string."""
    symbol = (models_dir / "mobilefacenet_mxnet/model_mobilefacenet-symbol.json").read_bytes()
    params = b"stand-in params bytes"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as bundle:
        bundle.writestr("model-y1-test2/model-symbol.json", symbol)
        bundle.writestr("model-y1-test2/model-0000.params", params)
    archive = buf.getvalue()
    server.files["/akx/model-MobileFaceNet.zip?dl=1"] = archive
    url = f"http://127.0.0.1:{server.server_address[1]}/akx/model-MobileFaceNet.zip?dl=1"
    spec = BY_NAME["mobilefacenet_arcface_mxnet"]
    files = tuple(
        dataclasses.replace(
            f,
            sources=(
                dataclasses.replace(
                    f.sources[0],
                    url=url,
                    archive_sha256=hashlib.sha256(archive).hexdigest(),
                    archive_size=len(archive),
                ),
            ),
        )
        for f in spec.files
    )
    store = importlib.import_module("facekit.zoo.store")
    found = store._download_missing(
        dataclasses.replace(spec, files=files), [isolated_cache], True, False
    )
    assert [p.name for p in found.paths] == [
        "model-y1-test2-symbol.json",
        "model-y1-test2-0000.params",
    ]
    assert found.paths[0].read_bytes() == symbol
    assert found.paths[1].read_bytes() == params
    assert (isolated_cache / "archives/model-MobileFaceNet.zip").exists()  # no "?dl=1"
    pins = json.loads((isolated_cache / "pins.json").read_text())
    assert pins["model-y1-test2-0000.params"] == hashlib.sha256(params).hexdigest()
    assert len(server.requests) == 1  # one archive download serves both members


# ---------------------------------------------------------------- archives and pins

_BOMB_BYTES = 64 << 20  # what the bomb's member inflates to: 64 MiB of zeros
_FILE_SIZE_LIMIT = 4 << 20  # the child process may write no file larger than 4 MiB


def _zip_bomb(member: str) -> bytes:
    """A ~64 KB zip whose member inflates to 64 MiB (its header states that size honestly)."""
    buf = io.BytesIO()
    with (
        zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as bundle,
        bundle.open(member, "w", force_zip64=True) as out,
    ):
        zeros = bytes(1 << 20)
        for _ in range(_BOMB_BYTES >> 20):
            out.write(zeros)
    return buf.getvalue()


def test_zip_bomb_member_stops_at_the_declared_size(tmp_path: Path) -> None:
    """A cached archive (its sha256 as the zoo pins it) whose member inflates far beyond the
    zoo's size: extraction stops at that size. The download runs in a child process that may
    not write a file over 4 MiB, so a copy that went on would fail there (EFBIG) instead."""
    pnet = BY_NAME["mtcnn"].files[0]
    assert pnet.size is not None
    assert pnet.size < _FILE_SIZE_LIMIT < _BOMB_BYTES
    bomb = _zip_bomb("facenet_pytorch/data/pnet.pt")
    assert len(bomb) < 200_000
    folder = tmp_path / "dl"
    (folder / "archives").mkdir(parents=True)
    (folder / "archives" / "bomb.whl").write_bytes(bomb)
    code = textwrap.dedent(
        f"""
        import dataclasses, resource, signal
        from pathlib import Path
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit: EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({_FILE_SIZE_LIMIT}, {_FILE_SIZE_LIMIT}))
        from facekit.zoo import MODELS, Source, download_file
        pnet = [s for s in MODELS if s.name == "mtcnn"][0].files[0]
        source = Source(
            "https://example.invalid/bomb.whl",
            member="facenet_pytorch/data/pnet.pt",
            archive_sha256={hashlib.sha256(bomb).hexdigest()!r},
            archive_size={len(bomb)},
        )
        try:
            download_file(dataclasses.replace(pnet, sources=(source,)), Path({str(folder)!r}),
                          progress=False)
        except Exception as exc:
            print(type(exc).__name__, exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    kind, _, message = done.stdout.strip().partition(" ")
    assert kind == "ChecksumError", done.stdout + done.stderr
    assert f"{pnet.size:,} bytes" in message
    assert "zip bomb" in message
    assert "bomb.whl" in message
    assert sorted(p.name for p in folder.iterdir()) == ["archives"]  # no partial member kept


def test_member_within_its_size_is_extracted_whole(tmp_path: Path, models_dir: Path) -> None:
    """The cap is the zoo's size: a member of exactly that size passes, one byte more not."""
    data = (models_dir / "mtcnn_torch" / "pnet.pt").read_bytes()
    pnet = BY_NAME["mtcnn"].files[0]
    for extra, ok in ((b"", True), (b"\0", False)):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as bundle:
            bundle.writestr("pnet.pt", data + extra)
        archive = buf.getvalue()
        folder = tmp_path / f"dl{len(extra)}"
        (folder / "archives").mkdir(parents=True)
        (folder / "archives" / "pack.zip").write_bytes(archive)
        source = Source(
            "https://example.invalid/pack.zip",
            member="pnet.pt",
            archive_sha256=hashlib.sha256(archive).hexdigest(),
            archive_size=len(archive),
        )
        file = dataclasses.replace(pnet, sources=(source,))
        if ok:
            assert download_file(file, folder, progress=False).read_bytes() == data
        else:
            with pytest.raises(ChecksumError, match="more than the 28,570 bytes"):
                download_file(file, folder, progress=False)
            assert sorted(p.name for p in folder.iterdir()) == ["archives"]


def test_corrupt_cached_archive_is_deleted_and_reported(
    served: Served, server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file, data, url = served
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as bundle:
        bundle.writestr("pack/pnet.pt", data)
    archive = buf.getvalue()
    server.files["/pack.zip"] = archive
    digest = hashlib.sha256(archive).hexdigest()
    source = Source(
        url.replace("pnet.pt", "pack.zip"),
        member="pack/pnet.pt",
        archive_sha256=digest,
        archive_size=len(archive),
    )
    member = dataclasses.replace(file, sources=(source,))
    folder = tmp_path / "dl"
    cached = folder / "archives" / "pack.zip"
    cached.parent.mkdir(parents=True)
    damaged = bytearray(archive)
    damaged[len(damaged) // 3] ^= 0xFF  # inside the member's data
    cached.write_bytes(damaged)
    with (
        caplog.at_level(logging.WARNING, logger="facekit.zoo"),
        pytest.raises(ChecksumError) as info,
    ):
        download_file(member, folder, progress=False)
    message = str(info.value)
    assert str(cached) in message
    assert "corrupt" in message
    assert "deleted" in message
    assert digest in message
    assert hashlib.sha256(damaged).hexdigest() in message
    assert any(message in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert not cached.exists()
    assert server.requests == []  # the cached copy was checked, not downloaded again
    assert not (folder / "pnet.pt").exists()
    # the next attempt downloads a good copy
    assert download_file(member, folder, progress=False).read_bytes() == data
    assert zoo.sha256_of(cached) == digest
    assert len(server.requests) == 1


_PINNER = """
import logging, sys, time
from pathlib import Path
from facekit.zoo.pins import check_pinned
logging.disable(logging.WARNING)  # each new pin logs a warning: keep stderr for errors
cache, go, worker, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
while not go.exists():
    time.sleep(0.005)
for k in range(count):
    check_pinned(f"w{worker}-{k}.ckpt", f"{int(worker) * 1000 + k:064x}", cache, Path("x"))
    check_pinned("common.ckpt", "c" * 64, cache, Path("x"))  # all pin the same name too
"""


def test_concurrent_pins_are_all_kept(tmp_path: Path) -> None:
    """Several processes pinning at once: every pin survives, and the file is valid JSON
    whenever it is read."""
    cache, go = tmp_path / "cache", tmp_path / "go"
    workers, count = 4, 25
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _PINNER, str(cache), str(go), str(w), str(count)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    go.touch()
    pins_file = cache / "pins.json"
    reads = 0
    deadline = time.monotonic() + 120
    while any(child.poll() is None for child in children) and time.monotonic() < deadline:
        if pins_file.exists():
            assert isinstance(json.loads(pins_file.read_text()), dict)  # never half-written
            reads += 1
        time.sleep(0.002)
    for child in children:
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    pins = json.loads(pins_file.read_text())
    expected = {
        f"w{w}-{k}.ckpt": f"{w * 1000 + k:064x}" for w in range(workers) for k in range(count)
    }
    assert pins == {**expected, "common.ckpt": "c" * 64}
    assert reads > 0
    assert sorted(p.name for p in cache.iterdir()) == ["pins.json", "pins.json.lock"]
