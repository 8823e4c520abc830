"""Milvus galleries over the network: a real milvus-lite gRPC server process on a free
localhost port (``python -m milvus_lite server``), reached through ``milvus://`` URIs — the
client code path of a Milvus standalone server or cluster (gRPC over TCP, query
iterators, databases, tokens, several clients at once). The ``milvus_server`` fixture is
imported by tests/test_milvus_store.py to run its store tests against the server too."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facekit.errors import GalleryError
from facekit.gallery import EmbedderInfo, Gallery
from facekit.gallery.milvus_store import MilvusStore

INFO = EmbedderInfo(name="toy", sha256="ab" * 32, dim=8, template="arcface", flip=False)
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(process: subprocess.Popen[bytes], log: Path, port: int) -> bool:
    """Wait until the server says it listens on ``port`` and accepts a connection (``False``
    when it exited or did not within `START_TIMEOUT_S`)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        if f"listening on 127.0.0.1:{port}" in log.read_text(errors="replace"):
            with socket.socket() as probe:
                probe.settimeout(1.0)
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    return True
        time.sleep(0.1)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT (the server drains and closes its data directory), then SIGKILL if needed."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a milvus-lite server process with a temporary data directory,
    stopped (and waited for) after the module's tests."""
    folder = tmp_path_factory.mktemp("milvus-server")
    log = folder / "server.log"
    for _ in range(3):  # another process may take the free port first
        port = _free_port()
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                 str(folder / "server.db"), "--host", "127.0.0.1", "--port", str(port)],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        if _listening(process, log, port):
            break
        _stop(process)
    else:
        pytest.fail(f"the milvus-lite server did not start: {log.read_text()[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)
    assert process.returncode is not None


def server_uri(server: str, collection: str | None = None) -> str:
    """A ``milvus://`` location of a new collection (or ``collection``) on ``server``."""
    return f"milvus://{server}/{collection or 'c' + uuid.uuid4().hex[:12]}"


def _unit(rows: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_two_processes_use_one_server_gallery_at_once(milvus_server: str) -> None:
    """Unlike a Milvus Lite directory, a server takes several clients: another process adds
    while this one holds the gallery open, and this one sees the additions."""
    uri = server_uri(milvus_server)
    vectors = _unit(2, 1)
    with Gallery(uri, embedder=INFO) as gallery:
        gallery.add("ann", vectors[:1], content_sha256=["a"])
        writer = textwrap.dedent(
            f"""
            import numpy as np
            from facekit.gallery import Gallery
            rows = np.array({vectors[1:].tolist()!r}, dtype=np.float32)
            with Gallery({uri!r}) as gallery:
                print(gallery.add("bob", rows, content_sha256=["b"]), gallery.counts())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", writer], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[0] == "1"
        assert gallery.counts() == {"ann": 1, "bob": 1}
        assert gallery.search(vectors, threshold=0.99)[1].identity == "bob"
        assert gallery.known_content(["a", "b", "c"]) == {"a", "b"}


def test_credentials_and_database_in_the_uri_reach_the_server(
    milvus_server: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``user:password@`` and ``?db=`` parsed, sent, and never shown, not even in logs.
    (This server does not check tokens; a secured Milvus server does. It does keep
    databases apart.)"""
    from pymilvus import MilvusClient

    caplog.set_level(logging.DEBUG)
    admin = MilvusClient(f"http://{milvus_server}", dedicated=True)
    other = MilvusClient(f"http://{milvus_server}", db_name="facekit_test", dedicated=True)
    try:
        admin.create_database("facekit_test")
        uri = f"milvus://root:S3cret%40pw@{milvus_server}/faces?db=facekit_test"
        with Gallery(uri, embedder=INFO) as gallery:
            gallery.add("ann", _unit(1))
            shown = repr(gallery)
        assert "S3cret" not in shown
        assert "?db=facekit_test" in shown
        assert other.list_collections() == ["faces"]
        assert "faces" not in admin.list_collections()  # not in the default database
    finally:
        admin.close()
        other.close()
    store = MilvusStore(uri, create=False)
    try:
        assert store.location.token == "root:S3cret@pw"
        assert "S3cret" not in repr(store.location)
        assert store.identities() == [("ann", 1)]
    finally:
        store.close()
    monkeypatch.setenv("FACEKIT_MILVUS_TOKEN", "root:FromTheEnvironment")
    with Gallery(f"milvus://{milvus_server}/faces?db=facekit_test", create=False) as gallery:
        assert gallery.counts() == {"ann": 1}
    with pytest.raises(GalleryError, match="database 'nowhere' does not exist") as caught:
        MilvusStore(f"milvus://root:S3cret@{milvus_server}/faces?db=nowhere")
    assert "S3cret" not in str(caught.value)
    assert "S3cret" not in caplog.text
    assert "FromTheEnvironment" not in caplog.text


def test_tls_locations_speak_tls_and_fail_clearly_against_a_plain_server(
    milvus_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``milvus+tls://`` makes pymilvus open a TLS channel: this server speaks plain gRPC,
    so the handshake fails — a `GalleryError` without the password, no hang."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(GalleryError, match="cannot open the gallery") as caught:
        MilvusStore(f"milvus+tls://root:S3cret@{milvus_server}/faces")
    assert f"https://{milvus_server}/faces" in str(caught.value)
    assert "S3cret" not in str(caught.value)
    assert "S3cret" not in caplog.text
