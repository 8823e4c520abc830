"""Gallery persistence in one SQLite file: no pickle, transactional, versioned.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)       -- schema_version, embedder (JSON), created
    identities(id INTEGER PRIMARY KEY, name TEXT UNIQUE, created REAL)
    samples(id INTEGER PRIMARY KEY,
            identity_id INTEGER REFERENCES identities(id) ON DELETE CASCADE,
            embedding BLOB,            -- D little-endian float32, unit norm
            source TEXT,               -- file path or caller's label
            content_sha256 TEXT,       -- sha256 of the input's bytes, for resuming
            box TEXT,                  -- JSON [x1, y1, x2, y2] in pixels
            score REAL,                -- detector score
            added REAL)                -- Unix time

Every change is one SQLite transaction in rollback-journal mode, so a process killed at
any point leaves the file as it was after the last completed change, and the file stays a
single file the user can copy. Readers in other processes see committed data only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GalleryError
from .binding import EmbedderInfo

__all__ = ["SCHEMA_VERSION", "SampleRecord", "Store"]

SCHEMA_VERSION = 1

_SCHEMA = """
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
_TABLES = {"meta", "identities", "samples"}


@dataclass(frozen=True, slots=True)
class SampleRecord:
    """Metadata of one stored embedding."""

    identity: str
    source: str | None
    content_sha256: str | None
    box: tuple[float, float, float, float] | None
    score: float | None
    added: float


class Store:
    """Opens (or creates) a gallery file. ``path=None`` keeps the gallery in memory.

    Raises:
        GalleryError: the file is not a facekit gallery, is corrupt, or has a newer schema.
    """

    def __init__(self, path: str | os.PathLike[str] | None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else None
        where = str(self.path) if self.path is not None else ":memory:"
        if self.path is not None and not self.path.exists() and not create:
            raise GalleryError(f"{self.path}: no such gallery")
        if self.path is not None and self.path.is_dir():
            raise GalleryError(f"{self.path} is a directory, not a gallery file")
        try:
            self._db = sqlite3.connect(where, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = FULL")
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{where} is not a facekit gallery ({exc})") from None
        if not tables:
            self._create()
        elif tables != _TABLES:
            raise GalleryError(
                f"{where} is an SQLite file but not a facekit gallery (tables: "
                f"{', '.join(sorted(tables))})"
            )
        self._check_version(where)

    def _create(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute(
                "INSERT INTO meta VALUES ('schema_version', ?), ('created', ?)",
                (str(SCHEMA_VERSION), str(time.time())),
            )

    def _check_version(self, where: str) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise GalleryError(f"{where}: gallery has no valid schema version")
        if int(row[0]) > SCHEMA_VERSION:
            raise GalleryError(
                f"{where}: gallery schema version {row[0]} is newer than this facekit "
                f"supports ({SCHEMA_VERSION}); upgrade facekit"
            )

    def transaction(self) -> _Transaction:
        """Context manager: everything inside commits together or not at all."""
        return _Transaction(self._db)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    # --- binding -------------------------------------------------------------------------

    def embedder(self) -> EmbedderInfo | None:
        """The embedder the gallery is bound to (``None`` until the first embedding)."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'embedder'").fetchone()
        return EmbedderInfo.from_json(row[0]) if row is not None else None

    def bind(self, info: EmbedderInfo) -> None:
        """Record the embedder (inside the caller's transaction)."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('embedder', ?)", (info.to_json(),))

    # --- identities and samples ------------------------------------------------------------

    def add_samples(
        self,
        identity: str,
        embeddings: np.ndarray,
        sources: Sequence[str | None],
        content_sha256: Sequence[str | None],
        boxes: Sequence[tuple[float, float, float, float] | None],
        scores: Sequence[float | None],
    ) -> None:
        """Insert ``embeddings`` (N, D) float32 for ``identity`` (inside a transaction)."""
        now = time.time()
        self._db.execute(
            "INSERT OR IGNORE INTO identities (name, created) VALUES (?, ?)", (identity, now)
        )
        (identity_id,) = self._db.execute(
            "SELECT id FROM identities WHERE name = ?", (identity,)
        ).fetchone()
        vectors = np.ascontiguousarray(embeddings, dtype="<f4")
        self._db.executemany(
            "INSERT INTO samples (identity_id, embedding, source, content_sha256, box, score, "
            "added) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    identity_id,
                    vector.tobytes(),
                    source,
                    digest,
                    json.dumps(list(box)) if box is not None else None,
                    score,
                    now,
                )
                for vector, source, digest, box, score in zip(
                    vectors, sources, content_sha256, boxes, scores, strict=True
                )
            ],
        )

    def remove(self, identity: str) -> int:
        """Delete an identity and its samples; returns how many samples went."""
        count = self._db.execute(
            "SELECT COUNT(*) FROM samples JOIN identities ON identities.id = identity_id "
            "WHERE name = ?",
            (identity,),
        ).fetchone()[0]
        self._db.execute("DELETE FROM identities WHERE name = ?", (identity,))
        return int(count)

    def rename(self, old: str, new: str) -> None:
        """Rename an identity (inside a transaction)."""
        self._db.execute("UPDATE identities SET name = ? WHERE name = ?", (new, old))

    def identities(self) -> list[tuple[str, int]]:
        """``(name, sample count)`` of every identity, by name."""
        rows = self._db.execute(
            "SELECT name, COUNT(samples.id) FROM identities LEFT JOIN samples "
            "ON samples.identity_id = identities.id GROUP BY identities.id ORDER BY name"
        ).fetchall()
        return [(str(name), int(count)) for name, count in rows]

    def has_content(self, content_sha256: str) -> bool:
        """Whether an input with these bytes was enrolled already."""
        row = self._db.execute(
            "SELECT 1 FROM samples WHERE content_sha256 = ? LIMIT 1", (content_sha256,)
        ).fetchone()
        return row is not None

    def load(self, dim: int) -> tuple[np.ndarray, list[str], np.ndarray]:
        """All samples: ``(N, dim)`` float32 embeddings, identity names, ``(N,)`` int index
        into those names; samples grouped by identity.

        Raises:
            GalleryError: a stored embedding has the wrong size.
        """
        rows = self._db.execute(
            "SELECT identities.name, samples.embedding FROM samples JOIN identities "
            "ON identities.id = samples.identity_id ORDER BY identities.name, samples.id"
        ).fetchall()
        names: list[str] = []
        owners = np.empty(len(rows), dtype=np.int64)
        blob = b"".join(row[1] for row in rows)
        if len(blob) != len(rows) * dim * 4:
            raise GalleryError(
                f"gallery embeddings are corrupt: expected {len(rows)} x {dim} float32"
            )
        for index, (name, _) in enumerate(rows):
            if not names or names[-1] != name:
                names.append(name)
            owners[index] = len(names) - 1
        embeddings = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dim).astype(np.float32)
        return embeddings, names, owners

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``, oldest first."""
        rows = self._db.execute(
            "SELECT source, content_sha256, box, score, added FROM samples JOIN identities "
            "ON identities.id = identity_id WHERE name = ? ORDER BY samples.id",
            (identity,),
        ).fetchall()
        return [
            SampleRecord(
                identity,
                source,
                digest,
                tuple(json.loads(box)) if box is not None else None,
                score,
                added,
            )
            for source, digest, box, score, added in rows
        ]

    def meta(self, key: str) -> str | None:
        """A value of the meta table."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row is not None else None


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> sqlite3.Connection:
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
