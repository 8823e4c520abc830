"""Gallery persistence in one SQLite file: no pickle, transactional, versioned, untrusted.

Schema (version 2)::

    meta(key TEXT PRIMARY KEY, value TEXT)   -- schema_version, embedder (JSON), created,
                                             -- generation (bumped by removals and renames)
    identities(id INTEGER PRIMARY KEY, name TEXT UNIQUE, created REAL)
    samples(id INTEGER PRIMARY KEY,
            identity_id INTEGER REFERENCES identities(id) ON DELETE CASCADE,
            embedding BLOB,            -- D little-endian float32, unit norm
            source TEXT,               -- file path or caller's label
            content_sha256 TEXT UNIQUE,-- sha256 of the input's bytes: nothing is added twice
            box TEXT,                  -- JSON [x1, y1, x2, y2] in pixels
            score REAL,                -- detector score
            added REAL)                -- Unix time

Version 1 had a non-unique ``content_sha256`` index. A version-1 file opens as it is and is
upgraded inside the first write transaction: every row is kept; when several samples share a
content hash, the oldest keeps it and the later ones get ``NULL`` (they stay enrolled, they
just no longer count as "already enrolled").

Every change is one SQLite transaction in rollback-journal mode, so a process killed at
any point leaves the file as it was after the last completed change, and the file stays a
single file the user can copy. Readers in other processes see committed data only.

The file is untrusted input: it is opened with ``trusted_schema`` off, its schema must be
exactly facekit's (no triggers, views or other entries), and every value read is checked
(types, embedding size, finiteness, unit norm). Every failure is a `GalleryError` naming
the file and the cause.
"""

from __future__ import annotations

import array
import errno
import json
import math
import os
import re
import secrets
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GalleryError
from .binding import EmbedderInfo

__all__ = [
    "SCHEMA_VERSION",
    "Position",
    "SQLiteStore",
    "SampleRecord",
    "Snapshot",
    "storable_text",
]

SCHEMA_VERSION = 2

_BASE_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE identities ("
    "id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL)",
    "CREATE TABLE samples ("
    "id INTEGER PRIMARY KEY, "
    "identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE, "
    "embedding BLOB NOT NULL, "
    "source TEXT, content_sha256 TEXT, box TEXT, score REAL, added REAL NOT NULL)",
    "CREATE INDEX samples_identity ON samples(identity_id)",
)
_CONTENT_INDEX = {
    1: "CREATE INDEX samples_content ON samples(content_sha256)",
    2: "CREATE UNIQUE INDEX samples_content ON samples(content_sha256)",
}
_AUTOMATIC = {"sqlite_autoindex_meta_1": "meta", "sqlite_autoindex_identities_1": "identities"}
_TABLES = {"meta", "identities", "samples"}
_VERSION_TEXT = re.compile(r"[0-9]{1,6}", re.ASCII)
_NORM_TOLERANCE = 1e-3
_CHUNK_ROWS = 1024
_IN_CHUNK = 500
# SQLite's primary result codes (sqlite3 names them only from Python 3.11)
_BUSY, _LOCKED, _READONLY, _CORRUPT, _FULL, _CANTOPEN, _NOTADB = 5, 6, 8, 11, 13, 14, 26
_HARD_LINK_UNSUPPORTED = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV}


def _normalised(sql: str) -> str:
    return re.sub(r"\s*([(),])\s*", r"\1", " ".join(sql.split()))


def _create_statement(sql: str) -> str:
    return re.sub(r"^CREATE (UNIQUE INDEX|INDEX|TABLE) ", r"CREATE \1 IF NOT EXISTS ", sql)


def storable_text(text: str) -> str:
    """``text`` as valid UTF-8 text: unchanged when it is, else with each undecodable byte
    of a file name (``os.fsdecode``'s surrogate escapes) written as ``\\xNN`` and any other
    lone surrogate as ``\\udNNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    except UnicodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """Metadata of one stored embedding."""

    identity: str
    source: str | None
    content_sha256: str | None
    box: tuple[float, float, float, float] | None
    score: float | None
    added: float


@dataclass(frozen=True, slots=True)
class Position:
    """How far a reader has read the file: its last sample id, the removal/rename
    generation and the number of samples then."""

    last_id: int
    generation: int
    count: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Samples read from the file, grouped by identity name, oldest first within one.

    Attributes:
        full: the whole gallery (else only the samples added after the reader's position).
        embeddings: ``(N, D)`` float32 unit vectors.
        names: sorted identity names of these samples.
        owners: ``(N,)`` int64 index into ``names``, non-decreasing.
        position: where the reader is after this snapshot.
    """

    full: bool
    embeddings: np.ndarray
    names: list[str]
    owners: np.ndarray
    position: Position


class SQLiteStore:
    """The `GalleryStore` of one SQLite file (the only user of ``sqlite3``): opens (or
    creates) a gallery file. ``path=None`` keeps the gallery in memory.

    Opening never writes to an existing file (a version-1 file is upgraded by the first
    write). ``create=False`` never creates one.

    Raises:
        GalleryError: the file is missing (``create=False``), empty, not a facekit gallery,
            corrupt, unreadable, or has a newer schema.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        self.where = str(self.path) if self.path is not None else "in-memory gallery"
        self._writing = False
        if self.path is None:
            with self._guard("creating"):
                self._db = self._configured(sqlite3.connect(":memory:", isolation_level=None))
                self._create_schema(self._db)
        else:
            self._db = self._open_file(self.path, create)
        try:
            with self._guard("opening"):
                self.version = self._check_schema()
        except GalleryError:
            self._db.close()
            raise

    # --- opening ---------------------------------------------------------------------------

    def _open_file(self, path: Path, create: bool) -> sqlite3.Connection:
        try:
            if path.is_dir():
                raise GalleryError(f"{path} is a directory, not a gallery file")
            if not path.exists():
                if not create:
                    raise GalleryError(f"{path}: no such gallery")
                self._create_file(path)
            elif not stat.S_ISREG(path.stat().st_mode):
                raise GalleryError(f"{path} is not a regular file, not a gallery file")
            elif path.stat().st_size == 0:
                raise GalleryError(
                    f"{path}: the file is empty (0 bytes), not a gallery; delete it to create "
                    "a new gallery there"
                )
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise GalleryError(f"{path}: gallery is read-only ({exc})") from None
            raise GalleryError(f"{path}: cannot open the gallery ({exc.strerror or exc})") from None
        with self._guard("opening"):
            return self._configured(_connect(path, "rw"))

    def _create_file(self, path: Path) -> None:
        """Create a new gallery at ``path`` atomically: the schema is written to a temporary
        file in the same folder, which is then hard-linked to ``path``. If another process
        created ``path`` first, its gallery is kept and opened."""
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
        try:
            with self._guard("creating"):
                db = self._configured(_connect(temporary, "rwc"))
                try:
                    self._create_schema(db)
                finally:
                    db.close()
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process created it first
            except OSError as exc:
                if exc.errno not in _HARD_LINK_UNSUPPORTED:
                    raise
                # No hard links on this file system: create in place, in one transaction.
                with self._guard("creating"):
                    db = self._configured(_connect(path, "rwc"))
                    try:
                        self._create_schema(db)
                    finally:
                        db.close()
        finally:
            for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
                with suppress(OSError):
                    leftover.unlink()

    @staticmethod
    def _configured(db: sqlite3.Connection) -> sqlite3.Connection:
        db.execute("PRAGMA trusted_schema = OFF")
        db.execute("PRAGMA cell_size_check = ON")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA synchronous = FULL")
        return db

    @staticmethod
    def _create_schema(db: sqlite3.Connection) -> None:
        """Create the current schema in one write transaction, unless another process
        created it meanwhile (checked after taking the lock)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0:
                for statement in (*_BASE_SCHEMA, _CONTENT_INDEX[SCHEMA_VERSION]):
                    db.execute(_create_statement(statement))
                db.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
                    (str(SCHEMA_VERSION), repr(time.time())),
                )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _check_schema(self) -> int:
        """The schema version, after checking that the schema is exactly facekit's."""
        entries = self._db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        tables = {name for kind, name, _, _ in entries if kind == "table"}
        tables -= {name for name in tables if str(name).startswith("sqlite_stat")}
        if not entries:
            raise GalleryError(f"{self.where} is an empty SQLite database, not a facekit gallery")
        if tables != _TABLES:
            raise GalleryError(
                f"{self.where} is an SQLite file but not a facekit gallery (tables: "
                f"{', '.join(sorted(map(str, tables)))})"
            )
        version = self._read_version()
        expected = {
            _create_name(sql): _normalised(sql) for sql in (*_BASE_SCHEMA, _CONTENT_INDEX[version])
        }
        found = set()
        for kind, name, table, sql in entries:
            if kind == "table" and str(name).startswith("sqlite_stat"):
                continue
            if kind == "index" and sql is None and _AUTOMATIC.get(name) == table:
                continue
            if not isinstance(sql, str) or expected.get(name) != _normalised(sql):
                raise GalleryError(
                    f"{self.where}: unexpected {kind} {name!r} in the gallery schema; "
                    "refusing a file that was not written by facekit"
                )
            found.add(name)
        if found != set(expected):
            raise GalleryError(
                f"{self.where}: gallery schema lacks {', '.join(sorted(set(expected) - found))}"
            )
        return version

    def _read_version(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        value = row[0] if row is not None else None
        if not isinstance(value, str) or not _VERSION_TEXT.fullmatch(value) or int(value) < 1:
            raise GalleryError(f"{self.where}: gallery has no valid schema version ({value!r})")
        if int(value) > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.where}: gallery schema version {value} is newer than this facekit "
                f"supports ({SCHEMA_VERSION}); upgrade facekit"
            )
        return int(value)

    def _upgrade(self) -> None:
        """Bring a version-1 file to the current schema (inside a write transaction)."""
        self.version = self._read_version()
        if self.version == 1:
            self._db.execute(
                "UPDATE samples SET content_sha256 = NULL WHERE content_sha256 IS NOT NULL AND "
                "id NOT IN (SELECT MIN(id) FROM samples WHERE content_sha256 IS NOT NULL "
                "GROUP BY content_sha256)"
            )
            self._db.execute("DROP INDEX samples_content")
            self._db.execute(_CONTENT_INDEX[2])
            self._db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
            self.version = 2

    # --- errors and transactions -----------------------------------------------------------

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn every low-level failure into a `GalleryError` naming the file and cause."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._failure(doing, exc) from None
        except (ValueError, TypeError, OverflowError, UnicodeError) as exc:
            raise GalleryError(
                f"{self.where}: malformed gallery file while {doing} ({type(exc).__name__}: {exc})"
            ) from None

    def _failure(self, doing: str, exc: sqlite3.Error) -> GalleryError:
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        text = str(exc)
        if primary == _READONLY or "readonly" in text:
            return GalleryError(f"{self.where}: gallery is read-only ({text})")
        if primary == _CANTOPEN or "unable to open" in text:
            folder = (self.path or Path(".")).absolute().parent
            if not folder.is_dir():
                return GalleryError(f"{self.where}: the folder {folder} does not exist")
            if not os.access(folder, os.W_OK):
                return GalleryError(
                    f"{self.where}: gallery is read-only (its folder {folder} is not writable)"
                )
            return GalleryError(f"{self.where}: cannot open the gallery ({text})")
        if primary in (_BUSY, _LOCKED):
            return GalleryError(f"{self.where}: gallery is locked by another process ({text})")
        if primary in (_NOTADB,) or "not a database" in text:
            return GalleryError(f"{self.where} is not a facekit gallery ({text})")
        if primary == _CORRUPT or "malformed" in text:
            return GalleryError(f"{self.where}: corrupt gallery file ({text})")
        if "decode" in text:
            return GalleryError(f"{self.where}: malformed gallery file: {text}")
        if primary == _FULL:
            return GalleryError(f"{self.where}: disk full while {doing} ({text})")
        return GalleryError(f"{self.where}: gallery error while {doing} ({text})")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all, under the file's write lock
        (taken first, so that checks and writes inside see no other writer). Upgrades a
        version-1 file first. Nested uses join the outer transaction."""
        if self._writing:
            yield
            return
        with self._guard("writing"):
            self._db.execute("BEGIN IMMEDIATE")
            self._writing = True
            try:
                if self.version < SCHEMA_VERSION:
                    self._upgrade()
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._writing = False

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def change_token(self) -> int:
        """A number that changes whenever another connection commits a change to the file
        (SQLite's ``PRAGMA data_version``; cheap)."""
        with self._guard("reading"):
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    # --- binding -------------------------------------------------------------------------

    def embedder(self) -> EmbedderInfo | None:
        """The embedder the gallery is bound to (``None`` until the first embedding)."""
        with self._guard("reading the binding"):
            row = self._db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
            if row is None:
                return None
            if not isinstance(row[0], str):
                raise GalleryError(f"{self.where}: malformed embedder record")
            try:
                return EmbedderInfo.from_json(row[0])
            except GalleryError as exc:
                raise GalleryError(f"{self.where}: {exc}") from None

    def bind(self, info: EmbedderInfo) -> None:
        """Record the embedder (inside the caller's transaction)."""
        with self._guard("writing"):
            self._db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (info.to_json(),)
            )

    # --- identities and samples ------------------------------------------------------------

    def add_many(
        self,
        identities: Sequence[str],
        embeddings: np.ndarray,
        sources: Sequence[str | None],
        content_sha256: Sequence[str | None],
        boxes: Sequence[tuple[float, float, float, float] | None],
        scores: Sequence[float | None],
    ) -> int:
        """Insert ``embeddings`` (N, D) float32, row ``i`` for ``identities[i]`` (inside a
        transaction), skipping those whose content hash is stored already or repeated among
        them. Identities are created as needed; all rows go in with one statement each for
        identities and samples.

        Returns:
            The number of samples inserted.
        """
        now = time.time()
        vectors = np.ascontiguousarray(embeddings, dtype="<f4")
        with self._guard("adding samples"):
            stored = self._known([d for d in content_sha256 if d is not None])
            rows = []
            for identity, vector, source, digest, box, score in zip(
                identities, vectors, sources, content_sha256, boxes, scores, strict=True
            ):
                if digest is not None:
                    if digest in stored:
                        continue
                    stored.add(digest)
                rows.append(
                    (
                        identity,
                        vector.tobytes(),
                        storable_text(str(source)) if source is not None else None,
                        digest,
                        json.dumps([float(v) for v in box]) if box is not None else None,
                        float(score) if score is not None else None,
                        now,
                    )
                )
            if not rows:
                return 0
            names = sorted({row[0] for row in rows})
            self._db.executemany(
                "INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)",
                [(name, now) for name in names],
            )
            number = dict(self._rows_in("SELECT name, id FROM identities WHERE name IN", names))
            self._db.executemany(
                "INSERT INTO samples (identity_id, embedding, source, content_sha256, box, "
                "score, added) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(number[row[0]], *row[1:]) for row in rows],
            )
        return len(rows)

    def known_content(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes are stored (chunked ``IN`` queries)."""
        with self._guard("reading"):
            return self._known(hashes)

    def _known(self, hashes: Sequence[str]) -> set[str]:
        return {
            row[0]
            for row in self._rows_in(
                "SELECT content_sha256 FROM samples WHERE content_sha256 IN", list(hashes)
            )
        }

    def _rows_in(self, query: str, values: list[str]) -> Iterator[Any]:
        """Rows of ``query (?, ?, ...)`` over ``values``, in chunks of `_IN_CHUNK` values (under
        every SQLite build's limit on bound parameters)."""
        for start in range(0, len(values), _IN_CHUNK):
            chunk = values[start : start + _IN_CHUNK]
            yield from self._db.execute(f"{query} ({','.join('?' * len(chunk))})", chunk)

    def _bump_generation(self) -> None:
        self._db.execute(
            "INSERT INTO meta VALUES ('generation', '1') ON CONFLICT(key) DO UPDATE SET "
            "value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
        )

    def remove(self, identity: str) -> int:
        """Delete an identity and its samples (inside a transaction); returns how many
        samples went."""
        with self._guard("removing"):
            count = self._db.execute(
                "SELECT COUNT(*) FROM samples JOIN identities ON identities.id = identity_id "
                "WHERE name = ?",
                (identity,),
            ).fetchone()[0]
            gone = self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
            if gone.rowcount == 0:
                raise GalleryError(f"{identity!r} is not enrolled in {self.where}")
            self._bump_generation()
        return int(count)

    def rename(self, old: str, new: str) -> None:
        """Rename an identity (inside a transaction).

        Raises:
            GalleryError: ``old`` is unknown or ``new`` is taken (checked under the lock).
        """
        with self._guard("renaming"):
            if self._db.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise GalleryError(
                    f"{new!r} is already enrolled in {self.where}; remove it or pick another name"
                )
            changed = self._db.execute("UPDATE identities SET name = ? WHERE name = ?", (new, old))
            if changed.rowcount == 0:
                raise GalleryError(f"{old!r} is not enrolled in {self.where}")
            self._bump_generation()

    def identities(self) -> list[tuple[str, int]]:
        """``(name, sample count)`` of every identity with samples, by name."""
        with self._guard("reading"):
            rows = self._db.execute(
                "SELECT name, COUNT(samples.id) FROM identities JOIN samples "
                "ON samples.identity_id = identities.id GROUP BY identities.id ORDER BY name"
            ).fetchall()
            return [(self._text(name, "identity name"), int(count)) for name, count in rows]

    def load(self, dim: int, since: Position | None = None) -> Snapshot:
        """Samples added after ``since`` (all when ``since`` is ``None``, or when samples
        were removed or renamed since), read consistently in one read transaction into one
        preallocated array.

        Raises:
            GalleryError: a stored value has the wrong type, or an embedding the wrong
                size, a non-finite value or not a unit norm.
        """
        with self._guard("loading"):
            self._db.execute("BEGIN")
            try:
                return self._load(dim, since)
            finally:
                self._db.execute("COMMIT")

    def _load(self, dim: int, since: Position | None) -> Snapshot:
        generation = self._generation()
        count = int(self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])
        last_id = int(self._db.execute("SELECT IFNULL(MAX(id), 0) FROM samples").fetchone()[0])
        full = True
        if since is not None and since.generation == generation and since.last_id <= last_id:
            added = self._db.execute(
                "SELECT COUNT(*) FROM samples WHERE id > ?", (since.last_id,)
            ).fetchone()[0]
            full = since.count + added != count  # else something but additions changed
        after = 0 if full or since is None else since.last_id
        total = count if full or since is None else count - since.count
        embeddings = np.empty((total, dim), dtype="<f4")
        names: list[str] = []
        # All rows: walk the name index and each identity's samples in id order (no sort,
        # which would hold every row in SQLite's memory); new rows: the id range, sorted.
        rows = self._db.execute(
            "SELECT identities.name, samples.id, samples.embedding FROM identities "
            f"{'CROSS JOIN' if full else 'JOIN'} samples "
            "ON samples.identity_id = identities.id WHERE samples.id > ? "
            "ORDER BY identities.name, samples.id",
            (after,),
        )
        if total and not dim:
            raise GalleryError(f"{self.where}: samples but no embedder record")
        size = dim * 4
        starts = array.array("q")  # first row of each name
        done = 0
        while chunk := rows.fetchmany(_CHUNK_ROWS):  # copied into the array chunk by chunk
            if done + len(chunk) > total:
                raise GalleryError(f"{self.where}: samples without an identity")
            for position, (name, sample_id, blob) in enumerate(chunk):
                if type(blob) is not bytes or len(blob) != size:
                    raise GalleryError(
                        f"{self.where}: corrupt embedding in sample {sample_id}: expected "
                        f"{dim} float32 ({size} bytes), found {_describe(blob)}"
                    )
                if not names or names[-1] != name:
                    names.append(self._text(name, "identity name"))
                    starts.append(done + position)
            block = np.frombuffer(b"".join([row[2] for row in chunk]), dtype="<f4")
            embeddings[done : done + len(chunk)] = block.reshape(len(chunk), dim)
            done += len(chunk)
        if done != total:
            raise GalleryError(f"{self.where}: samples without an identity")
        sizes = np.diff(np.append(np.frombuffer(starts, dtype=np.int64), done))
        owners = np.repeat(np.arange(len(names), dtype=np.int64), sizes)
        self._check_vectors(embeddings)
        return Snapshot(full, embeddings, names, owners, Position(last_id, generation, count))

    def _check_vectors(self, embeddings: np.ndarray) -> None:
        """Finite unit vectors (a NaN or infinity makes the norm non-finite too, so no
        temporary as large as the embeddings is needed)."""
        norms = np.sqrt(np.einsum("ij,ij->i", embeddings, embeddings))
        finite = np.isfinite(norms)
        if not finite.all():
            raise GalleryError(
                f"{self.where}: corrupt embeddings: {int((~finite).sum())} hold NaN or infinity"
            )
        bad = np.abs(norms - 1.0) >= _NORM_TOLERANCE
        if bad.any():
            raise GalleryError(
                f"{self.where}: corrupt embeddings: {int(bad.sum())} are not unit vectors "
                f"(norm {float(norms[bad][0]):.4g})"
            )

    def _generation(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        if row is None:
            return 0
        if not isinstance(row[0], str) or not _VERSION_TEXT.fullmatch(row[0]):
            raise GalleryError(f"{self.where}: malformed generation counter {row[0]!r}")
        return int(row[0])

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``, oldest first."""
        with self._guard("reading samples"):
            rows = self._db.execute(
                "SELECT source, content_sha256, box, score, added FROM samples JOIN identities "
                "ON identities.id = identity_id WHERE name = ? ORDER BY samples.id",
                (identity,),
            ).fetchall()
            return [
                SampleRecord(
                    identity,
                    self._optional_text(source, "source"),
                    self._optional_text(digest, "content hash"),
                    self._box(box),
                    self._number(score, "score") if score is not None else None,
                    self._number(added, "time added"),
                )
                for source, digest, box, score, added in rows
            ]

    def meta(self, key: str) -> str | None:
        """A value of the meta table."""
        with self._guard("reading"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            return self._text(row[0], key) if row is not None else None

    # --- checks of values read from the file -----------------------------------------------

    def _text(self, value: object, what: str) -> str:
        if not isinstance(value, str):
            raise GalleryError(f"{self.where}: malformed {what}: {_describe(value)}")
        return value

    def _optional_text(self, value: object, what: str) -> str | None:
        return None if value is None else self._text(value, what)

    def _number(self, value: object, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GalleryError(f"{self.where}: malformed {what}: {_describe(value)}")
        return float(value)

    def _box(self, value: object) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        box = json.loads(self._text(value, "box"))
        if not isinstance(box, list) or len(box) != 4:
            raise GalleryError(f"{self.where}: malformed box: {value!r}")
        x1, y1, x2, y2 = (self._number(v, "box") for v in box)
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise GalleryError(f"{self.where}: malformed box: {value!r}")
        return x1, y1, x2, y2


def _create_name(sql: str) -> str:
    return sql.split("(")[0].split(" ON ")[0].split()[-1]


def _describe(value: object) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return f"{type(value).__name__} {value!r:.40}"


def _connect(path: Path, mode: str) -> sqlite3.Connection:
    """Open ``path`` with SQLite's URI ``mode`` (``rw``: never creates the file)."""
    location = urllib.parse.quote(os.fsencode(path.absolute()))
    return sqlite3.connect(
        f"file:{location}?mode={mode}", uri=True, timeout=30.0, isolation_level=None
    )
