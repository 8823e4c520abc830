"""Exact nearest-identity search: one matrix product per block of queries, no loop per pair.

Samples are kept grouped by identity, so each identity's best sample is a
``np.maximum.reduceat`` over the similarity row; the mean-template mode compares against
one normalised mean vector per identity instead. Queries are processed in blocks sized so
that all temporaries of a block (similarities, identity scores, partial-sort indices) stay
under `BLOCK_BYTES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import ConfigError

__all__ = ["BLOCK_BYTES", "Aggregate", "ExactIndex", "SearchResult", "checked_queries"]

Aggregate = Literal["max", "mean"]
"""How an identity is scored from its samples: ``"max"`` = its best sample (default),
``"mean"`` = its normalised mean embedding (template)."""

BLOCK_BYTES = 1 << 27
"""Bound on the temporaries of one block of queries in `ExactIndex.search`: 128 MiB."""


@dataclass(frozen=True, slots=True)
class SearchResult:
    """Top identities per query.

    Attributes:
        identities: ``(Q, k)`` int indices into the index's names, best first.
        similarities: ``(Q, k)`` float32 cosine similarities.
        runner_up: ``(Q,)`` float32 similarity of the second-best identity (``-inf`` when
            there is only one identity).
    """

    identities: np.ndarray
    similarities: np.ndarray
    runner_up: np.ndarray


class ExactIndex:
    """Brute-force cosine search over unit vectors grouped by identity.

    Args:
        embeddings: ``(N, D)`` float32 unit vectors, grouped so that each identity's rows
            are contiguous.
        owners: ``(N,)`` identity index of each row, non-decreasing, covering
            ``0 .. n_identities - 1``.
        n_identities: number of identities.
    """

    def __init__(self, embeddings: np.ndarray, owners: np.ndarray, n_identities: int) -> None:
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.owners = np.asarray(owners, dtype=np.int64)
        if self.owners.size and np.any(np.diff(self.owners) < 0):
            raise ConfigError("samples must be grouped by identity")
        self.n_identities = n_identities
        # First row of each identity, for reduceat.
        self._starts = np.searchsorted(self.owners, np.arange(n_identities))
        self._templates: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return int(self.embeddings.shape[1])

    def templates(self) -> np.ndarray:
        """``(I, D)`` normalised mean embedding per identity (computed once, kept: one more
        ``I x D`` float32 array)."""
        if self._templates is None:
            sums = np.add.reduceat(self.embeddings, self._starts, axis=0)
            sums /= np.maximum(np.sqrt(np.einsum("ij,ij->i", sums, sums)), 1e-12)[:, None]
            self._templates = sums
        return self._templates

    def extended(
        self, remap: np.ndarray, n_identities: int, embeddings: np.ndarray, owners: np.ndarray
    ) -> ExactIndex:
        """This index with rows added, in one copy.

        Args:
            remap: ``(I,)`` increasing new number of each of this index's identities.
            n_identities: number of identities afterwards.
            embeddings: ``(M, D)`` float32 unit vectors to add; each goes after the existing
                rows of its identity, in the given order.
            owners: ``(M,)`` their identity numbers (new numbering).
        """
        old = remap[self.owners] if self.owners.size else self.owners
        order = np.argsort(owners, kind="stable")
        added = owners[order]
        at = np.searchsorted(old, added, side="right")
        return ExactIndex(
            np.insert(self.embeddings, at, embeddings[order], axis=0),
            np.insert(old, at, added),
            n_identities,
        )

    def search(
        self, queries: np.ndarray, top_k: int = 1, aggregate: Aggregate = "max"
    ) -> SearchResult:
        """The ``top_k`` best identities for each of ``(Q, D)`` unit ``queries``."""
        queries = checked_queries(queries, self.dim, aggregate, self.n_identities)
        k = max(1, min(top_k, self.n_identities))
        if queries.shape[0] == 0:
            return SearchResult(
                np.empty((0, k), np.int64), np.empty((0, k), np.float32), np.empty(0, np.float32)
            )
        per_block = max(1, BLOCK_BYTES // self.bytes_per_query(aggregate))
        ids, sims, runner = [], [], []
        for start in range(0, queries.shape[0], per_block):
            scores = self._identity_scores(queries[start : start + per_block], aggregate)
            top, top_scores, second = _top(scores, max(k, 2))
            ids.append(top[:, :k])
            sims.append(top_scores[:, :k])
            runner.append(second)
            del scores  # not alive while the next block's are computed
        return SearchResult(np.concatenate(ids), np.concatenate(sims), np.concatenate(runner))

    def bytes_per_query(self, aggregate: Aggregate = "max") -> int:
        """Bytes of temporaries one query needs during `search`: its similarity row
        (4 bytes per sample, ``"max"`` only), its identity scores (4 per identity) and the
        partial sort's indices (8 per identity)."""
        samples = self.embeddings.shape[0] if aggregate == "max" else 0
        return max(1, 4 * samples + 12 * self.n_identities)

    def _identity_scores(self, queries: np.ndarray, aggregate: Aggregate) -> np.ndarray:
        if aggregate == "mean":
            template_scores: np.ndarray = queries @ self.templates().T
            return template_scores
        similarities: np.ndarray = queries @ self.embeddings.T
        if self.n_identities == self.embeddings.shape[0]:  # one sample each: nothing to reduce
            return similarities
        best: np.ndarray = np.maximum.reduceat(similarities, self._starts, axis=1)
        return best


def checked_queries(
    queries: np.ndarray, dim: int, aggregate: Aggregate, n_identities: int
) -> np.ndarray:
    """``queries`` as contiguous ``(Q, dim)`` float32, checked for a search.

    Raises:
        ConfigError: queries not ``(Q, dim)``, an unknown ``aggregate``, or no identity.
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise ConfigError(f"queries must be (Q, {dim}), got {queries.shape}")
    if aggregate not in ("max", "mean"):
        raise ConfigError(f"aggregate must be 'max' or 'mean', got {aggregate!r}")
    if n_identities == 0:
        raise ConfigError("the gallery is empty")
    return queries


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices and values of the ``k`` largest per row, sorted; plus the second best."""
    count = scores.shape[1]
    if k < count:  # the k largest without negating (copying) the scores
        part = np.argpartition(scores, count - k, axis=1)[:, count - k :]
    else:
        part = np.broadcast_to(np.arange(count), (scores.shape[0], count))
    values = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    top = np.take_along_axis(part, order, axis=1)
    top_values = np.take_along_axis(values, order, axis=1)
    second = top_values[:, 1] if count > 1 else np.full(scores.shape[0], -np.inf, np.float32)
    return top, top_values.astype(np.float32), second.astype(np.float32)
