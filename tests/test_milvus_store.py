"""The Milvus gallery store on a real embedded Milvus Lite (files in tmp_path, no mocks) and,
for the store and Gallery tests marked so, on a real milvus-lite server process reached by
``milvus://127.0.0.1:PORT/collection`` (tests/test_milvus_server.py): binding, resume,
remove, rename, persistence across processes, the one-process lock, a Gallery that reads no
vectors to open, list or identify, location parsing with credentials, server-side search
against exact search on real embeddings, and migration SQLite <-> Milvus."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekit.cli import main
from facekit.errors import ConfigError, GalleryError
from facekit.gallery import EmbedderInfo, ExactIndex, Gallery
from facekit.gallery.backends import open_store, redact
from facekit.gallery.milvus_store import MilvusIndex, MilvusStore, parse_location
from test_gallery import orl_folder, orl_recognizer
from test_milvus_server import milvus_server, server_uri

__all__ = ["milvus_server"]  # a fixture used here

INFO = EmbedderInfo(name="toy", sha256="ab" * 32, dim=8, template="arcface", flip=False)
SUBJECTS, ENROLLED, HELD_BACK = range(1, 13), range(1, 4), range(6, 8)


def _unit(rows: int, seed: int = 0, dim: int = 8) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _uri(path: Path) -> str:
    return f"milvus-lite://{path}"


def _none(count: int) -> list[None]:
    return [None] * count


@pytest.fixture(params=["lite", "server"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new gallery: a Milvus Lite directory, or a collection on the milvus-lite server."""
    if request.param == "lite":
        return _uri(tmp_path / "faces.db")
    return server_uri(request.getfixturevalue("milvus_server"))


@pytest.fixture
def store(location: str) -> Iterator[MilvusStore]:
    opened = MilvusStore(location)
    opened.bind(INFO)
    yield opened
    opened.close()


def test_binding_travels_with_the_collection_and_another_embedder_is_refused(
    location: str,
) -> None:
    uri = location
    with Gallery(uri, embedder=INFO) as gallery:
        assert gallery.embedder == INFO
        gallery.add("ann", _unit(1))
    store = MilvusStore(uri, create=False)
    assert store.embedder() == INFO
    assert store.meta("schema_version") == "1"
    with pytest.raises(GalleryError, match="holds 8-d vectors"):
        store.bind(EmbedderInfo("other", "cd" * 32, 16, "arcface", False))
    store.close()
    other = EmbedderInfo("other", "cd" * 32, 8, "arcface", True)
    with pytest.raises(GalleryError, match="another embedder"):
        Gallery(uri, embedder=other)
    with Gallery(uri) as gallery:  # no embedder given: the stored binding is used
        assert gallery.embedder == INFO
        assert gallery.counts() == {"ann": 1}


def test_add_skips_known_content_and_repeats_and_records_metadata(store: MilvusStore) -> None:
    vectors = _unit(4)
    hashes = ["h0", "h1", "h1", None]
    added = store.add_samples(
        "ann", vectors, ["a.jpg", "b.jpg", "c.jpg", None], hashes,
        [(1.0, 2.0, 3.5, 4.25), None, None, None], [0.875, None, None, 0.5],
    )  # fmt: skip
    assert added == 3  # the repeated h1 went once
    assert store.known_content(["h0", "h1", "h9"]) == {"h0", "h1"}
    assert store.has_content("h0")
    assert not store.has_content("h9")
    # a resumed run: known hashes are skipped, a sample without a hash is added again
    again = store.add_many(["ann", "bob", "bob"], _unit(3, 1), _none(3), ["h0", "h2", None],
                           _none(3), _none(3))  # fmt: skip
    assert again == 2
    assert store.identities() == [("ann", 3), ("bob", 2)]
    records = store.samples("ann")
    assert [r.source for r in records] == ["a.jpg", "b.jpg", None]
    assert [r.content_sha256 for r in records] == ["h0", "h1", None]
    assert records[0].box == (1.0, 2.0, 3.5, 4.25)
    assert records[1].box is None
    assert [r.score for r in records] == [0.875, None, 0.5]
    assert all(r.identity == "ann" and r.added > 0 for r in records)


def test_remove_and_rename_change_the_token_and_keep_every_sample(store: MilvusStore) -> None:
    names = ["ann", "ann", 'bob "the" \\ builder', "carl", "carl", "carl"]
    store.add_many(names, _unit(6), _none(6), [f"h{i}" for i in range(6)], _none(6), _none(6))
    token = store.change_token()
    with store.transaction():
        store.rename("carl", "dora")
    assert store.change_token() != token
    assert store.identities() == [("ann", 2), ('bob "the" \\ builder', 1), ("dora", 3)]
    assert [r.content_sha256 for r in store.samples("dora")] == ["h3", "h4", "h5"]
    with pytest.raises(GalleryError, match="already enrolled"):
        store.rename("ann", "dora")
    with pytest.raises(GalleryError, match="not enrolled"):
        store.rename("nobody", "eve")
    token = store.change_token()
    assert store.remove('bob "the" \\ builder') == 1
    assert store.change_token() != token
    with pytest.raises(GalleryError, match="not enrolled"):
        store.remove("nobody")
    assert store.identities() == [("ann", 2), ("dora", 3)]
    assert store.known_content(["h2", "h3"]) == {"h3"}


def test_load_returns_what_was_added_bit_for_bit_and_reads_additions_only(
    store: MilvusStore,
) -> None:
    vectors = _unit(7, 3)
    names = ["b", "a", "b", "c", "a", "b", "a"]
    store.add_many(names, vectors, _none(7), _none(7), _none(7), _none(7))
    snapshot = store.load(8)
    assert snapshot.full
    assert snapshot.names == ["a", "b", "c"]
    assert snapshot.owners.tolist() == [0, 0, 0, 1, 1, 1, 2]
    expected = np.concatenate([vectors[[1, 4, 6]], vectors[[0, 2, 5]], vectors[[3]]])
    assert snapshot.embeddings.tobytes() == expected.tobytes()
    assert snapshot.position.count == 7
    more = _unit(2, 4)
    store.add_many(["d", "a"], more, _none(2), _none(2), _none(2), _none(2))
    step = store.load(8, snapshot.position)
    assert not step.full
    assert step.names == ["a", "d"]
    assert step.embeddings.tobytes() == more[[1, 0]].tobytes()
    store.remove("c")
    assert store.load(8, step.position).full  # a removal: everything is read again


def test_a_gallery_survives_close_reopen_and_another_process(location: str) -> None:
    writer = textwrap.dedent(
        f"""
        import numpy as np
        from facekit.gallery import EmbedderInfo, Gallery
        info = EmbedderInfo.from_json({INFO.to_json()!r})
        rows = np.random.default_rng(5).standard_normal((3, 8)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        with Gallery({location!r}, embedder=info) as gallery:
            gallery.add("ann", rows, content_sha256=["x", "y", "z"])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", writer], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with Gallery(location) as gallery:
        assert gallery.counts() == {"ann": 3}
        assert gallery.embeddings("ann").tobytes() == _unit(3, 5).tobytes()
        gallery.remove("ann")
        gallery.add("bob", _unit(1, 6), content_sha256=["w"])
    with Gallery(location) as gallery:  # closed and reopened in this process
        assert gallery.counts() == {"bob": 1}
        assert gallery.has_content("w")
        assert not gallery.has_content("x")


def test_a_gallery_reads_no_vectors_to_open_list_count_identify_rename_or_remove(
    location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store searches itself, so a Gallery on it keeps names and counts only: the real
    store's reads are watched (spies that call the real methods) and no full read
    (``load``) nor any vector read other than of named identities happens."""
    vectors = _unit(12, 9)
    names = [f"p{i % 4}" for i in range(12)]
    with Gallery(location, embedder=INFO) as gallery:
        gallery.add_many(names, vectors)
    loads: list[object] = []
    reads: list[tuple[str, list[str]]] = []
    real_load, real_rows = MilvusStore.load, MilvusStore._rows

    def load(self: MilvusStore, *args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_load(self, *args, **kwargs)

    def rows(self: MilvusStore, filter_text: str, fields: list[str]) -> Any:
        reads.append((filter_text, list(fields)))
        return real_rows(self, filter_text, fields)

    monkeypatch.setattr(MilvusStore, "load", load)
    monkeypatch.setattr(MilvusStore, "_rows", rows)
    with Gallery(location) as gallery:
        assert (len(gallery), gallery.num_samples) == (4, 12)
        assert gallery.counts() == {"p0": 3, "p1": 3, "p2": 3, "p3": 3}
        found = gallery.search(vectors, threshold=0.99, top_k=2)
        assert [match.identity for match in found] == names
        assert all(match.similarity == pytest.approx(1.0, abs=1e-5) for match in found)
        gallery.rename("p1", "q1")
        assert gallery.identities() == ["p0", "p2", "p3", "q1"]
        assert gallery.search(vectors[1], threshold=0.99)[0].identity == "q1"
        assert gallery.remove("p2") == 3
        assert "p2" not in gallery
        assert (len(gallery), gallery.num_samples) == (3, 9)
        assert [m.identity for m in gallery.search(vectors[:4], threshold=0.99)] == [
            "p0", "q1", None, "p3"
        ]  # fmt: skip
        assert loads == []
        vector_reads = [(f, fields) for f, fields in reads if {"embedding", "*"} & set(fields)]
        assert vector_reads == [('identity == "p1"', ["*"])]  # the rename rewrites p1's rows
        assert gallery.embeddings("p3").tobytes() == vectors[3::4].tobytes()
        assert reads[-1] == ('identity == "p3"', ["embedding", "seq"])
        assert gallery.search(vectors[0], threshold=0.5, aggregate="mean")[0].identity == "p0"
    assert loads == []
    assert all(f.startswith("identity ") for f, fields in reads if "embedding" in fields)


@pytest.mark.slow
def test_samples_acknowledged_before_a_kill_9_survive(tmp_path: Path) -> None:
    path = tmp_path / "faces.db"
    writer = textwrap.dedent(
        f"""
        import numpy as np
        from facekit.gallery import EmbedderInfo
        from facekit.gallery.milvus_store import MilvusStore
        store = MilvusStore({_uri(path)!r})
        store.bind(EmbedderInfo.from_json({INFO.to_json()!r}))
        rows = np.random.default_rng(7).standard_normal((50, 8)).astype(np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        batch = 0
        while True:
            hashes = [f"{{batch}}-{{i}}" for i in range(50)]
            store.add_samples(f"p{{batch}}", rows, [None] * 50, hashes, [None] * 50, [None] * 50)
            print(batch, flush=True)
            batch += 1
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", writer], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        acknowledged = [int(process.stdout.readline()) for _ in range(4)]
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait(timeout=60)
    with Gallery(_uri(path)) as gallery:
        counts = gallery.counts()
        for batch in acknowledged:
            assert counts[f"p{batch}"] == 50
        assert gallery.known_content([f"{acknowledged[-1]}-{i}" for i in range(50)]) == {
            f"{acknowledged[-1]}-{i}" for i in range(50)
        }
        assert all(count == 50 for count in counts.values())  # no half batch


def test_a_second_process_gets_a_clear_error_naming_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "faces.db"
    holder = MilvusStore(_uri(path))
    holder.bind(INFO)
    opener = textwrap.dedent(
        f"""
        import logging
        logging.disable(logging.CRITICAL)
        from facekit.errors import GalleryError
        from facekit.gallery.milvus_store import MilvusStore
        try:
            MilvusStore({_uri(path)!r})
        except GalleryError as exc:
            print("GalleryError:", exc)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", opener], capture_output=True, text=True, timeout=120
    )
    holder.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert "GalleryError:" in done.stdout
    assert "open in another process" in done.stdout
    assert str(path / "LOCK") in done.stdout


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("milvus-lite://relative/faces.db", "ABSOLUTE"),
        ("milvus-lite:///tmp/faces.sqlite", "must end in .db"),
        ("milvus-lite:///tmp/faces.db?collection=1bad", "invalid collection name"),
        ("milvus-lite:///tmp/faces.db?colection=x", "unknown option"),
        ("milvus-lite:///tmp/faces.db?token=x", "unknown option"),
        ("milvus://:19530/faces", "no host"),
        ("milvus://host:19530", "no collection"),
        ("milvus+tls://host/", "no collection"),
        ("milvus://host:port/faces", "bad port"),
        ("milvus://host:0/faces", "bad port"),
        ("milvus://host:99999/faces", "bad port"),
        ("milvus://host/a/b", "invalid collection name"),
        ("milvus://host/faces?collection=other", "two different collections"),
        ("milvus://host/faces?db=bad-name", "invalid database name"),
        ("milvus://:pw@host/faces", "without a user name"),
        ("milvus://u:pw@host/faces?token=t", "credentials given twice"),
        ("milvus://[::1/faces", "malformed location"),
        ("milvus+ssl://host/faces", "not a Milvus location"),
        ("postgres://host/db", "not a Milvus location"),
    ],
)
def test_malformed_locations_are_config_errors(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_location(uri)


@pytest.mark.parametrize(
    "uri",
    [
        "milvus://ann:Pa55word@host:port/faces",
        "milvus://ann:Pa55word@host/faces?collection=x",
        "milvus://ann:Pa55word@host/faces?db=a-b",
        "milvus+tls://ann:Pa55word@/faces",
        "milvus://ann:Pa55word@host/faces?token=Pa55word",
        "milvus://ann:Pa55/word@host/faces",  # an unencoded / in the password
        "milvus://Pa55word@host:0/faces",  # an API key as the user
        "milvus://host:0/faces?token=Pa55word",
        "milvus-lite://ann:Pa55word@/tmp/faces.db",
        "ftp://ann:Pa55word@host/faces",
    ],
)
def test_errors_about_locations_never_show_the_password(uri: str) -> None:
    for opening in (parse_location, open_store):
        with pytest.raises(ConfigError) as caught:
            opening(uri)
        assert "Pa55" not in str(caught.value)
        assert "***" in str(caught.value)


def test_server_locations_take_credentials_from_the_uri_or_else_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FACEKIT_MILVUS_TOKEN", "user:secret")
    parsed = parse_location("milvus://db.example:19531/faces?db=prod")
    assert (parsed.uri, parsed.collection, parsed.token, parsed.db_name, parsed.lite) == (
        "http://db.example:19531", "faces", "user:secret", "prod", False
    )  # fmt: skip
    assert "secret" not in repr(parsed)
    assert "token='***'" in repr(parsed)
    given = parse_location("milvus://ann:p%40ss%3Aw0rd@h/faces")  # percent-encoded @ and :
    assert (given.uri, given.token) == ("http://h:19530", "ann:p@ss:w0rd")
    assert "w0rd" not in repr(given)
    assert parse_location("milvus://Zk3yAPI@h/faces").token == "Zk3yAPI"  # an API key
    assert parse_location("milvus://h/faces?token=t").token == "t"
    assert parse_location("milvus://h/?collection=faces").collection == "faces"
    tls = parse_location("milvus+tls://Milvus.Example:443/faces")
    assert (tls.uri, tls.collection, tls.token) == (
        "https://milvus.example:443",
        "faces",
        "user:secret",
    )
    assert parse_location("milvus+tls://[::1]/faces").uri == "https://[::1]:19530"
    monkeypatch.delenv("FACEKIT_MILVUS_TOKEN")
    assert parse_location("milvus://h/faces").token == ""
    assert redact("milvus://ann:pw@h/c?db=x&token=abc") == "milvus://ann:***@h/c?db=x&token=***"
    assert redact("milvus-lite:///tmp/x.db") == "milvus-lite:///tmp/x.db"


def test_bad_places_are_gallery_errors(tmp_path: Path) -> None:
    sqlite_file = tmp_path / "plain.db"
    sqlite_file.write_bytes(b"SQLite format 3\x00")
    with pytest.raises(GalleryError, match="is a file"):
        MilvusStore(_uri(sqlite_file))
    with pytest.raises(GalleryError, match="does not exist"):
        MilvusStore(_uri(tmp_path / "missing" / "faces.db"))
    with pytest.raises(GalleryError, match="no such gallery"):
        MilvusStore(_uri(tmp_path / "absent.db"), create=False)


def test_bad_inputs_are_gallery_errors(location: str, store: MilvusStore) -> None:
    if location.startswith("milvus://"):
        with pytest.raises(GalleryError, match="no such gallery"):
            MilvusStore(location.rpartition("/")[0] + "/absent", create=False)
    unbound = MilvusStore(location, collection="unbound")
    with pytest.raises(GalleryError, match="not bound"):
        unbound.add_samples("ann", _unit(1), [None], [None], [None], [None])
    unbound.close()
    with pytest.raises(GalleryError, match=r"must be \(n, 8\)"):
        store.add_samples("ann", _unit(1, dim=4), [None], [None], [None], [None])
    with pytest.raises(GalleryError, match="unit vectors"):
        store.add_samples("ann", 2 * _unit(1), [None], [None], [None], [None])
    nan = _unit(1)
    nan[0, 0] = np.nan
    with pytest.raises(GalleryError, match="finite"):
        store.add_samples("ann", nan, [None], [None], [None], [None])
    with pytest.raises(GalleryError, match="2 entries for 1"):
        store.add_samples("ann", _unit(1), [None, None], [None], [None], [None])
    with pytest.raises(GalleryError, match="control characters"):
        store.add_samples("a\x01b", _unit(1), [None], [None], [None], [None])
    with pytest.raises(GalleryError, match="invalid identity name"):
        store.add_samples(" ", _unit(1), [None], [None], [None], [None])
    with pytest.raises(GalleryError, match="longer than"):
        store.add_samples("x" * 2000, _unit(1), [None], [None], [None], [None])
    store.add_samples("ann", _unit(1), [None], [None], [None], [None])
    with pytest.raises(GalleryError, match=r"queries must be \(Q, 8\)"):
        store.search_names(_unit(1, dim=5))
    with pytest.raises(GalleryError, match="must be numbers"):
        store.search_names([["a"] * 8])  # type: ignore[arg-type]
    with pytest.raises(GalleryError, match="top_k"):
        store.search_names(_unit(1), top_k=0)
    with pytest.raises(GalleryError, match="aggregate"):
        store.search_names(_unit(1), aggregate="median")  # type: ignore[arg-type]
    assert store.identities() == [("ann", 1)]  # nothing of the bad calls was stored
    store.close()
    with pytest.raises(GalleryError, match="closed"):
        store.search_names(_unit(1))


@pytest.fixture(scope="module")
def real(
    models_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, np.ndarray, list[str]]:
    """12 ORL subjects x 3 photos enrolled through FaceRecognizer straight into Milvus Lite
    (a re-run adds nothing), and the embeddings of 2 held-back photos per subject."""
    root = tmp_path_factory.mktemp("milvus-orl")
    folder = orl_folder(data_dir, root / "people", SUBJECTS, ENROLLED)
    uri = _uri(root / "orl.db")
    recognizer = orl_recognizer(models_dir, uri)
    report = recognizer.enroll(folder, progress=False)
    assert len(report.added) == len(SUBJECTS) * len(ENROLLED)
    assert not report.failed
    assert not recognizer.enroll(folder, progress=False).added  # resumed: nothing new
    assert len(recognizer.gallery) == len(SUBJECTS)
    queries = np.stack(
        [
            recognizer.embed(data_dir / f"orl_faces/s{subject}/{image}.png")
            for subject in SUBJECTS
            for image in HELD_BACK
        ]
    )
    truth = [f"s{subject}" for subject in SUBJECTS for _ in HELD_BACK]
    recognizer.gallery.close()
    return uri, queries, truth


def test_server_side_search_equals_exact_search_on_real_embeddings(
    real: tuple[str, np.ndarray, list[str]], report: Callable[[str], None]
) -> None:
    uri, queries, truth = real
    store = MilvusStore(uri, create=False)
    snapshot = store.load(store.dim)
    exact = ExactIndex(snapshot.embeddings, snapshot.owners, len(snapshot.names))
    milvus = store.index_factory()(snapshot.embeddings, snapshot.owners, len(snapshot.names))
    assert isinstance(milvus, MilvusIndex)
    assert milvus.n_identities == len(SUBJECTS)
    for aggregate in ("max", "mean"):
        want = exact.search(queries, 3, aggregate)
        got = milvus.search(queries, 3, aggregate)
        assert got.identities[:, 0].tolist() == want.identities[:, 0].tolist()
        np.testing.assert_allclose(got.similarities, want.similarities, atol=1e-5)
        np.testing.assert_allclose(got.runner_up, want.runner_up, atol=1e-5)
    store.close()  # closed: what was read last is searched exactly
    assert (
        milvus.search(queries, 2).identities.tolist()
        == exact.search(queries, 2).identities.tolist()
    )
    with Gallery(uri) as gallery:  # Gallery searches through the store's own index
        found = gallery.search(queries, threshold=0.3)
    hits = sum(match.identity == name for match, name in zip(found, truth, strict=True))
    report(f"Milvus Lite server-side search, ORL 12 subjects: {hits}/{len(truth)} top-1 correct")
    assert hits >= 0.8 * len(truth)


def test_real_photos_migrated_to_a_server_are_identified_as_exact_search_does(
    real: tuple[str, np.ndarray, list[str]], milvus_server: str, report: Callable[[str], None]
) -> None:
    uri, queries, truth = real
    target = server_uri(milvus_server)
    assert main(["gallery", "migrate", uri, target]) == 0
    store = MilvusStore(uri, create=False)
    snapshot = store.load(store.dim)
    store.close()
    want = ExactIndex(snapshot.embeddings, snapshot.owners, len(snapshot.names)).search(queries)
    with Gallery(target) as gallery:
        assert gallery.counts() == {name: len(ENROLLED) for name in snapshot.names}
        found = gallery.search(queries, threshold=-1.0)
    assert [match.identity for match in found] == [snapshot.names[i] for i in want.identities[:, 0]]
    np.testing.assert_allclose([m.similarity for m in found], want.similarities[:, 0], atol=1e-5)
    hits = sum(match.identity == name for match, name in zip(found, truth, strict=True))
    report(f"milvus:// server (milvus-lite over TCP), ORL 12 subjects: {hits}/{len(truth)} top-1")
    assert hits >= 0.8 * len(truth)


def test_migrate_sqlite_to_milvus_and_back_keeps_every_sample(
    real: tuple[str, np.ndarray, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri, _, _ = real
    sqlite = str(tmp_path / "copy.facekit")
    assert main(["gallery", "migrate", uri, sqlite]) == 0
    back = _uri(tmp_path / "back.db")
    assert main(["gallery", "migrate", sqlite, back]) == 0
    assert main(["gallery", "migrate", sqlite, back]) == 0  # resumed: nothing to copy
    assert "migrated 0 samples" in capsys.readouterr().out
    with Gallery(uri) as first, Gallery(sqlite) as middle, Gallery(back) as last:
        assert first.embedder == middle.embedder == last.embedder
        assert first.counts() == middle.counts() == last.counts()
        for name in first.identities():
            assert first.embeddings(name).tobytes() == last.embeddings(name).tobytes()
            assert first.embeddings(name).tobytes() == middle.embeddings(name).tobytes()
            strip = [(r.source, r.content_sha256, r.box, r.score) for r in first.samples(name)]
            assert strip == [
                (r.source, r.content_sha256, r.box, r.score) for r in last.samples(name)
            ]
    other = str(tmp_path / "other.facekit")
    with Gallery(other, embedder=INFO) as gallery:
        gallery.add("x", _unit(1))
    assert main(["gallery", "migrate", sqlite, other]) == 1
    assert "another embedder" in capsys.readouterr().err
    assert main(["gallery", "migrate", sqlite, sqlite]) == 1
    assert main(["gallery", "list", back]) == 0
    assert "s1\t3" in capsys.readouterr().out


def test_migrate_resumes_samples_without_content_hashes(tmp_path: Path) -> None:
    source = str(tmp_path / "plain.facekit")
    vectors = _unit(3, 8)
    with Gallery(source, embedder=INFO) as gallery:
        gallery.add("ann", vectors, sources=["a", "b", "c"])  # no content hashes
    target = _uri(tmp_path / "copy.db")
    with Gallery(target, embedder=INFO) as gallery:  # an interrupted run copied two
        gallery.add("ann", vectors[:2], sources=["a", "b"])
    assert main(["gallery", "migrate", source, target]) == 0
    assert main(["gallery", "migrate", source, target]) == 0
    with Gallery(target) as gallery:
        assert gallery.counts() == {"ann": 3}
        assert gallery.embeddings("ann").tobytes() == vectors.tobytes()
        assert [r.source for r in gallery.samples("ann")] == ["a", "b", "c"]


@pytest.mark.slow
def test_the_milvus_example_runs(models_dir: Path, data_dir: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve().parents[1] / "examples/milvus_gallery.py"),
            str(data_dir / "orl_faces"),
            "--model-dir",
            str(models_dir),
            "--people",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "27 added, 0 skipped" in done.stdout
    assert "3 identities, 27 samples" in done.stdout
    assert "rank-1 correct: 3/3" in done.stdout
