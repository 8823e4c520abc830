"""A gallery in a Milvus collection: store and vector index at once (pymilvus ``MilvusClient``).

The same code runs embedded and against a server, chosen by the location:

- ``milvus-lite:///abs/path/faces.db`` — Milvus Lite, embedded in this process. The ``.db``
  is a *directory* (WAL, Parquet segments, index files, a ``LOCK``), and only one process at
  a time may open it: a second one gets a `GalleryError` naming the lock.
- ``milvus://[user:password@]host[:19530]/collection[?db=name]`` — a Milvus standalone
  server or cluster over plain gRPC (``http://host:19530``); ``milvus+tls://...`` the same
  over TLS (``https://``). The access token is ``user:password`` (or an API key alone,
  ``key@host``) from the URI, else the ``FACEKIT_MILVUS_TOKEN`` environment variable;
  ``?db=name`` picks a database (it must exist). Secrets never appear in messages or
  ``repr`` (``***``), and every malformed location is a `ConfigError`.

Milvus Lite also takes ``?collection=name`` (default ``facekit``).

A `Gallery` on this store never reads the vectors to search or list: identities and counts
come from queries, search runs in Milvus (`MilvusIndex`), and only `MilvusStore.embeddings`
(one identity) and `MilvusStore.load` (an export) transfer vectors.

One collection is one gallery, created at the first `bind` (the dimension is known then)::

    sample_key      VARCHAR PK   content_sha256 when known, else "u:" + a random uuid
    identity        VARCHAR      INVERTED index; the identity name
    embedding       FLOAT_VECTOR(D), HNSW (M 32, efConstruction 100), inner product
    content_sha256  VARCHAR      nullable, INVERTED index: the input's sha256 (resume)
    source          VARCHAR      nullable: file path or caller's label
    box             ARRAY<DOUBLE>(4) nullable: face box in pixels
    score           DOUBLE       nullable: detector score
    added           DOUBLE       Unix time
    seq             INT64        insertion order (time in ns + row), oldest first

and collection properties ``facekit.schema`` (`MILVUS_SCHEMA`), ``facekit.embedder`` (the
`EmbedderInfo` JSON: the binding travels with the collection) and ``facekit.generation``
(bumped by removals and renames, see `MilvusStore.change_token`). Reads and writes use the
``Strong`` consistency level, so a write is visible to the next read from any client.

**No transactions.** Milvus has none. `MilvusStore.transaction` takes an in-process lock, so
threads of this process do not interleave their check-then-write steps; nothing more:

- one ``insert`` RPC (up to `INSERT_ROWS` rows) is applied as a whole or not at all; an
  `add_many` of more rows is several RPCs, and a crash between two leaves the first ones
  stored. Enrolment resumes by content hash, so a re-run adds exactly the rest.
- `remove` is one ``delete`` by identity (atomic per segment on a server; verified after).
- `rename` is a query of the old rows, an ``upsert`` of them with the new name under the
  same primary keys (so no row is ever duplicated) and a check of both counts; a crash in
  the middle leaves some samples under each name (nothing is lost), and the check reports it.
- Two *processes* (server clients) adding the same content at the same moment may both pass
  the "already stored?" check; the primary key is the content hash, so the second write
  replaces the first instead of duplicating it.

**Logging.** pymilvus logs every failed RPC with a full traceback at ERROR level (logger
``pymilvus.decorators``), even when facekit catches the failure and raises a `GalleryError`.
facekit does not reconfigure logging; silence it in the application if the noise matters
(``logging.getLogger("pymilvus").setLevel(logging.CRITICAL)``).

pymilvus is imported when a `MilvusStore` is opened, never by ``import facekit``.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, GalleryError
from .backends import redact
from .binding import EmbedderInfo
from .index import Aggregate, ExactIndex, SearchResult
from .protocols import IndexFactory
from .store import Position, SampleRecord, Snapshot, storable_text

__all__ = [
    "DEFAULT_COLLECTION",
    "DEFAULT_PORT",
    "INSERT_ROWS",
    "MILVUS_SCHEMA",
    "TOKEN_VARIABLE",
    "MilvusIndex",
    "MilvusLocation",
    "MilvusStore",
    "parse_location",
]

MILVUS_SCHEMA = 1
"""Version of the collection layout above (property ``facekit.schema``)."""

DEFAULT_COLLECTION = "facekit"
INSERT_ROWS = 1000
"""Rows per ``insert``/``upsert`` RPC."""

_FILTER_VALUES = 500  # values per ``field in [...]`` filter
_SEARCH_QUERIES = 256  # queries per search RPC
_SHORTLIST = 32  # identities shortlisted per query for "mean" re-ranking
_NAME_BYTES = 1024
_SOURCE_BYTES = 65535
_NORM_TOLERANCE = 1e-3
_HNSW = {"M": 32, "efConstruction": 100}
_FIELDS = ("sample_key", "identity", "embedding", "content_sha256", "source", "box", "score")
_RECORD_FIELDS = ["identity", "content_sha256", "source", "box", "score", "added", "seq"]
_SERVER_SCHEMES = {"milvus": "http", "milvus+tls": "https"}
"""Server URI scheme → the scheme pymilvus is given."""
DEFAULT_PORT = 19530
TOKEN_VARIABLE = "FACEKIT_MILVUS_TOKEN"
"""Environment variable holding the server token when the URI has no credentials."""


@dataclass(frozen=True, slots=True, repr=False)
class MilvusLocation:
    """Where a Milvus gallery lives, parsed from its URI.

    Attributes:
        uri: what `MilvusClient` is given: the ``.db`` path (Lite), ``http://host:port`` or
            ``https://host:port`` (TLS).
        collection: the collection holding the gallery.
        lite: whether it is an embedded Milvus Lite directory.
        token: server access token (``user:password`` or an API key), or ``""``; never
            shown (``repr`` writes ``***``).
        db_name: server database, or ``""`` for the default one.
    """

    uri: str
    collection: str
    lite: bool
    token: str = ""
    db_name: str = ""

    def __repr__(self) -> str:
        return (
            f"MilvusLocation(uri={self.uri!r}, collection={self.collection!r}, "
            f"lite={self.lite}, token={'***' if self.token else ''!r}, "
            f"db_name={self.db_name!r})"
        )


def parse_location(location: str) -> MilvusLocation:
    """Parse a Milvus gallery location:

    - ``milvus-lite:///abs/path/faces.db[?collection=c]`` (embedded);
    - ``milvus://[user:password@]host[:19530]/collection[?db=name]`` (a server, plain gRPC);
    - ``milvus+tls://...`` the same over TLS (pymilvus ``https://``).

    Credentials (percent-encoded in the URI) may also be an API key alone (``key@host``) or
    ``?token=``; without any, the token is read from ``FACEKIT_MILVUS_TOKEN``.

    Raises:
        ConfigError: another scheme, no host, a bad port, no collection (server), a
            relative Lite path or one not ending in ``.db``, an invalid collection or
            database name, an unknown option, or credentials given twice. The message never
            holds the password or token.
    """
    shown = redact(location)
    try:
        parts = urllib.parse.urlsplit(location)
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    except ValueError as exc:
        raise ConfigError(f"{shown}: malformed location ({exc})") from None
    options = {key: values[-1] for key, values in query.items()}
    if parts.scheme == "milvus-lite":
        return _lite_location(parts, options, shown)
    if parts.scheme in _SERVER_SCHEMES:
        return _server_location(parts, options, shown)
    raise ConfigError(
        f"{shown}: not a Milvus location (schemes: milvus-lite, {', '.join(_SERVER_SCHEMES)})"
    )


def _lite_location(
    parts: urllib.parse.SplitResult, options: dict[str, str], shown: str
) -> MilvusLocation:
    _check_options(options, {"collection"}, shown)
    path = urllib.parse.unquote(parts.path)
    if parts.netloc or not path.startswith("/"):
        raise ConfigError(
            f"{shown}: a Milvus Lite location is milvus-lite:///ABSOLUTE/PATH.db "
            "(three slashes, an absolute path)"
        )
    if not path.endswith(".db"):
        raise ConfigError(f"{shown}: a Milvus Lite path must end in .db")
    path = "/" + path.lstrip("/")  # milvus-lite:////abs (an f-string of an absolute path)
    collection = options.get("collection", DEFAULT_COLLECTION)
    return MilvusLocation(path, _collection_name(shown, collection), lite=True)


def _server_location(
    parts: urllib.parse.SplitResult, options: dict[str, str], shown: str
) -> MilvusLocation:
    _check_options(options, {"collection", "token", "db"}, shown)
    if not parts.hostname:
        raise ConfigError(f"{shown}: no host ({parts.scheme}://HOST:19530/COLLECTION)")
    try:
        port = parts.port
    except ValueError:  # not a number, or above 65535
        port = 0
    if port == 0:
        raise ConfigError(f"{shown}: bad port (a number from 1 to 65535)")
    named = parts.path.strip("/")
    if named and "collection" in options and options["collection"] != named:
        raise ConfigError(f"{shown}: two different collections (path and ?collection=)")
    collection = named or options.get("collection", "")
    if not collection:
        raise ConfigError(f"{shown}: no collection ({parts.scheme}://HOST:PORT/COLLECTION)")
    token = _credentials(parts, options, shown)
    database = options.get("db", "")
    if database:
        _collection_name(shown, database, "database")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return MilvusLocation(
        f"{_SERVER_SCHEMES[parts.scheme]}://{host}:{port or DEFAULT_PORT}",
        _collection_name(shown, collection),
        lite=False,
        token=token or os.environ.get(TOKEN_VARIABLE, ""),
        db_name=database,
    )


def _check_options(options: dict[str, str], allowed: set[str], shown: str) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"{shown}: unknown option(s) {', '.join(sorted(unknown))}")


def _credentials(parts: urllib.parse.SplitResult, options: dict[str, str], shown: str) -> str:
    """The token of the URI: ``user:password`` or ``key`` before the ``@``, or ``?token=``
    (``""`` when neither)."""
    if "@" not in parts.netloc:
        return options.get("token", "")
    if "token" in options:
        raise ConfigError(f"{shown}: credentials given twice (before @ and ?token=)")
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    if not user:
        raise ConfigError(f"{shown}: credentials without a user name (USER:PASSWORD@HOST)")
    return f"{user}:{password}" if parts.password is not None else user


def _collection_name(shown: str, name: str, what: str = "collection") -> str:
    """``name`` when it is a valid Milvus collection (or database) name.

    Raises:
        ConfigError: anything but ASCII letters, digits and ``_``, or a leading digit.
    """
    if not name or not name.replace("_", "a").isalnum() or not name.isascii() or name[0].isdigit():
        raise ConfigError(
            f"{shown}: invalid {what} name {name!r} (letters, digits and _, not starting "
            "with a digit)"
        )
    return name


def _literal(text: str) -> str:
    """``text`` as a Milvus filter string literal.

    Raises:
        GalleryError: control characters other than tab, newline and carriage return (the
            filter parser has no escape for them).
    """
    if any(ord(c) < 0x20 and c not in "\t\n\r" for c in text):
        raise GalleryError(f"{text!r}: control characters are not supported by the Milvus store")
    return json.dumps(text, ensure_ascii=False)


def _literals(texts: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(t) for t in texts) + "]"


class MilvusStore:
    """A gallery in one Milvus collection (see the module docstring for the layout and what
    is and is not atomic). Implements the `GalleryStore` interface of the SQLite store.

    Args:
        uri: ``milvus-lite:///abs/path/faces.db``, ``milvus://host:19530/collection`` or
            ``milvus+tls://...`` (see `parse_location`).
        collection: overrides the URI's collection.
        create: create the Lite directory when it is missing; with ``False`` a missing
            directory or collection is an error.

    Raises:
        ConfigError: a malformed URI.
        GalleryError: the Lite directory is used by another process (its
            ``LOCK``), its folder does not exist, the server cannot be reached, or the
            collection is not a facekit gallery.
    """

    def __init__(self, uri: str, *, collection: str | None = None, create: bool = True) -> None:
        location = parse_location(uri)
        if collection is not None:
            location = MilvusLocation(
                location.uri,
                _collection_name(redact(uri), collection),
                location.lite,
                location.token,
                location.db_name,
            )
        self.location = location
        self.path: Path | None = None
        database = f"?db={location.db_name}" if location.db_name else ""
        self.where = uri if location.lite else f"{location.uri}/{location.collection}{database}"
        self._collection = location.collection
        self._lock = threading.RLock()
        self._dim = 0
        if location.lite:
            self._check_lite_path(Path(location.uri), create)
        self._client = self._connect()
        try:
            with self._guard("opening"):
                exists = bool(self._client.has_collection(self._collection))
            if exists:
                self._open_collection()
            elif not create:
                raise GalleryError(f"{self.where}: no such gallery (collection {self._collection})")
        except GalleryError:
            self.close()
            raise

    # --- opening ---------------------------------------------------------------------------

    def _check_lite_path(self, path: Path, create: bool) -> None:
        if not path.parent.is_dir():
            raise GalleryError(f"{self.where}: the folder {path.parent} does not exist")
        if path.exists() and not path.is_dir():
            raise GalleryError(
                f"{self.where}: {path} is a file; a Milvus Lite gallery is a directory "
                "(an SQLite gallery file is opened by its plain path)"
            )
        if not path.exists() and not create:
            raise GalleryError(f"{self.where}: no such gallery")

    def _connect(self) -> Any:
        try:
            from pymilvus import MilvusClient
            from pymilvus.exceptions import MilvusException
        except ImportError as exc:
            from ..errors import BackendError

            raise BackendError(
                f"Milvus galleries need pymilvus and milvus-lite: pip install facekit[milvus] "
                f"({exc})"
            ) from None
        location = self.location
        try:
            return MilvusClient(
                location.uri,
                token=location.token,
                db_name=location.db_name,
                timeout=30.0,
                dedicated=not location.lite,  # pymilvus shares by address and token, not TLS
            )
        except MilvusException as exc:
            if location.lite and _lock_held(Path(location.uri) / "LOCK"):
                raise GalleryError(
                    f"{self.where}: the gallery is open in another process (Milvus Lite "
                    f"allows one process per .db; it holds {Path(location.uri) / 'LOCK'}). "
                    "Close it there, or use a Milvus server for several processes"
                ) from None
            raise GalleryError(
                f"{self.where}: cannot open the gallery ({self._hide(_message(exc))})"
            ) from None
        except (OSError, ValueError, RuntimeError) as exc:
            raise GalleryError(
                f"{self.where}: cannot open the gallery ({self._hide(str(exc))})"
            ) from None

    def _hide(self, text: str) -> str:
        """``text`` with the token and its password part (if echoed) replaced by ``***``."""
        token = self.location.token
        for secret in (token, token.partition(":")[2]):
            if secret:
                text = text.replace(secret, "***")
        return text

    def _open_collection(self) -> None:
        """Check that the collection is a facekit gallery and load it for searching."""
        with self._guard("opening"):
            described = self._client.describe_collection(self._collection)
            properties = described.get("properties") or {}
            version = properties.get("facekit.schema")
            if version is None:
                raise GalleryError(
                    f"{self.where}: collection {self._collection} is not a facekit gallery "
                    "(no facekit.schema property)"
                )
            if not str(version).isdigit() or int(version) > MILVUS_SCHEMA:
                raise GalleryError(
                    f"{self.where}: gallery layout version {version!r} is newer than this "
                    f"facekit supports ({MILVUS_SCHEMA}); upgrade facekit"
                )
            fields = {field["name"]: field for field in described.get("fields", [])}
            missing = [name for name in (*_FIELDS, "added", "seq") if name not in fields]
            if missing:
                raise GalleryError(
                    f"{self.where}: collection {self._collection} lacks field(s) "
                    f"{', '.join(missing)}; not a facekit gallery"
                )
            self._dim = int(fields["embedding"].get("params", {}).get("dim", 0))
            self._client.load_collection(self._collection)

    def _create_collection(self, dim: int, binding: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("sample_key", DataType.VARCHAR, is_primary=True, max_length=80)
        schema.add_field("identity", DataType.VARCHAR, max_length=_NAME_BYTES)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=dim)
        schema.add_field("content_sha256", DataType.VARCHAR, max_length=128, nullable=True)
        schema.add_field("source", DataType.VARCHAR, max_length=_SOURCE_BYTES, nullable=True)
        schema.add_field(
            "box", DataType.ARRAY, element_type=DataType.DOUBLE, max_capacity=4, nullable=True
        )
        schema.add_field("score", DataType.DOUBLE, nullable=True)
        schema.add_field("added", DataType.DOUBLE)
        schema.add_field("seq", DataType.INT64)
        params = self._client.prepare_index_params()
        params.add_index(field_name="embedding", index_type="HNSW", metric_type="IP", params=_HNSW)
        params.add_index(field_name="identity", index_type="INVERTED")
        params.add_index(field_name="content_sha256", index_type="INVERTED")
        self._client.create_collection(
            self._collection,
            schema=schema,
            index_params=params,
            consistency_level="Strong",
            properties={
                "facekit.schema": str(MILVUS_SCHEMA),
                "facekit.embedder": binding,
                "facekit.generation": "0",
                "facekit.created": repr(time.time()),
            },
        )
        self._client.load_collection(self._collection)
        self._dim = dim

    # --- errors and transactions -----------------------------------------------------------

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Turn every pymilvus failure into a `GalleryError` naming the gallery and cause
        (and refuse to work on a closed store)."""
        from pymilvus.exceptions import MilvusException

        if self._client is None:
            raise GalleryError(f"{self.where}: the gallery is closed")
        try:
            yield
        except MilvusException as exc:
            raise GalleryError(
                f"{self.where}: failed while {doing} ({self._hide(_message(exc))})"
            ) from None
        except (ValueError, TypeError, KeyError, OSError, RuntimeError, UnicodeError) as exc:
            raise GalleryError(
                f"{self.where}: failed while {doing} ({type(exc).__name__}: {self._hide(str(exc))})"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """An in-process lock around a group of changes (Milvus has no transactions; see
        the module docstring for what is atomic). Nested uses join the outer one."""
        with self._lock:
            yield

    def close(self) -> None:
        """Close the client (every change is already stored). Milvus Lite first flushes
        its write-ahead log into indexed segments: without that, the next process to open
        the directory replays and indexes it (about 30 s for 10k 512-d samples, measured)."""
        client = getattr(self, "_client", None)
        if client is not None:
            self._client = None
            from pymilvus.exceptions import MilvusException

            with suppress(MilvusException):  # a failed connection, or no collection yet
                if self.location.lite and self._exists():
                    client.flush(self._collection)
            with suppress(MilvusException):
                client.close()

    @property
    def dim(self) -> int:
        """Embedding dimension of the collection (0 before the first `bind`)."""
        return self._dim

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._client is None

    def _exists(self) -> bool:
        return self._dim > 0

    def _properties(self) -> dict[str, str]:
        with self._guard("reading the collection properties"):
            described = self._client.describe_collection(self._collection)
        return {str(k): str(v) for k, v in (described.get("properties") or {}).items()}

    def _generation(self) -> int:
        value = self._properties().get("facekit.generation", "0")
        if not value.isdigit():
            raise GalleryError(f"{self.where}: malformed generation counter {value!r}")
        return int(value)

    def _bump_generation(self) -> None:
        generation = self._generation() + 1
        with self._guard("writing"):
            self._client.alter_collection_properties(
                self._collection, properties={"facekit.generation": str(generation)}
            )

    def _count(self, filter_text: str = "") -> int:
        with self._guard("counting"):
            rows = self._client.query(
                self._collection, filter=filter_text, output_fields=["count(*)"]
            )
        return int(rows[0]["count(*)"]) if rows else 0

    def change_token(self) -> object:
        """``(generation, sample count)``: changes whenever any client adds (the count),
        removes or renames (the generation) — two cheap RPCs. ``(0, 0)`` before the
        collection exists."""
        if not self._exists():
            self._refresh_existence()
            if not self._exists():
                return (0, 0)
        return (self._generation(), self._count())

    def _refresh_existence(self) -> None:
        """Another client may have created the collection since this one opened."""
        with self._guard("opening"):
            exists = bool(self._client.has_collection(self._collection))
        if exists:
            self._open_collection()

    # --- binding -------------------------------------------------------------------------

    def embedder(self) -> EmbedderInfo | None:
        """The embedder the gallery is bound to (``None`` until the first `bind`)."""
        if not self._exists():
            self._refresh_existence()
            if not self._exists():
                return None
        text = self._properties().get("facekit.embedder")
        if text is None:
            return None
        try:
            info = EmbedderInfo.from_json(text)
        except GalleryError as exc:
            raise GalleryError(f"{self.where}: {exc}") from None
        if info.dim != self._dim:
            raise GalleryError(
                f"{self.where}: the binding says {info.dim}-d but the collection holds "
                f"{self._dim}-d vectors"
            )
        return info

    def bind(self, info: EmbedderInfo) -> None:
        """Record the embedder; creates the collection (with ``info.dim``-d vectors) when
        it does not exist yet.

        Raises:
            GalleryError: the collection exists with another dimension.
        """
        if not isinstance(info.dim, int) or info.dim < 1:
            raise GalleryError(f"invalid embedding dimension {info.dim!r}")
        with self._lock:
            if not self._exists():
                self._refresh_existence()
            if not self._exists():
                with self._guard("creating the collection"):
                    self._create_collection(info.dim, info.to_json())
                return
            if info.dim != self._dim:
                raise GalleryError(
                    f"{self.where}: the collection holds {self._dim}-d vectors, the embedder "
                    f"makes {info.dim}-d ones"
                )
            with self._guard("writing the binding"):
                self._client.alter_collection_properties(
                    self._collection, properties={"facekit.embedder": info.to_json()}
                )

    # --- identities and samples ------------------------------------------------------------

    def add_samples(
        self,
        identity: str,
        embeddings: np.ndarray,
        sources: Sequence[str | None],
        content_sha256: Sequence[str | None],
        boxes: Sequence[tuple[float, float, float, float] | None],
        scores: Sequence[float | None],
    ) -> int:
        """Insert ``embeddings`` (N, D) float32 unit vectors for ``identity``, skipping those
        whose content hash is stored already or repeated among them.

        Returns:
            The number of samples inserted.
        """
        count = int(np.shape(embeddings)[0]) if np.ndim(embeddings) == 2 else 0
        return self.add_many([identity] * count, embeddings, sources, content_sha256, boxes, scores)

    def add_many(
        self,
        identities: Sequence[str],
        embeddings: np.ndarray,
        sources: Sequence[str | None],
        content_sha256: Sequence[str | None],
        boxes: Sequence[tuple[float, float, float, float] | None],
        scores: Sequence[float | None],
    ) -> int:
        """Insert sample ``i`` (row ``i`` of the ``(N, D)`` float32 unit ``embeddings``) for
        ``identities[i]``, skipping known content hashes and repeats, in `INSERT_ROWS`-row
        RPCs (each atomic; see the module docstring).

        Returns:
            The number of samples inserted.

        Raises:
            GalleryError: unbound gallery, wrong dimension, non-finite or non-unit vectors,
                columns of different lengths, a name or source too long, or a server failure.
        """
        if not self._exists():
            raise GalleryError(f"{self.where}: the gallery is not bound to an embedder yet")
        vectors = _float_matrix(embeddings, "embeddings")
        if vectors.ndim != 2 or vectors.shape[1] != self._dim:
            raise GalleryError(
                f"{self.where}: embeddings must be (n, {self._dim}), got {vectors.shape}"
            )
        count = vectors.shape[0]
        columns: dict[str, Sequence[object]] = {
            "identities": identities,
            "sources": sources,
            "content_sha256": content_sha256,
            "boxes": boxes,
            "scores": scores,
        }
        for name, column in columns.items():
            if len(column) != count:
                raise GalleryError(f"{name} has {len(column)} entries for {count} embeddings")
        _check_vectors(self.where, vectors)
        with self._lock:
            stored = self.known_content([d for d in content_sha256 if d is not None])
            now = time.time()
            first = time.time_ns()
            rows = []
            for row, (name, vector, source, digest, box, score) in enumerate(
                zip(identities, vectors, sources, content_sha256, boxes, scores, strict=True)
            ):
                if digest is not None:
                    if digest in stored:
                        continue
                    stored.add(digest)
                rows.append(
                    {
                        "sample_key": digest if digest is not None else f"u:{uuid.uuid4().hex}",
                        "identity": self._name(name),
                        "embedding": vector,
                        "content_sha256": digest,
                        "source": self._source(source),
                        "box": [float(v) for v in box] if box is not None else None,
                        "score": float(score) if score is not None else None,
                        "added": now,
                        "seq": first + row,
                    }
                )
            for start in range(0, len(rows), INSERT_ROWS):
                with self._guard("adding samples"):
                    self._client.insert(self._collection, rows[start : start + INSERT_ROWS])
        return len(rows)

    def _name(self, name: object) -> str:
        if not isinstance(name, str) or not name.strip():
            raise GalleryError(f"invalid identity name {name!r}")
        _literal(name)  # refuses what a filter could not name
        if len(name.encode("utf-8", "surrogatepass")) > _NAME_BYTES:
            raise GalleryError(f"identity name longer than {_NAME_BYTES} bytes: {name[:40]!r}...")
        return name

    def _source(self, source: str | None) -> str | None:
        if source is None:
            return None
        text = storable_text(str(source))
        if len(text.encode("utf-8")) > _SOURCE_BYTES:
            raise GalleryError(f"source longer than {_SOURCE_BYTES} bytes: {text[:40]!r}...")
        return text

    def known_content(self, hashes: Sequence[str]) -> set[str]:
        """Which of ``hashes`` are stored: primary-key lookups (a sample's key is its
        content hash when it has one), `_FILTER_VALUES` hashes per query."""
        if not self._exists():
            return set()
        wanted = list(dict.fromkeys(hashes))
        found: set[str] = set()
        for start in range(0, len(wanted), _FILTER_VALUES):
            chunk = wanted[start : start + _FILTER_VALUES]
            with self._guard("reading content hashes"):  # primary-key lookups
                rows = self._client.query(
                    self._collection,
                    filter=f"sample_key in {_literals(chunk)}",
                    output_fields=["content_sha256"],
                )
            found.update(
                row["content_sha256"]
                for row in rows
                if row.get("content_sha256") == row.get("sample_key")
            )
        return found

    def has_content(self, content_sha256: str) -> bool:
        """Whether an input with these bytes was enrolled already."""
        return bool(self.known_content([content_sha256]))

    def remove(self, identity: str) -> int:
        """Delete an identity's samples; returns how many went.

        Raises:
            GalleryError: ``identity`` is not enrolled, or not every sample went.
        """
        with self._lock:
            selector = f"identity == {_literal(identity)}"
            count = self._count(selector) if self._exists() else 0
            if count == 0:
                raise GalleryError(f"{identity!r} is not enrolled in {self.where}")
            with self._guard("removing"):
                self._client.delete(self._collection, filter=selector)
            self._bump_generation()
            left = self._count(selector)
            if left:
                raise GalleryError(
                    f"{self.where}: {left} of {count} samples of {identity!r} remain"
                )
        return count

    def rename(self, old: str, new: str) -> None:
        """Rename an identity: its rows are upserted under the new name with the same keys
        (never duplicated), then both counts are checked.

        Raises:
            GalleryError: ``old`` is unknown, ``new`` is taken, or the counts do not add up
                (a failure part-way: both names then hold samples, none is lost).
        """
        with self._lock:
            old_filter, new_filter = f"identity == {_literal(old)}", f"identity == {_literal(new)}"
            self._name(new)
            if self._exists() and self._count(new_filter):
                raise GalleryError(
                    f"{new!r} is already enrolled in {self.where}; remove it or pick another name"
                )
            rows = self._rows(old_filter, ["*"])
            if not rows:
                raise GalleryError(f"{old!r} is not enrolled in {self.where}")
            for row in rows:
                row["identity"] = new
            for start in range(0, len(rows), INSERT_ROWS):
                with self._guard("renaming"):
                    self._client.upsert(self._collection, rows[start : start + INSERT_ROWS])
            self._bump_generation()
            moved, left = self._count(new_filter), self._count(old_filter)
            if moved != len(rows) or left:
                raise GalleryError(
                    f"{self.where}: renaming {old!r} to {new!r} moved {moved} of {len(rows)} "
                    f"samples ({left} left under the old name); run the rename again"
                )

    def _rows(self, filter_text: str, fields: list[str]) -> list[dict[str, Any]]:
        """Every row matching ``filter_text``: one query on Milvus Lite (which has no result
        size limit and whose iterator is about 7 times slower), a query iterator on a server
        (whose plain queries stop at 16384 rows)."""
        if not self._exists():
            return []
        with self._guard("reading"):
            if self.location.lite:
                found = self._client.query(
                    self._collection, filter=filter_text, output_fields=fields
                )
                return [dict(row) for row in found]
            rows: list[dict[str, Any]] = []
            iterator = self._client.query_iterator(
                self._collection, batch_size=INSERT_ROWS, filter=filter_text, output_fields=fields
            )
            try:
                while batch := iterator.next():
                    rows.extend(dict(row) for row in batch)
            finally:
                iterator.close()
        return rows

    def identities(self) -> list[tuple[str, int]]:
        """``(name, sample count)`` of every identity, by name (reads every row's name)."""
        counts = Counter(
            self._text(row.get("identity"), "identity name") for row in self._rows("", ["identity"])
        )
        return sorted(counts.items())

    def load(self, dim: int, since: Position | None = None) -> Snapshot:
        """Samples added after ``since`` (all when ``since`` is ``None`` or when anything
        but additions happened since), grouped by identity name, oldest first.

        ``Position.last_id`` is the largest ``seq`` read. Incremental reads are exact for one
        writer; with several writers whose clocks disagree, the count check below makes
        the read a full one.

        Raises:
            GalleryError: a stored value has the wrong type, or an embedding the wrong size,
                a non-finite value or not a unit norm.
        """
        if not self._exists():
            self._refresh_existence()
        if not self._exists():
            return Snapshot(
                True, np.empty((0, dim), np.float32), [], np.empty(0, np.int64), Position(0, 0, 0)
            )
        if dim != self._dim:
            raise GalleryError(
                f"{self.where}: the collection holds {self._dim}-d vectors, not {dim}"
            )
        generation, count = self._generation(), self._count()
        fields = ["identity", "seq", "embedding"]
        rows: list[dict[str, Any]] | None = None
        if since is not None and since.generation == generation:
            rows = self._rows(f"seq > {int(since.last_id)}", fields)
            if since.count + len(rows) != count:
                rows = None
        full = rows is None
        if rows is None:
            rows = self._rows("", fields)
            count = len(rows)
        keyed = sorted(
            (self._text(row.get("identity"), "identity name"), self._int(row.get("seq")), i)
            for i, row in enumerate(rows)
        )
        embeddings = self._matrix([rows[i] for _, _, i in keyed], [n for n, _, _ in keyed])
        names: list[str] = []
        owners = np.empty(len(keyed), dtype=np.int64)
        for position, (name, _, _) in enumerate(keyed):
            if not names or names[-1] != name:
                names.append(name)
            owners[position] = len(names) - 1
        last = max((seq for _, seq, _ in keyed), default=0)
        if since is not None and not full:
            last = max(last, since.last_id)
        return Snapshot(full, embeddings, names, owners, Position(last, generation, count))

    def _matrix(self, rows: Sequence[dict[str, Any]], names: Sequence[str]) -> np.ndarray:
        """The ``embedding`` of each row (of ``names[i]``) as ``(len(rows), D)`` float32.

        Raises:
            GalleryError: a vector of the wrong size or type, non-finite or not unit norm.
        """
        matrix = np.empty((len(rows), self._dim), dtype=np.float32)
        for position, (row, name) in enumerate(zip(rows, names, strict=True)):
            vector = row.get("embedding")
            if not isinstance(vector, (list, tuple, np.ndarray)) or len(vector) != self._dim:
                raise GalleryError(f"{self.where}: corrupt embedding of a sample of {name!r}")
            matrix[position] = vector
        _check_vectors(self.where, matrix)
        return matrix

    def embeddings(self, identity: str) -> np.ndarray:
        """``(n, D)`` float32 embeddings of ``identity``, oldest first (one filtered query:
        only this identity's vectors are read; ``(0, D)`` when it has none)."""
        rows = self._rows(f"identity == {_literal(identity)}", ["embedding", "seq"])
        rows.sort(key=lambda row: self._int(row.get("seq")))
        return self._matrix(rows, [identity] * len(rows))

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``, oldest first."""
        rows = self._rows(f"identity == {_literal(identity)}", _RECORD_FIELDS)
        rows.sort(key=lambda row: self._int(row.get("seq")))
        return [
            SampleRecord(
                identity,
                self._optional_text(row.get("source"), "source"),
                self._optional_text(row.get("content_sha256"), "content hash"),
                self._box(row.get("box")),
                self._number(row["score"], "score") if row.get("score") is not None else None,
                self._number(row.get("added"), "time added"),
            )
            for row in rows
        ]

    def meta(self, key: str) -> str | None:
        """A gallery property: ``schema_version``, ``embedder``, ``generation``,
        ``created``."""
        name = {"schema_version": "facekit.schema"}.get(key, f"facekit.{key}")
        if not self._exists():
            return None
        return self._properties().get(name)

    # --- server-side search ------------------------------------------------------------------

    def index_factory(self) -> IndexFactory:
        """How `Gallery` builds this store's index: a `MilvusIndex` (search runs in Milvus;
        the arrays given are only kept for the caller's own use and may be empty)."""
        factory: IndexFactory = functools.partial(MilvusIndex, self)
        return factory

    def index_for(self, names: Sequence[str]) -> MilvusIndex:
        """The search view over the identities ``names`` (sorted, as `identities` just
        returned them): holds no vectors, reads nothing."""
        empty = np.empty((0, self._dim), np.float32)
        return MilvusIndex(self, empty, np.empty(0, np.int64), len(names), names=names)

    def search_names(
        self, queries: np.ndarray, top_k: int = 1, aggregate: Aggregate = "max"
    ) -> list[list[tuple[str, float]]]:
        """The best ``top_k`` identities of each of ``(Q, D)`` unit ``queries``, best first,
        searched in Milvus.

        ``"max"``: one vector search grouped by identity (each identity's best sample: its
        score is that sample's exact inner product). ``"mean"``: the best
        ``max(32, 4 * top_k)`` identities by their best sample are shortlisted, then scored
        exactly by their normalised mean embedding, read from Milvus. An identity the HNSW
        search does not reach is missed, never over-scored.

        Raises:
            GalleryError: wrong query shape, non-finite queries, bad ``top_k`` or
                ``aggregate``, an empty gallery, or a server failure.
        """
        vectors = _float_matrix(queries, "queries")
        if not self._exists():
            raise GalleryError(f"{self.where}: the gallery is empty")
        if vectors.ndim != 2 or vectors.shape[1] != self._dim:
            raise GalleryError(f"queries must be (Q, {self._dim}), got {vectors.shape}")
        if not np.all(np.isfinite(vectors)):
            raise GalleryError("queries must be finite")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
            raise GalleryError(f"top_k must be a positive integer, got {top_k!r}")
        if aggregate not in ("max", "mean"):
            raise GalleryError(f"aggregate must be 'max' or 'mean', got {aggregate!r}")
        width = top_k if aggregate == "max" else max(_SHORTLIST, 4 * top_k)
        best = self._grouped_search(vectors, width)
        if aggregate == "mean":
            best = self._mean_rerank(vectors, best)
        if not all(best):
            raise GalleryError(f"{self.where}: the gallery is empty")
        return [hits[:top_k] for hits in best]

    def _grouped_search(self, vectors: np.ndarray, width: int) -> list[list[tuple[str, float]]]:
        found: list[list[tuple[str, float]]] = []
        for start in range(0, vectors.shape[0], _SEARCH_QUERIES):
            with self._guard("searching"):
                hits = self._client.search(
                    self._collection,
                    data=[v for v in vectors[start : start + _SEARCH_QUERIES]],
                    limit=width,
                    group_by_field="identity",
                    output_fields=["identity"],
                    search_params={"metric_type": "IP", "params": {"ef": max(64, 2 * width)}},
                )
            for per_query in hits:
                ranked = [
                    (self._text(hit["entity"]["identity"], "identity name"), float(hit["distance"]))
                    for hit in per_query
                ]
                ranked.sort(key=lambda pair: -pair[1])
                found.append(ranked)
        return found

    def _mean_rerank(
        self, vectors: np.ndarray, shortlists: list[list[tuple[str, float]]]
    ) -> list[list[tuple[str, float]]]:
        names = sorted({name for hits in shortlists for name, _ in hits})
        templates: dict[str, np.ndarray] = {}
        for start in range(0, len(names), _FILTER_VALUES):
            chunk = names[start : start + _FILTER_VALUES]
            sums: dict[str, np.ndarray] = {}
            for row in self._rows(f"identity in {_literals(chunk)}", ["identity", "embedding"]):
                name = self._text(row.get("identity"), "identity name")
                vector = np.asarray(row.get("embedding"), dtype=np.float32)
                sums[name] = sums[name] + vector if name in sums else vector.copy()
            for name, total in sums.items():
                templates[name] = total / max(float(np.linalg.norm(total)), 1e-12)
        ranked = []
        for query, hits in zip(vectors, shortlists, strict=True):
            scored = [
                (name, float(templates[name] @ query)) for name, _ in hits if name in templates
            ]
            scored.sort(key=lambda pair: -pair[1])
            ranked.append(scored)
        return ranked

    # --- checks of values read from the collection ---------------------------------------

    def _text(self, value: object, what: str) -> str:
        if not isinstance(value, str):
            raise GalleryError(f"{self.where}: malformed {what}: {value!r:.40}")
        return value

    def _optional_text(self, value: object, what: str) -> str | None:
        return None if value is None else self._text(value, what)

    def _int(self, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise GalleryError(f"{self.where}: malformed sequence number {value!r:.40}")
        return int(value)

    def _number(self, value: object, what: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
            raise GalleryError(f"{self.where}: malformed {what}: {value!r:.40}")
        return float(value)

    def _box(self, value: object) -> tuple[float, float, float, float] | None:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or len(value) != 4:
            raise GalleryError(f"{self.where}: malformed box: {value!r:.60}")
        x1, y1, x2, y2 = (self._number(v, "box") for v in value)
        return x1, y1, x2, y2


class MilvusIndex:
    """The `VectorIndex` view of a `MilvusStore`: `search` runs in Milvus (see
    `MilvusStore.search_names`); the arrays handed in (``embeddings``, ``owners``) are kept
    in an `ExactIndex` only for the caller's own reads and may be empty.

    Attributes:
        embeddings: ``(N, D)`` float32 vectors handed in (possibly none).
        owners: ``(N,)`` identity number of each row handed in.
        n_identities: identities in the store when the view was built.

    Identity numbers index ``names``, the sorted identity names the caller read (a `Gallery`
    passes the names of its refresh, so both agree), or those read from the store when the
    view is built; a hit for a name added since by another client is left out.
    """

    def __init__(
        self,
        store: MilvusStore,
        embeddings: np.ndarray,
        owners: np.ndarray,
        n_identities: int,
        *,
        names: Sequence[str] | None = None,
    ) -> None:
        self._store = store
        self._local = ExactIndex(embeddings, owners, n_identities)
        self.embeddings = self._local.embeddings
        self.owners = self._local.owners
        self._names = list(names) if names is not None else [n for n, _ in store.identities()]
        self._numbers = {name: number for number, name in enumerate(self._names)}
        self.n_identities = len(self._names)

    @property
    def dim(self) -> int:
        """Embedding dimension of the collection."""
        return self._store.dim

    def templates(self) -> np.ndarray:
        """``(I, D)`` templates of the arrays handed in."""
        return self._local.templates()

    def extended(
        self, remap: np.ndarray, n_identities: int, embeddings: np.ndarray, owners: np.ndarray
    ) -> MilvusIndex:
        """A fresh view (names re-read) with the rows added to the local arrays."""
        local = self._local.extended(remap, n_identities, embeddings, owners)
        return MilvusIndex(self._store, local.embeddings, local.owners, n_identities)

    def search(
        self, queries: np.ndarray, top_k: int = 1, aggregate: Aggregate = "max"
    ) -> SearchResult:
        """The ``top_k`` best identities for each of ``(Q, D)`` unit ``queries``, as
        `ExactIndex.search` returns them (``k`` = the fewest hits any query got, at most
        ``top_k``). Once the store is closed, the arrays handed in are searched exactly
        instead (what was read last, as for an SQLite gallery)."""
        if self._store.closed and self.embeddings.shape[0]:
            return self._local.search(queries, top_k, aggregate)
        k = max(1, min(top_k, len(self._names)))
        ranked = self._store.search_names(queries, max(k, 2), aggregate)
        known = [[(self._numbers[n], s) for n, s in hits if n in self._numbers] for hits in ranked]
        width = min(k, min(len(hits) for hits in known))
        if width == 0:
            raise GalleryError(f"{self._store.where}: the gallery changed during the search")
        identities = np.array([[i for i, _ in hits[:width]] for hits in known], dtype=np.int64)
        similarities = np.array([[s for _, s in hits[:width]] for hits in known], dtype=np.float32)
        runner_up = np.array(
            [hits[1][1] if len(hits) > 1 else -np.inf for hits in known], dtype=np.float32
        )
        return SearchResult(identities, similarities, runner_up)


def _float_matrix(values: object, what: str) -> np.ndarray:
    """``values`` as a float32 array.

    Raises:
        GalleryError: they are not numbers.
    """
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise GalleryError(f"{what} must be numbers ({exc})") from None


def _check_vectors(where: str, vectors: np.ndarray) -> None:
    """Finite unit vectors."""
    if vectors.size == 0:
        return
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
    if not np.all(np.isfinite(norms)):
        raise GalleryError(f"{where}: embeddings must be finite")
    if np.any(np.abs(norms - 1.0) >= _NORM_TOLERANCE):
        raise GalleryError(f"{where}: embeddings must be L2-normalised (unit vectors)")


def _lock_held(lock: Path) -> bool:
    """Whether another process holds Milvus Lite's advisory ``flock`` on ``lock`` (tried
    without blocking, released at once; where ``flock`` does not exist: whether the file
    exists)."""
    try:
        import fcntl
    except ImportError:  # Windows
        return lock.exists()
    try:
        descriptor = os.open(lock, os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


def _message(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:300]
