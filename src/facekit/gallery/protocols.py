"""What a gallery backend is: a `GalleryStore` (where samples live) and a `VectorIndex`
(how queries find identities), built by an `IndexFactory`.

`Gallery` uses only these; `SQLiteStore` + `ExactIndex` is the default pair, and a backend
that is both (a vector database) gives its own index through ``index_factory()``. Shapes:
``N`` samples, ``D`` dimensions, ``I`` identities, ``Q`` queries, ``k`` results per query.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

import numpy as np

from .binding import EmbedderInfo
from .index import Aggregate, SearchResult
from .store import Position, SampleRecord, Snapshot

__all__ = ["GalleryStore", "IndexFactory", "Position", "SampleRecord", "Snapshot", "VectorIndex"]


class VectorIndex(Protocol):
    """Identity-level search over unit vectors grouped by identity (`ExactIndex` is one).

    An approximate index finds candidate samples, then scores every sample of the
    candidate identities exactly, so the similarities it returns are exact cosines.

    Attributes:
        embeddings: ``(N, D)`` float32 unit vectors, each identity's rows contiguous.
        owners: ``(N,)`` int64 identity number of each row, non-decreasing.
        n_identities: ``I``, the number of identities.
    """

    embeddings: np.ndarray
    owners: np.ndarray
    n_identities: int

    @property
    def dim(self) -> int:
        """``D``."""
        ...

    def extended(
        self, remap: np.ndarray, n_identities: int, embeddings: np.ndarray, owners: np.ndarray
    ) -> VectorIndex:
        """This index with rows added: ``remap`` ``(I,)`` is the new number of each existing
        identity, ``embeddings`` ``(M, D)`` and ``owners`` ``(M,)`` (new numbering) the
        rows to add; ``n_identities`` the count afterwards."""
        ...

    def search(
        self, queries: np.ndarray, top_k: int = 1, aggregate: Aggregate = "max"
    ) -> SearchResult:
        """The ``top_k`` best identities for each of ``(Q, D)`` unit ``queries``."""
        ...


class IndexFactory(Protocol):
    """Builds a `VectorIndex` from a full snapshot (same arguments as `ExactIndex`)."""

    def __call__(
        self, embeddings: np.ndarray, owners: np.ndarray, n_identities: int
    ) -> VectorIndex: ...


@runtime_checkable
class GalleryStore(Protocol):
    """Where a gallery's binding and samples live. Every failure is a `GalleryError`.

    Attributes:
        where: how to name the gallery in messages (a path, a URI).
    """

    where: str

    def transaction(self) -> AbstractContextManager[None]:
        """Writes inside commit together, under the store's write lock; nested uses join."""
        ...

    def close(self) -> None:
        """Release the store (everything is saved already)."""
        ...

    def change_token(self) -> object:
        """A cheap value that differs (``!=``) after another writer changed the store."""
        ...

    def embedder(self) -> EmbedderInfo | None:
        """The binding, ``None`` until the first sample."""
        ...

    def bind(self, info: EmbedderInfo) -> None:
        """Record the binding (inside a transaction)."""
        ...

    def add_many(
        self,
        identities: Sequence[str],
        embeddings: np.ndarray,
        sources: Sequence[str | None],
        content_sha256: Sequence[str | None],
        boxes: Sequence[tuple[float, float, float, float] | None],
        scores: Sequence[float | None],
    ) -> int:
        """Store ``(N, D)`` float32 unit ``embeddings``, row ``i`` for ``identities[i]``
        (every column has ``N`` entries), skipping content hashes stored already or
        repeated; returns how many were stored."""
        ...

    def known_content(self, hashes: Sequence[str]) -> set[str]:
        """Which of these content hashes are stored."""
        ...

    def remove(self, identity: str) -> int:
        """Delete an identity and its samples; returns how many samples went."""
        ...

    def rename(self, old: str, new: str) -> None:
        """Rename an identity (`GalleryError` when ``old`` is unknown or ``new`` taken)."""
        ...

    def identities(self) -> list[tuple[str, int]]:
        """``(name, sample count)`` per identity, by name."""
        ...

    def load(self, dim: int, since: Position | None = None) -> Snapshot:
        """``D = dim`` samples added after ``since``, or all (``full``) when ``since`` is
        ``None`` or something other than additions changed."""
        ...

    def samples(self, identity: str) -> list[SampleRecord]:
        """Metadata of the samples of ``identity``, oldest first."""
        ...
