"""The gallery file under attack and under concurrency: creation races, the same content
enrolled by two processes, a long-lived reader and another writer, read-only files and
folders, crafted files, old (version 1) files, and the memory search and opening take."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.errors import GalleryError
from facekit.gallery import SCHEMA_VERSION, EmbedderInfo, Gallery
from facekit.gallery.index import BLOCK_BYTES
from facekit.gallery.store import Position, SampleRecord, Snapshot, SQLiteStore

INFO = EmbedderInfo("m", "a" * 64, 4, "arcface112", True)
EYE = np.eye(4, dtype=np.float32)

# The schema facekit 0.1 wrote (version 1), verbatim: its files must keep opening.
V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE identities (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE samples (
    id INTEGER PRIMARY KEY,
    identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT, content_sha256 TEXT, box TEXT, score REAL, added REAL NOT NULL);
CREATE INDEX samples_identity ON samples(identity_id);
CREATE INDEX samples_content ON samples(content_sha256);
"""


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def run_children(script: str, *argv: list[str], timeout: float = 120) -> list[str]:
    """Run ``script`` in one Python process per argument list, all at once; their stdout."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(script), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in argv
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=timeout)
        assert child.returncode == 0, err
        outputs.append(out)
    return outputs


# --- creation race (item 4) ---------------------------------------------------------------

_OPEN_AT_BARRIER = """
import json, sys, time
from pathlib import Path
from facekit.gallery import EmbedderInfo, Gallery
folder, trials = Path(sys.argv[1]), int(sys.argv[2])
info = EmbedderInfo("m", "a" * 64, 4, "arcface112", True)
results = []
for trial in range(trials):
    while not (folder / f"go{trial}").exists():
        time.sleep(0.0002)
    try:
        with Gallery(folder / f"g{trial}.facekit", embedder=info) as gallery:
            results.append(f"ok {len(gallery)}")
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}")
    (folder / f"done{trial}.{sys.argv[3]}").touch()
print(json.dumps(results))
"""


def test_processes_creating_the_same_gallery_at_once(tmp_path: Path) -> None:
    trials, processes = 24, 4
    script = _OPEN_AT_BARRIER
    children = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path), str(trials), str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    try:
        time.sleep(1.0)  # let them import
        for trial in range(trials):
            (tmp_path / f"go{trial}").touch()
            deadline = time.monotonic() + 60
            while len(list(tmp_path.glob(f"done{trial}.*"))) < processes:
                assert time.monotonic() < deadline, "a process hangs"
                time.sleep(0.005)
    finally:
        outputs = [child.communicate(timeout=60) for child in children]
    results = [r for out, err in outputs for r in json.loads(out or "null") or [err]]
    assert results == ["ok 0"] * (trials * processes)
    for trial in range(trials):  # each is a valid, empty gallery, and no temporary is left
        with Gallery(tmp_path / f"g{trial}.facekit", create=False) as gallery:
            assert len(gallery) == 0
    assert not list(tmp_path.glob(".*"))


def test_creating_where_hard_links_are_not_supported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(source: object, target: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with Gallery(tmp_path / "g.facekit", embedder=INFO) as gallery:
        assert gallery.add("a", EYE[0]) == 1
    with Gallery(tmp_path / "g.facekit", create=False) as gallery:
        assert gallery.counts() == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.facekit"]


# --- the same content from two processes (item 5) ----------------------------------------


@pytest.fixture(scope="module")
def orl_embeddings(models_dir: Path, data_dir: Path) -> tuple[np.ndarray, list[str], list[str]]:
    """Real MobileFaceNet embeddings of 40 ORL photos, with their paths and sha256."""
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options={"padding": 0.5, "input_size": (320, 320)},
    )
    paths = [data_dir / f"orl_faces/s{s}/{i}.png" for s in range(1, 9) for i in range(1, 6)]
    found = fr.embed_each(paths)
    assert all(isinstance(f, np.ndarray) for f in found)
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]
    info = EmbedderInfo.of(fr.embedder)
    vectors = np.stack([f for f in found if isinstance(f, np.ndarray)])
    return vectors, [str(p) for p in paths], [*digests, info.to_json()]


_ADD_ALL = """
import json, sys, time
from pathlib import Path
import numpy as np
from facekit.gallery import EmbedderInfo, Gallery
folder = Path(sys.argv[1])
data = np.load(folder / "embeddings.npz")
meta = json.loads((folder / "meta.json").read_text())
info = EmbedderInfo.from_json(meta["info"])
while not (folder / "go").exists():
    time.sleep(0.0005)
added = 0
with Gallery(folder / "g.facekit", embedder=info) as gallery:
    for i, vector in enumerate(data["vectors"]):
        identity = Path(meta["paths"][i]).parent.name
        count = gallery.add(identity, vector, embedder=info, sources=[meta["paths"][i]],
                            content_sha256=[meta["digests"][i]])
        added += count if isinstance(count, int) else 1
print(added)
"""


def test_two_processes_adding_the_same_photos_store_each_once(
    orl_embeddings: tuple[np.ndarray, list[str], list[str]], tmp_path: Path
) -> None:
    vectors, paths, meta = orl_embeddings
    digests, info = meta[:-1], meta[-1]
    np.savez(tmp_path / "embeddings.npz", vectors=vectors)
    (tmp_path / "meta.json").write_text(
        json.dumps({"paths": paths, "digests": digests, "info": info})
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _ADD_ALL, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.0)
    (tmp_path / "go").touch()
    outputs = [child.communicate(timeout=120) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    with Gallery(tmp_path / "g.facekit") as gallery:
        assert gallery.num_samples == len(paths)
        assert gallery.counts() == {f"s{s}": 5 for s in range(1, 9)}
        stored = [r.content_sha256 for name in gallery.identities() for r in gallery.samples(name)]
        assert sorted(stored) == sorted(digests)
        for name in gallery.identities():  # each vector is the photo's own
            rows = [paths.index(r.source) for r in gallery.samples(name) if r.source]
            assert np.array_equal(gallery.embeddings(name), vectors[rows])
    assert sum(int(out) for out, _ in outputs) == len(paths)  # add() counted what it added


def test_identical_content_in_one_call_or_again_is_added_once(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.facekit", embedder=INFO) as gallery:
        assert gallery.add("a", EYE[:3], content_sha256=["x", "y", "x"]) == 2
        assert gallery.add("b", EYE[3], content_sha256=["y"]) == 0
        assert gallery.add("b", EYE[3], content_sha256=[None]) == 1
        assert gallery.add("b", EYE[3]) == 1  # no hash: always added
        assert gallery.counts() == {"a": 2, "b": 2}
        assert [r.content_sha256 for r in gallery.samples("a")] == ["x", "y"]
        assert "c" not in gallery.identities()
        assert gallery.add("c", EYE[:1], content_sha256=["x"]) == 0
        assert "c" not in gallery.identities()
        assert "c" not in gallery.counts()


# --- a long-lived reader and another writer (item 8) -------------------------------------

_WRITER = """
import sys
import numpy as np
from facekit.gallery import Gallery
with Gallery(sys.argv[1]) as gallery:
    action = sys.argv[2]
    if action == "add":
        gallery.add(sys.argv[3], np.eye(4, dtype=np.float32)[int(sys.argv[4])])
    elif action == "rename":
        gallery.rename(sys.argv[3], sys.argv[4])
    else:
        gallery.remove(sys.argv[3])
"""


def other_process(path: Path, *args: str) -> None:
    run_children(_WRITER, [str(path), *args])


def test_a_gallery_kept_open_sees_what_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "g.facekit"
    with Gallery(path, embedder=INFO) as reader:
        reader.add("bob", EYE[0])
        assert reader.search(EYE[1], threshold=0.5)[0].identity is None
        other_process(path, "add", "alice", "1")
        assert reader.search(EYE[1], threshold=0.5)[0].identity == "alice"
        assert reader.identities() == ["alice", "bob"]
        assert "alice" in reader
        with pytest.raises(GalleryError, match="already enrolled"):
            reader.rename("bob", "alice")
        other_process(path, "add", "carol", "2")
        with pytest.raises(GalleryError, match="already enrolled"):
            reader.rename("bob", "carol")  # taken since it last looked
        reader.rename("bob", "robert")
        other_process(path, "rename", "alice", "alicia")
        assert [f.identity for f in reader.search(EYE[:3], threshold=0.5)] == [
            "robert",
            "alicia",
            "carol",
        ]
        other_process(path, "remove", "carol")
        assert reader.search(EYE[2], threshold=0.5)[0].identity is None
        assert reader.counts() == {"alicia": 1, "robert": 1}
        assert reader.num_samples == 2


def test_reading_only_what_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 400, 4)
    names = [f"p{int(i):03d}" for i in rng.integers(0, 150, size=400)]
    path = tmp_path / "g.facekit"
    long_lived, writer = Gallery(path, embedder=INFO), Gallery(path)
    loads: list[tuple[bool, int]] = []
    load = SQLiteStore.load

    def counting(store: SQLiteStore, dim: int, since: object = None) -> object:
        snapshot = load(store, dim, since)  # type: ignore[arg-type]
        loads.append((snapshot.full, snapshot.embeddings.shape[0]))
        return snapshot

    monkeypatch.setattr(SQLiteStore, "load", counting)
    for start in range(0, 400, 40):  # both write, in an order that interleaves identities
        for i in range(start, start + 40):
            (long_lived if i % 3 else writer).add(names[i], vectors[i])
        loads.clear()
        found = long_lived.search(vectors[start : start + 40], threshold=0.99)
        assert [f.identity for f in found] == names[start : start + 40]
        assert loads == [(False, 40)]  # only the 40 new samples were read
    with Gallery(path) as fresh:
        for name in fresh.identities():
            assert np.array_equal(long_lived.embeddings(name), fresh.embeddings(name))
            expected = vectors[[i for i, n in enumerate(names) if n == name]]
            assert np.array_equal(fresh.embeddings(name), expected)
    long_lived.close()
    writer.close()


# --- read-only files and folders (item 6) ------------------------------------------------

_READ_ONLY = """
import json, sys
import numpy as np
from facekit.errors import GalleryError
from facekit.gallery import Gallery
eye = np.eye(4, dtype=np.float32)
results = {}
def attempt(name, action):
    try:
        results[name] = ["ok", action()]
    except GalleryError as exc:
        results[name] = ["GalleryError", str(exc)]
    except Exception as exc:
        results[name] = [type(exc).__name__, str(exc)]
gallery = Gallery(sys.argv[1])
attempt("read", lambda: gallery.counts())
attempt("add", lambda: gallery.add("new", eye[1]))
attempt("rename", lambda: gallery.rename("a", "b"))
attempt("remove", lambda: gallery.remove("a"))
attempt("create", lambda: len(Gallery(sys.argv[2])))
print(json.dumps(results))
"""


def _without_root_override() -> None:
    """Run as a root that obeys file permissions (drops CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the bounding set, so the exec'd child lacks them)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def read_only_attempts(gallery: Path, new: Path) -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", _READ_ONLY, str(gallery), str(new)],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_without_root_override if os.geteuid() == 0 else None,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_read_only_file_and_folder(tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    path = folder / "g.facekit"
    with Gallery(path, embedder=INFO) as gallery:
        gallery.add("a", EYE[0])
    before = path.read_bytes()
    try:
        path.chmod(0o444)  # read-only file in a writable folder
        results = read_only_attempts(path, folder / "new.facekit")
        assert results["read"] == ["ok", {"a": 1}]
        for action in ("add", "rename", "remove"):
            assert results[action][0] == "GalleryError", results[action]
            assert "gallery is read-only" in results[action][1]
            assert str(path) in results[action][1]
        assert results["create"] == ["ok", 0]
        path.chmod(0o644)
        folder.chmod(0o555)  # writable file in a read-only folder (no journal possible)
        results = read_only_attempts(path, folder / "other.facekit")
        assert results["read"] == ["ok", {"a": 1}]
        for action in ("add", "rename", "remove", "create"):
            assert results[action][0] == "GalleryError", results[action]
            assert "read-only" in results[action][1]
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["g.facekit", "new.facekit"]


# --- crafted files (items 6 and 7) -------------------------------------------------------


def small_gallery(path: Path, dim: int = 4) -> Path:
    info = EmbedderInfo("m", "a" * 64, dim, "arcface112", True)
    with Gallery(path, embedder=info) as gallery:
        gallery.add("a", np.eye(dim, dtype=np.float32)[:2], sources=["1.jpg", "2.jpg"])
        gallery.add("b", np.eye(dim, dtype=np.float32)[2], boxes=[(1, 2, 3, 4)], scores=[0.9])
    return path


def crafted(tmp_path: Path, name: str, *sql: str, dim: int = 4) -> Path:
    path = small_gallery(tmp_path / f"{name}.facekit", dim)
    with sqlite3.connect(path) as db:
        for statement in sql:
            db.execute(statement)
    db.close()
    return path


def test_stored_embeddings_are_checked_on_load(tmp_path: Path) -> None:
    # two vectors of 128 floats stored as 127 + 129: the concatenation has the right size
    path = small_gallery(tmp_path / "misaligned.facekit", dim=128)
    with sqlite3.connect(path) as db:
        blobs = b"".join(row[0] for row in db.execute("SELECT embedding FROM samples LIMIT 2"))
        db.execute("UPDATE samples SET embedding = ? WHERE id = 1", (blobs[:508],))
        db.execute("UPDATE samples SET embedding = ? WHERE id = 2", (blobs[508:],))
    db.close()
    with pytest.raises(GalleryError, match=r"corrupt embedding in sample 1.*512 bytes.*508"):
        Gallery(path)
    nan = np.array([np.nan, 0, 0, 0], "<f4").tobytes()
    cases = {
        "nan": (f"UPDATE samples SET embedding = x'{nan.hex()}' WHERE id = 2", "NaN"),
        "long": ("UPDATE samples SET embedding = zeroblob(17) WHERE id = 3", "sample 3"),
        "non-unit": (
            f"UPDATE samples SET embedding = x'{np.full(4, 0.6, '<f4').tobytes().hex()}'",
            "not unit vectors",
        ),
        "text": ("UPDATE samples SET embedding = 'abcdefghijklmnop'", "found str"),
    }
    for name, (sql, message) in cases.items():
        with pytest.raises(GalleryError, match=message):
            Gallery(crafted(tmp_path, name, sql))


@pytest.mark.parametrize(
    ("name", "sql", "message"),
    [
        (
            "trigger",
            "CREATE TRIGGER wipe AFTER INSERT ON samples BEGIN DELETE FROM samples; END",
            "unexpected trigger 'wipe'",
        ),
        ("view", "CREATE VIEW everyone AS SELECT name FROM identities", "unexpected view"),
        ("index", "CREATE INDEX extra ON samples(score)", "unexpected index 'extra'"),
        ("table", "CREATE TABLE notes (x)", "not a facekit gallery"),
        ("no-index", "DROP INDEX samples_identity", "lacks samples_identity"),
        ("superscript", "UPDATE meta SET value = '²' WHERE key = 'schema_version'", "'²'"),
        ("no-version", "DELETE FROM meta WHERE key = 'schema_version'", "no valid schema"),
        ("binding", "UPDATE meta SET value = '[1, 2]' WHERE key = 'embedder'", "embedder"),
        ("binding-json", "UPDATE meta SET value = '{' WHERE key = 'embedder'", "embedder"),
        ("name", "UPDATE identities SET name = x'ff00' WHERE name = 'a'", "identity name"),
    ],
)
def test_crafted_gallery_files_are_refused(
    tmp_path: Path, name: str, sql: str, message: str
) -> None:
    path = crafted(tmp_path, name, sql)
    before = path.read_bytes()
    with pytest.raises(GalleryError, match=message) as raised:
        Gallery(path)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == before  # nothing written, no trigger fired


def read_everything(path: Path) -> None:
    with Gallery(path) as gallery:
        for identity in gallery.identities():
            gallery.samples(identity)
        gallery.counts()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("box", "'not json'", "malformed gallery file"),
        ("box", "'[1, 2]'", "malformed box"),
        ("box", "'[1, 2, 3, \"x\"]'", "malformed box"),
        ("score", "'high'", "malformed score"),
        ("added", "'yesterday'", "malformed time added"),
        ("source", "x'00ff'", "malformed source"),
        ("content_sha256", "x'0102' WHERE id = 1", "malformed content hash"),
    ],
)
def test_wrong_column_types_give_gallery_errors(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    path = crafted(tmp_path, column, f"UPDATE samples SET {column} = {value}")
    with pytest.raises(GalleryError, match=message):
        read_everything(path)


def test_corrupt_pages(tmp_path: Path) -> None:
    path = tmp_path / "g.facekit"
    rng = np.random.default_rng(2)
    with Gallery(path, embedder=INFO) as gallery:
        for i in range(300):
            gallery.add(f"person {i:03d}", unit(rng, 1, 4), sources=[f"{'long/' * 40}{i}.jpg"])
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 20 * page
    for start in range(5 * page, len(data), 3 * page):  # garbage in every third page
        data[start + 8 : start + page] = rng.integers(0, 256, page - 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=r"corrupt gallery file|malformed") as raised:
        read_everything(path)
    assert str(path) in str(raised.value)


def test_empty_files_and_create_false_never_write(tmp_path: Path) -> None:
    empty = tmp_path / "empty.facekit"
    empty.touch()
    for create in (True, False):
        with pytest.raises(GalleryError, match=r"empty \(0 bytes\).*delete it"):
            Gallery(empty, create=create)
        assert empty.stat().st_size == 0
    unbound = tmp_path / "unbound.facekit"
    Gallery(unbound).close()
    path = small_gallery(tmp_path / "g.facekit")
    for existing in (unbound, path):
        before = existing.read_bytes(), existing.stat().st_mtime_ns
        with Gallery(existing, create=False, embedder=INFO) as gallery:
            gallery.identities()
            store = gallery._store
            assert isinstance(store, SQLiteStore)
            assert store._db.execute("PRAGMA trusted_schema").fetchone() == (0,)
        assert (existing.read_bytes(), existing.stat().st_mtime_ns) == before
    with pytest.raises(GalleryError, match="no such gallery"):
        Gallery(tmp_path / "missing.facekit", create=False)
    assert not (tmp_path / "missing.facekit").exists()


# --- identity names and sources (item 2, the store's part) -------------------------------


def test_invalid_identity_names_and_undecodable_sources(tmp_path: Path) -> None:
    undecodable = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name on a UTF-8 system
    with Gallery(tmp_path / "g.facekit", embedder=INFO) as gallery:
        for name in ("", " \t\n", undecodable, "\ud800"):
            with pytest.raises(GalleryError, match="invalid identity name"):
                gallery.add(name, EYE[0])
        assert gallery.add("a", EYE[:2], sources=[f"{undecodable}/1.jpg", "x\ud800y"]) == 2
        with pytest.raises(GalleryError, match="invalid identity name"):
            gallery.rename("a", "   ")
        assert [r.source for r in gallery.samples("a")] == ["caf\\xe9/1.jpg", "x\\ud800y"]
        assert gallery.identities() == ["a"]


# --- version 1 files (item 5) -------------------------------------------------------------


def v1_gallery(path: Path) -> Path:
    """A gallery as facekit 0.1 wrote it, with content stored twice (as it allowed)."""
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
        db.execute(
            "INSERT INTO meta VALUES ('schema_version', '1'), ('created', '0'), ('embedder', ?)",
            (INFO.to_json(),),
        )
        db.execute("INSERT INTO identities VALUES (1, 'a', 0), (2, 'b', 0)")
        rows = [(1, 0, "a1.jpg", "h1"), (1, 1, "a2.jpg", "h2"), (2, 2, "b1.jpg", "h1")]
        rows += [(2, 3, "b2.jpg", "h1"), (1, 1, "a2-again.jpg", "h2")]
        db.executemany(
            "INSERT INTO samples (identity_id, embedding, source, content_sha256, added) "
            "VALUES (?, ?, ?, ?, 0)",
            [(who, EYE[row].tobytes(), source, digest) for who, row, source, digest in rows],
        )
    db.close()
    return path


def test_version_1_files_open_and_are_upgraded_without_losing_samples(tmp_path: Path) -> None:
    path = v1_gallery(tmp_path / "v1.facekit")
    before = path.read_bytes()
    with Gallery(path, create=False) as gallery:  # reading does not upgrade (nor write)
        assert gallery.counts() == {"a": 3, "b": 2}
        assert gallery.search(EYE[3], threshold=0.5)[0].identity == "b"
    assert path.read_bytes() == before
    with Gallery(path) as gallery:
        assert gallery.add("c", EYE[:1], content_sha256=["h1"]) == 0  # the first write upgrades
        assert gallery.counts() == {"a": 3, "b": 2}  # every sample kept
        assert [r.content_sha256 for r in gallery.samples("a")] == ["h1", "h2", None]
        assert [r.content_sha256 for r in gallery.samples("b")] == [None, None]
        assert [r.source for r in gallery.samples("b")] == ["b1.jpg", "b2.jpg"]
        assert gallery.add("c", EYE[3], content_sha256=["h3"]) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        with pytest.raises(sqlite3.IntegrityError):  # the hash is unique now
            db.execute("UPDATE samples SET content_sha256 = 'h1' WHERE content_sha256 = 'h2'")
    db.close()


# --- memory (item 9) ----------------------------------------------------------------------


def big_gallery(path: Path, identities: int, dim: int) -> np.ndarray:
    """A gallery of one sample per identity, written in bulk; returns the vectors."""
    vectors = unit(np.random.default_rng(3), identities, dim)
    info = EmbedderInfo("m", "a" * 64, dim, "arcface112", True)
    with Gallery(path, embedder=info) as gallery:
        gallery.add("id000000", vectors[0])
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO identities (id, name, created) VALUES (?, ?, 0)",
            ((i + 1, f"id{i:06d}") for i in range(1, identities)),
        )
        db.executemany(
            "INSERT INTO samples (identity_id, embedding, added) VALUES (?, ?, 0)",
            ((i + 1, vectors[i].tobytes()) for i in range(1, identities)),
        )
    db.close()
    return vectors


def peak_above(action: Callable[[], object]) -> tuple[int, object]:
    """Bytes ``action`` allocates at its peak beyond what was allocated before, and its
    result."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        return tracemalloc.get_traced_memory()[1] - before, result
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_of_opening_and_searching_100k_identities(
    tmp_path: Path, report: Callable[[str], None]
) -> None:
    identities, dim = 100_000, 128
    vectors = big_gallery(tmp_path / "big.facekit", identities, dim)
    embedding_bytes = vectors.nbytes
    opened, gallery = peak_above(lambda: Gallery(tmp_path / "big.facekit", index="exact"))
    assert isinstance(gallery, Gallery)
    # the embeddings once, plus names (about 60 bytes each) and owner/start indices
    assert opened < 1.1 * embedding_bytes + 100 * identities
    queries = vectors[:1000] + 0.01 * unit(np.random.default_rng(4), 1000, dim)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    searched, found = peak_above(lambda: gallery.search(queries, threshold=0.5, top_k=3))
    assert isinstance(found, list)
    assert [f.identity for f in found] == [f"id{i:06d}" for i in range(1000)]
    results = 1000 * 2000  # the 1,000 Identification objects and their candidates
    assert searched < BLOCK_BYTES + results
    gallery.search(queries[:1], threshold=0.5, aggregate="mean")  # templates, computed once
    # 300 queries already fill the blocks (about 110 queries each with "mean")
    mean, _ = peak_above(lambda: gallery.search(queries[:300], threshold=0.5, aggregate="mean"))
    assert mean < BLOCK_BYTES + results
    report(
        f"gallery memory, 100k identities x 128-d ({embedding_bytes / 2**20:.0f} MiB): open "
        f"+{opened / 2**20:.0f} MiB, 1,000 queries +{searched / 2**20:.0f} MiB (max), "
        f"+{mean / 2**20:.0f} MiB (mean)"
    )
    gallery.close()


# --- bulk writes (issue 13) ----------------------------------------------------------------


def _columns(n: int) -> dict[str, Any]:
    """Metadata columns for ``n`` samples; content hashes repeat (17 distinct)."""
    return {
        "sources": [f"photos/{i}.jpg" if i % 4 else None for i in range(n)],
        "content_sha256": [
            hashlib.sha256(bytes([i % 17])).hexdigest() if i % 5 else None for i in range(n)
        ],
        "boxes": [(1.0, 2.0, 30.0, 40.0 + i) if i % 3 else None for i in range(n)],
        "scores": [0.5 + i / (4 * n) if i % 2 else None for i in range(n)],
    }


def _without_time(records: list[SampleRecord]) -> list[SampleRecord]:
    return [dataclasses.replace(record, added=0.0) for record in records]


def test_add_many_equals_adding_one_at_a_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    n = 60
    vectors = unit(rng, n, 4)
    names = [f"p{int(i)}" for i in rng.integers(0, 12, size=n)]
    columns = _columns(n)
    known = columns["content_sha256"][1]
    with (
        Gallery(tmp_path / "one.facekit", embedder=INFO) as one,
        Gallery(tmp_path / "bulk.facekit", embedder=INFO) as bulk,
    ):
        for gallery in (one, bulk):
            gallery.add("p0", EYE[0], content_sha256=[known])  # this content is known already
        single = 0
        for i in range(n):
            row: dict[str, Any] = {key: [column[i]] for key, column in columns.items()}
            single += one.add(names[i], vectors[i], **row)
        assert bulk.add_many(names, vectors, **columns) == single
        assert single < n  # the repeated and the known hashes were skipped
        assert bulk.identities() == one.identities()
        assert bulk.counts() == one.counts()
        for name in one.identities():
            assert np.array_equal(bulk.embeddings(name), one.embeddings(name))
            assert _without_time(bulk.samples(name)) == _without_time(one.samples(name))
        assert bulk.known_content([known, "f" * 64]) == {known}
        unhashed = sum(digest is None for digest in columns["content_sha256"])
        assert bulk.add_many(names, vectors, **columns) == unhashed  # a re-run adds no content


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"identities": ["a", "b"]}, "2 identities for 3 embeddings"),
        ({"identities": ["a", " ", "b"]}, "invalid identity name"),
        ({"identities": ["a", 7, "b"]}, "invalid identity name"),
        ({"embeddings": 2 * EYE[:3]}, "L2-normalised"),
        ({"embeddings": np.full((3, 4), np.nan, np.float32)}, "finite"),
        ({"embeddings": EYE[:3, :3]}, "must be (n, 4)"),
        ({"sources": ["x"]}, "sources has 1 entries for 3 embeddings"),
        ({"scores": [1.0] * 4}, "scores has 4 entries for 3 embeddings"),
        ({"embedder": EmbedderInfo("other", "b" * 64, 4, "arcface112", True)}, "another"),
    ],
)
def test_add_many_refuses_bad_input_and_adds_nothing(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    arguments: dict[str, Any] = {"identities": ["a", "b", "a"], "embeddings": EYE[:3]}
    with Gallery(tmp_path / "g.facekit", embedder=INFO) as gallery:
        gallery.add("z", EYE[3])
        with pytest.raises(GalleryError, match=re.escape(message)):
            gallery.add_many(**{**arguments, **change})
        assert gallery.counts() == {"z": 1}


@pytest.mark.slow
def test_add_many_of_100k_identities_in_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, dim = 100_000, 128
    vectors = unit(np.random.default_rng(5), count + 1, dim)
    names = [f"id{i:06d}" for i in range(count)]
    info = EmbedderInfo("m", "a" * 64, dim, "arcface112", True)
    with Gallery(tmp_path / "big.facekit", embedder=info, index="exact") as gallery:
        commits: list[str] = []
        store = gallery._store
        assert isinstance(store, SQLiteStore)
        store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
        assert gallery.add_many(names, vectors[:count]) == count
        assert commits == ["COMMIT"]
        assert len(gallery) == count
        found = gallery.search(vectors[[0, 4_321, count - 1]], threshold=0.99)
        assert [f.identity for f in found] == [names[0], names[4_321], names[-1]]
        # one more sample: the next search reads only that row, not the 100k again
        loads: list[tuple[bool, int]] = []
        load = SQLiteStore.load

        def counting(store: SQLiteStore, dim: int, since: Position | None = None) -> Snapshot:
            snapshot = load(store, dim, since)
            loads.append((snapshot.full, snapshot.embeddings.shape[0]))
            return snapshot

        monkeypatch.setattr(SQLiteStore, "load", counting)
        assert gallery.add("newcomer", vectors[count]) == 1
        assert gallery.search(vectors[count], threshold=0.99)[0].identity == "newcomer"
        assert loads == [(False, 1)]
        assert gallery.num_samples == count + 1
