"""``Gallery``: enrolled identities, their embeddings, and search."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from ..errors import ConfigError, GalleryError
from .binding import EmbedderInfo
from .index import Aggregate, ExactIndex
from .store import SampleRecord, Store

__all__ = ["Gallery", "Identification"]


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
        path: the gallery file (created if missing), or ``None`` for an in-memory gallery.
        embedder: the binding of the embedder that will add or query embeddings; if the file
            is bound to another embedder, opening fails. ``None`` accepts the file's binding.
        create: create the file when it does not exist.

    Raises:
        GalleryError: malformed file, newer schema, or another embedder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        embedder: EmbedderInfo | None = None,
        create: bool = True,
    ) -> None:
        self._store = Store(path, create=create)
        self.path: Path | None = self._store.path
        try:
            stored = self._store.embedder()
            if stored is not None and embedder is not None:
                differences = stored.differences(embedder)
                if differences:
                    raise GalleryError(
                        f"{self._where}: made by another embedder ({'; '.join(differences)}); "
                        "open it with the embedder that made it, or enrol into a new gallery"
                    )
            if stored is None and embedder is not None:
                with self._store.transaction():
                    self._store.bind(embedder)
            self.embedder: EmbedderInfo | None = stored or embedder
            self._load()
        except sqlite3.DatabaseError as exc:
            self._store.close()
            raise GalleryError(f"{self._where}: corrupt gallery file ({exc})") from None
        except GalleryError:
            self._store.close()
            raise

    @property
    def _where(self) -> str:
        return str(self.path) if self.path is not None else "in-memory gallery"

    def _load(self) -> None:
        """Read all embeddings into the search index."""
        dim = self.embedder.dim if self.embedder is not None else 0
        embeddings, self._cached_names, owners = self._store.load(dim)
        self._cached_index = ExactIndex(embeddings, owners, len(self._cached_names))
        self._stale = False

    @property
    def _index(self) -> ExactIndex:
        # Changes mark the index stale; it is re-read once, when next needed, so a long
        # enrolment does not re-read the gallery after every image.
        if self._stale:
            self._load()
        return self._cached_index

    @property
    def _names(self) -> list[str]:
        if self._stale:
            self._load()
        return self._cached_names

    def __repr__(self) -> str:
        return (
            f"Gallery({self._where!r}, identities={len(self)}, samples={self.num_samples}, "
            f"embedder={self.embedder.name if self.embedder else None!r})"
        )

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, identity: object) -> bool:
        return identity in self._names

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
        """Close the file (every change is already saved)."""
        self._store.close()

    @property
    def num_samples(self) -> int:
        """Number of stored embeddings."""
        return int(self._index.embeddings.shape[0])

    def identities(self) -> list[str]:
        """Names of the enrolled identities, sorted."""
        return list(self._names)

    def counts(self) -> dict[str, int]:
        """Samples per identity."""
        return dict(self._store.identities())

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``."""
        self._require(identity)
        return self._store.samples(identity)

    def embeddings(self, identity: str) -> np.ndarray:
        """``(n, D)`` stored embeddings of ``identity``."""
        index = self._require(identity)
        rows: np.ndarray = self._index.embeddings[self._index.owners == index].copy()
        return rows

    def has_content(self, content_sha256: str) -> bool:
        """Whether an input with this content hash was enrolled already."""
        return self._store.has_content(content_sha256)

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
    ) -> None:
        """Add ``(n, D)`` (or ``(D,)``) unit embeddings for ``identity`` in one transaction.

        Args:
            embedder: binding of the embedder that made them; required for the first
                embeddings of an unbound gallery, checked against the binding otherwise.
            sources: per embedding, the file or label it came from.
            content_sha256: per embedding, the hash of its input (for resuming).
            boxes: per embedding, the face box in its image.
            scores: per embedding, the detector score.

        Raises:
            GalleryError: another embedder, wrong dimension, or non-unit vectors.
        """
        if not isinstance(identity, str) or not identity.strip():
            raise GalleryError(f"identity must be a non-empty string, got {identity!r}")
        vectors = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        count = vectors.shape[0]
        binding = self._check_binding(embedder, vectors)
        norms = np.linalg.norm(vectors, axis=1)
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            raise GalleryError("embeddings must be L2-normalised (unit vectors)")
        none: list[None] = [None] * count
        with self._store.transaction():
            if self.embedder is None:
                self._store.bind(binding)
            self._store.add_samples(
                identity,
                vectors,
                list(sources) if sources is not None else none,
                list(content_sha256) if content_sha256 is not None else none,
                list(boxes) if boxes is not None else none,
                list(scores) if scores is not None else none,
            )
        self.embedder = binding
        self._stale = True

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
        self._stale = True
        return removed

    def rename(self, old: str, new: str) -> None:
        """Rename an identity.

        Raises:
            GalleryError: ``old`` is unknown or ``new`` is taken.
        """
        self._require(old)
        if not new.strip():
            raise GalleryError("the new name must not be empty")
        if new in self._names:
            raise GalleryError(f"{new!r} is already enrolled; remove it or pick another name")
        with self._store.transaction():
            self._store.rename(old, new)
        self._stale = True

    def _require(self, identity: str) -> int:
        try:
            return self._names.index(identity)
        except ValueError:
            raise GalleryError(f"{identity!r} is not enrolled in {self._where}") from None

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
