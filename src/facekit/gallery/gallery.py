"""``Gallery``: enrolled identities, their embeddings, and search."""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from ..errors import ConfigError, GalleryError
from .backends import IndexName, index_factory, open_store, save_grown, searching_store
from .binding import EmbedderInfo
from .index import Aggregate, ExactIndex
from .protocols import VectorIndex
from .store import Position, SampleRecord, Snapshot, SQLiteStore

__all__ = ["Gallery", "Identification"]

_STALE = object()
"""A change token no store returns: the in-memory index must be refreshed."""


@dataclass(frozen=True, slots=True)
class Identification:
    """Search result for one query embedding (see `FaceMatch` for a detected face).

    Attributes:
        identity: best identity, or ``None`` when below the threshold.
        similarity: the best identity's similarity.
        margin: best minus runner-up similarity (``inf`` with a single identity).
        candidates: ``top_k`` ``(identity, similarity)`` pairs, best first.
    """

    identity: str | None
    similarity: float
    margin: float
    candidates: tuple[tuple[str, float], ...]


class Gallery:
    """Enrolled identities with their embeddings, bound to the embedder that made them.

    Args:
        location: where the gallery lives (created if missing): ``None`` for in memory, a
            file path (SQLite), ``"milvus-lite:///abs/path/faces.db"`` (Milvus Lite, a local
            folder) or ``"milvus://host:19530/collection"`` (a Milvus server).
        embedder: the binding of the embedder that will add or query embeddings; if the
            gallery is bound to another embedder, opening fails. ``None`` accepts the
            gallery's binding.
        create: create the gallery when it does not exist.
        index: how to search: ``"exact"``, ``"hnsw"``, ``"ivf"`` (faiss, ``facekit[ann]``)
            or ``"auto"`` (exact below `AUTO_ANN_SAMPLES` samples, HNSW above). A store
            with its own index (Milvus) takes only ``"auto"``.

    A file gallery keeps every vector in memory for its index. A gallery on a store with its
    own index (Milvus) keeps only identity names and counts: it searches in the store and
    reads vectors only for `embeddings` of one identity.

    Raises:
        GalleryError: malformed gallery, newer schema, or another embedder.
        ConfigError: unknown URI scheme or index name, or an index the store cannot use.
        BackendError: ``"hnsw"`` / ``"ivf"`` without faiss installed.
    """

    def __init__(
        self,
        location: str | os.PathLike[str] | None = None,
        *,
        embedder: EmbedderInfo | None = None,
        create: bool = True,
        index: IndexName = "auto",
    ) -> None:
        self._store = open_store(location, create=create)
        self.path: Path | None = self._store.path if isinstance(self._store, SQLiteStore) else None
        self._own = searching_store(self._store)  # searches itself: no vectors read to search
        try:
            self._build_index = index_factory(self._store, index)
            stored = self._store.embedder()
            if stored is not None and embedder is not None:
                self._refuse_other(stored, embedder, "made by another embedder")
            if stored is None and embedder is not None and create:
                stored = self._bind(embedder)
            self.embedder: EmbedderInfo | None = stored or embedder
            self._position: Position | None = None
            self._closed = False
            self._grown = False  # samples merged into the index since it was built or loaded
            self._seen_token: object = _STALE
            self._cached_index: VectorIndex = ExactIndex(
                np.empty((0, 0), np.float32), np.empty(0), 0
            )
            self._cached_names: list[str] = []
            self._cached_counts: list[tuple[str, int]] = []  # kept for a searching store only
            self._refresh()
        except BaseException:  # a bad index name, another embedder, no faiss, ...
            self._store.close()
            raise

    @property
    def _where(self) -> str:
        return self._store.where

    def _refuse_other(self, stored: EmbedderInfo, embedder: EmbedderInfo, what: str) -> None:
        differences = stored.differences(embedder)
        if differences:
            raise GalleryError(
                f"{self._where}: {what} ({'; '.join(differences)}); open it with the embedder "
                "that made it, or enrol into a new gallery"
            )

    def _bind(self, embedder: EmbedderInfo) -> EmbedderInfo:
        """Bind the file to ``embedder`` unless it is bound (checked under the write lock,
        inside the caller's transaction or a new one); returns the binding."""
        with self._store.transaction():
            stored = self._store.embedder()
            if stored is None:
                self._store.bind(embedder)
                return embedder
            self._refuse_other(stored, embedder, "made by another embedder")
            return stored

    def _refresh(self) -> None:
        """Bring the in-memory index up to date with the store: a no-op (one cheap
        `change_token`, SQLite's ``PRAGMA data_version``) when nothing changed; otherwise
        reads only the samples added since (everything after a removal or rename). A
        searching store gives its identities and counts instead (no vectors)."""
        if self._closed:
            return
        token = self._store.change_token()
        if token == self._seen_token:
            return
        if self.embedder is None:
            self.embedder = self._store.embedder()
        if self._own is not None:
            self._cached_counts = self._store.identities()
            self._cached_names = [name for name, _ in self._cached_counts]
            self._cached_index = self._own.index_for(self._cached_names)
        else:
            self._load()
        self._seen_token = token

    def _load(self) -> None:
        """Read the samples added since the last load (all of them after anything else
        changed) into the index."""
        dim = self.embedder.dim if self.embedder is not None else 0
        same_dim = self._cached_index.embeddings.shape[1] == dim
        snapshot = self._store.load(dim, self._position if same_dim else None)
        if snapshot.full:
            self._cached_names = snapshot.names
            self._cached_index = self._build_index(
                snapshot.embeddings, snapshot.owners, len(snapshot.names)
            )
            self._grown = False
        elif snapshot.names:
            self._merge(snapshot)
        self._position = snapshot.position

    def _merge(self, snapshot: Snapshot) -> None:
        """Add the samples of an incremental snapshot to the index (one copy)."""
        names = self._cached_names
        fresh = [name for name in snapshot.names if not _holds(names, name)]
        merged = sorted([*names, *fresh]) if fresh else names  # two sorted runs: linear
        points = np.array([bisect.bisect_left(names, name) for name in fresh], dtype=np.int64)
        shift = np.searchsorted(points, np.arange(len(names)), side="right")
        remap = np.arange(len(names), dtype=np.int64) + shift
        numbers = np.array([bisect.bisect_left(merged, n) for n in snapshot.names], np.int64)
        self._cached_index = self._cached_index.extended(
            remap, len(merged), snapshot.embeddings, numbers[snapshot.owners]
        )
        self._cached_names = merged
        self._grown = True

    @property
    def _index(self) -> VectorIndex:
        self._refresh()
        return self._cached_index

    @property
    def _names(self) -> list[str]:
        self._refresh()
        return self._cached_names

    def __repr__(self) -> str:
        return (
            f"Gallery({self._where!r}, identities={len(self)}, samples={self.num_samples}, "
            f"embedder={self.embedder.name if self.embedder else None!r})"
        )

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, identity: object) -> bool:
        return isinstance(identity, str) and _holds(self._names, identity)

    def __enter__(self) -> Gallery:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (every change is already saved; a faiss index that grew in this
        session is saved beside the file). `search` keeps working on what was read last,
        except on a store that searches itself (Milvus): there it is a `GalleryError`."""
        if self._grown and not self._closed:
            save_grown(self._store, self._cached_index)
        self._closed = True
        self._store.close()

    @property
    def num_samples(self) -> int:
        """Number of stored embeddings."""
        self._refresh()
        if self._own is not None:
            return sum(count for _, count in self._cached_counts)
        return int(self._cached_index.embeddings.shape[0])

    def identities(self) -> list[str]:
        """Names of the enrolled identities, sorted."""
        return list(self._names)

    def counts(self) -> dict[str, int]:
        """Samples per identity."""
        if self._own is not None:
            self._refresh()
            return dict(self._cached_counts)
        return dict(self._store.identities())

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``."""
        self._require(identity)
        return self._store.samples(identity)

    def embeddings(self, identity: str) -> np.ndarray:
        """``(n, D)`` stored embeddings of ``identity``."""
        index = self._require(identity)
        if self._own is not None:
            return self._own.embeddings(identity)
        rows: np.ndarray = self._index.embeddings[self._index.owners == index].copy()
        return rows

    def has_content(self, content_sha256: str) -> bool:
        """Whether an input with this content hash was enrolled already."""
        return bool(self._store.known_content([content_sha256]))

    def known_content(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes were enrolled already."""
        return self._store.known_content(list(hashes))

    def add(
        self,
        identity: str,
        embeddings: np.ndarray,
        *,
        embedder: EmbedderInfo | None = None,
        sources: Sequence[str | None] | None = None,
        content_sha256: Sequence[str | None] | None = None,
        boxes: Sequence[tuple[float, float, float, float] | None] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> int:
        """Add ``(n, D)`` (or ``(D,)``) unit embeddings for ``identity`` in one transaction.

        Embeddings whose ``content_sha256`` is in the gallery already, or repeated within
        this call, are skipped; the check and the insert happen under the store's write
        lock, so two processes adding the same content store it once.

        Args:
            embedder: binding of the embedder that made them; required for the first
                embeddings of an unbound gallery, checked against the binding otherwise.
            sources: per embedding, the file or label it came from. Text that is not valid
                UTF-8 (undecodable bytes of a file name) is stored with those bytes written
                as ``\\xNN``.
            content_sha256: per embedding, the hash of its input (for resuming).
            boxes: per embedding, the face box in its image.
            scores: per embedding, the detector score.

        Returns:
            The number of embeddings actually added.

        Raises:
            GalleryError: invalid identity name (empty, only whitespace, or not valid text,
                e.g. from an undecodable file name), another embedder, wrong dimension,
                non-unit vectors, or the gallery cannot be written (read-only, ...).
        """
        _check_name(identity)
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        return self.add_many(
            [identity] * vectors.shape[0],
            vectors,
            embedder=embedder,
            sources=sources,
            content_sha256=content_sha256,
            boxes=boxes,
            scores=scores,
        )

    def add_many(
        self,
        identities: Sequence[str],
        embeddings: np.ndarray,
        *,
        embedder: EmbedderInfo | None = None,
        sources: Sequence[str | None] | None = None,
        content_sha256: Sequence[str | None] | None = None,
        boxes: Sequence[tuple[float, float, float, float] | None] | None = None,
        scores: Sequence[float | None] | None = None,
    ) -> int:
        """Add ``(N, D)`` unit embeddings, row ``i`` for ``identities[i]``, in ONE
        transaction: the bulk form of `add` (same checks, same skipping of known content),
        for many identities at once.

        Args:
            identities: ``N`` identity names (repeats allowed).
            embeddings: ``(N, D)`` float32 unit vectors.
            embedder: as for `add`.
            sources: as for `add`, ``N`` entries.
            content_sha256: as for `add`, ``N`` entries.
            boxes: as for `add`, ``N`` entries.
            scores: as for `add`, ``N`` entries.

        Returns:
            The number of embeddings actually added.

        Raises:
            GalleryError: as `add`; nothing is added when any row is invalid.
        """
        names = list(identities)
        for name in names:
            _check_name(name)
        vectors = np.asarray(embeddings, dtype=np.float32)
        count = len(names)
        binding = self._check_binding(embedder, vectors)
        if vectors.shape[0] != count:
            raise GalleryError(f"{count} identities for {vectors.shape[0]} embeddings")
        if not np.all(np.isfinite(vectors)):
            raise GalleryError("embeddings must be finite")
        norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors))
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            raise GalleryError("embeddings must be L2-normalised (unit vectors)")
        columns: dict[str, Sequence[object] | None] = {
            "sources": sources,
            "content_sha256": content_sha256,
            "boxes": boxes,
            "scores": scores,
        }
        for column_name, column in columns.items():
            if column is not None and len(column) != count:
                raise GalleryError(
                    f"{column_name} has {len(column)} entries for {count} embeddings"
                )
        none: list[None] = [None] * count
        with self._store.transaction():
            stored = self._bind(binding)
            added = self._store.add_many(
                names,
                vectors,
                list(sources) if sources is not None else none,
                list(content_sha256) if content_sha256 is not None else none,
                list(boxes) if boxes is not None else none,
                list(scores) if scores is not None else none,
            )
        self.embedder = stored
        self._seen_token = _STALE  # read the new rows (only those) when next needed
        return added

    def _check_binding(self, embedder: EmbedderInfo | None, vectors: np.ndarray) -> EmbedderInfo:
        if self.embedder is not None:
            if embedder is not None and self.embedder.differences(embedder):
                raise GalleryError(
                    f"{self._where}: embeddings from another embedder "
                    f"({'; '.join(self.embedder.differences(embedder))})"
                )
            binding = self.embedder
        elif embedder is None:
            raise GalleryError("the gallery is not bound to an embedder yet: pass embedder=")
        else:
            binding = embedder
        if vectors.ndim != 2 or vectors.shape[1] != binding.dim:
            raise GalleryError(
                f"embeddings must be (n, {binding.dim}) for {binding.name}, got {vectors.shape}"
            )
        return binding

    def remove(self, identity: str) -> int:
        """Remove ``identity`` and its samples; returns the number of samples removed."""
        self._require(identity)
        with self._store.transaction():
            removed = self._store.remove(identity)
        self._seen_token = _STALE
        return removed

    def rename(self, old: str, new: str) -> None:
        """Rename an identity.

        Raises:
            GalleryError: ``old`` is unknown or ``new`` is taken.
        """
        self._require(old)
        _check_name(new)
        if _holds(self._names, new):
            raise GalleryError(f"{new!r} is already enrolled; remove it or pick another name")
        with self._store.transaction():  # checked again under the lock: another process
            self._store.rename(old, new)
        self._seen_token = _STALE

    def _require(self, identity: str) -> int:
        names = self._names
        if not _holds(names, identity):
            raise GalleryError(f"{identity!r} is not enrolled in {self._where}")
        return bisect.bisect_left(names, identity)

    def search(
        self,
        queries: np.ndarray,
        *,
        threshold: float,
        top_k: int = 1,
        aggregate: Aggregate = "max",
    ) -> list[Identification]:
        """Identify each of ``(Q, D)`` unit query embeddings.

        An identity's score is its best sample's cosine similarity (``aggregate="max"``) or
        its mean template's (``"mean"``). The best identity is returned when its score is at
        least ``threshold``, else ``identity`` is ``None``. All queries are scored with
        blocked matrix products: no Python loop per pair.
        """
        if top_k < 1:
            raise ConfigError(f"top_k must be at least 1, got {top_k}")
        vectors = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self.embedder is not None and vectors.shape[1] != self.embedder.dim:
            raise GalleryError(
                f"queries are {vectors.shape[1]}-d but the gallery holds "
                f"{self.embedder.dim}-d {self.embedder.name} embeddings"
            )
        if len(self) == 0:
            return [Identification(None, -1.0, float("inf"), ()) for _ in vectors]
        found = self._index.search(vectors, top_k, aggregate)
        results = []
        for ids, sims, second in zip(
            found.identities.tolist(),
            found.similarities.tolist(),
            found.runner_up.tolist(),
            strict=True,
        ):
            best = sims[0]
            results.append(
                Identification(
                    identity=self._names[ids[0]] if best >= threshold else None,
                    similarity=best,
                    margin=best - second if np.isfinite(second) else float("inf"),
                    candidates=tuple((self._names[i], s) for i, s in zip(ids, sims, strict=True)),
                )
            )
        return results


def _holds(names: list[str], name: str) -> bool:
    """Whether the sorted list ``names`` holds ``name``."""
    at = bisect.bisect_left(names, name)
    return at < len(names) and names[at] == name


def _check_name(identity: object) -> None:
    """Identity names are non-blank valid text (storable as UTF-8).

    Raises:
        GalleryError: the name is not a str, is empty or only whitespace, or holds lone
            surrogates (an undecodable file or folder name).
    """
    if not isinstance(identity, str) or not identity.strip():
        raise GalleryError(
            f"invalid identity name {identity!r}: it must be a non-empty string, not only "
            "whitespace"
        )
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        raise GalleryError(
            f"invalid identity name {identity!r}: it is not valid text (an undecodable file "
            "or folder name?); rename it"
        ) from None
