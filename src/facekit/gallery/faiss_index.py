"""Approximate nearest-identity search with faiss, re-ranked exactly.

`FaissIndex` has the interface of `ExactIndex`. A faiss index over the samples (HNSW graph
or IVF lists, inner product on unit vectors) proposes a shortlist of samples per query;
their identities become the candidates, and every sample of every candidate is then
scored exactly, the same way `ExactIndex` scores it (``"max"``: best sample, ``"mean"``:
normalised mean template). The similarities returned are therefore exact cosines; an
identity the shortlist did not reach can be missed, never over-scored, so an "unknown"
decision never turns into a false match. The runner-up is the best *candidate* after the
top one, so it can be lower than the true runner-up (the margin then looks larger).

faiss is imported lazily (``pip install 'facekit[ann]'``). Its OpenMP thread count is
process-global; facekit never changes it: set ``OMP_NUM_THREADS`` or call
``faiss.omp_set_num_threads`` in the application if needed. One query runs on one thread;
a batch of queries is spread over the OpenMP threads.

The faiss index can be saved beside the gallery (`FaissIndex.save`) and loaded back
(`FaissIndex.load`), which returns ``None`` for anything it cannot trust, so the caller
rebuilds.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any, Literal

import numpy as np

from .._atomic import replacing
from ..errors import BackendError, ConfigError
from .index import Aggregate, ExactIndex, SearchResult, _top, checked_queries

__all__ = ["FaissIndex", "IndexKind"]

IndexKind = Literal["hnsw", "ivf"]
"""``"hnsw"``: graph index, incremental adds, best latency; ``"ivf"``: inverted lists
(k-means cells), faster to build, needs training data."""

_FORMAT = 1
"""Version of the file layout written by `FaissIndex.save`."""

_IVF_TRAIN_PER_LIST = 40
"""Training vectors per IVF list (faiss warns below 39)."""

_IVF_REGROW = 4
"""An IVF index is retrained once the gallery has grown to this many times the size it
was trained on (its lists would otherwise grow long and slow)."""


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError:
        raise BackendError("approximate search needs faiss: pip install 'facekit[ann]'") from None
    return faiss


def _default_nlist(count: int) -> int:
    """IVF list count for ``count`` samples: about ``4 * sqrt(count)``, but never fewer than
    `_IVF_TRAIN_PER_LIST` training vectors per list (1 list = a flat scan)."""
    return max(1, min(int(4 * np.sqrt(count)), count // _IVF_TRAIN_PER_LIST))


class FaissIndex:
    """Identity search over unit vectors grouped by identity, shortlisted by faiss.

    Args:
        embeddings: ``(N, D)`` float32 unit vectors, each identity's rows contiguous.
        owners: ``(N,)`` identity index of each row, non-decreasing, covering
            ``0 .. n_identities - 1``.
        n_identities: number of identities.
        kind: ``"hnsw"`` or ``"ivf"``.
        m: HNSW neighbours per node (memory: ``8 * m`` bytes per sample on top of the vector).
        ef_construction: HNSW build depth (build time grows with it).
        ef_search: HNSW search depth (at least the shortlist is used).
        nlist: IVF list count; ``None`` = about ``4 * sqrt(N)`` (capped so that every list
            has 40 training vectors).
        nprobe: IVF lists visited per query.
        shortlist: samples the faiss index proposes per query (at least ``8 * top_k``).
        rerank: identities re-scored exactly per query (at least ``2 * top_k``): those of the
            shortlist's best samples, in order of their best sample; every sample of each is
            scored, so an identity whose best sample the shortlist missed still gets its
            exact score.

    Raises:
        ConfigError: bad parameters, or rows not grouped by identity.
        BackendError: faiss is not installed.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        owners: np.ndarray,
        n_identities: int,
        *,
        kind: IndexKind = "hnsw",
        m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 64,
        shortlist: int = 64,
        rerank: int = 16,
    ) -> None:
        self._setup(
            ExactIndex(embeddings, owners, n_identities),
            dict(
                kind=kind,
                m=m,
                ef_construction=ef_construction,
                ef_search=ef_search,
                nlist=nlist,
                nprobe=nprobe,
                shortlist=shortlist,
                rerank=rerank,
            ),
        )
        self._ann: Any = self._build()
        self._id_of_row = np.arange(self._count, dtype=np.int64)
        self._row_of_id = self._id_of_row
        self._trained_on = self._count

    def _setup(self, exact: ExactIndex, params: dict[str, Any]) -> None:
        """Check ``params`` and keep the exact data (shared with `ExactIndex`)."""
        if params["kind"] not in ("hnsw", "ivf"):
            raise ConfigError(f"kind must be 'hnsw' or 'ivf', got {params['kind']!r}")
        for name in ("m", "ef_construction", "ef_search", "nprobe", "shortlist", "rerank"):
            value = params[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive int, got {value!r}")
        nlist = params["nlist"]
        if nlist is not None and (isinstance(nlist, bool) or not isinstance(nlist, int)):
            raise ConfigError(f"nlist must be a positive int or None, got {nlist!r}")
        if nlist is not None and not 1 <= nlist <= max(1, exact.embeddings.shape[0]):
            raise ConfigError(
                f"nlist must be between 1 and the sample count "
                f"{exact.embeddings.shape[0]}, got {nlist}"
            )
        self._params = params
        self._exact = exact
        self.embeddings = exact.embeddings
        self.owners = exact.owners
        self.n_identities = exact.n_identities
        self._count = int(exact.embeddings.shape[0])
        bounds = np.searchsorted(exact.owners, np.arange(exact.n_identities + 1))
        self._starts = bounds[:-1]
        self._lengths = np.diff(bounds)

    @property
    def dim(self) -> int:
        """Embedding dimension."""
        return self._exact.dim

    @property
    def kind(self) -> IndexKind:
        """``"hnsw"`` or ``"ivf"``."""
        kind: IndexKind = self._params["kind"]
        return kind

    def templates(self) -> np.ndarray:
        """``(I, D)`` normalised mean embedding per identity (as `ExactIndex.templates`)."""
        return self._exact.templates()

    def _build(self) -> Any:
        """A faiss index over all rows (faiss id = row), or ``None`` for an empty gallery."""
        if self._count == 0:
            return None
        faiss = _faiss()
        if self.kind == "hnsw":
            ann = faiss.IndexHNSWFlat(self.dim, self._params["m"], faiss.METRIC_INNER_PRODUCT)
            ann.hnsw.efConstruction = self._params["ef_construction"]
        else:
            nlist = self._params["nlist"] or _default_nlist(self._count)
            ann = faiss.IndexIVFFlat(
                faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT
            )
            size = min(self._count, _IVF_TRAIN_PER_LIST * nlist)
            rows = np.random.default_rng(0).choice(self._count, size, replace=False)
            ann.train(self.embeddings[np.sort(rows)])
        ann.add(self.embeddings)
        return ann

    def extended(
        self, remap: np.ndarray, n_identities: int, embeddings: np.ndarray, owners: np.ndarray
    ) -> FaissIndex:
        """This index with rows added (arguments as `ExactIndex.extended`).

        The new vectors are added to the same faiss index (no rebuild; an IVF index is
        retrained once the gallery has grown fourfold since its training). The faiss index
        is shared: this object stays searchable (it ignores the new samples) but must not be
        searched while `extended` runs in another thread.
        """
        exact = self._exact.extended(remap, n_identities, embeddings, owners)
        if self._ann is None or (
            self.kind == "ivf" and exact.embeddings.shape[0] > _IVF_REGROW * self._trained_on
        ):
            return FaissIndex(exact.embeddings, exact.owners, n_identities, **self._params)
        # Same placement as ExactIndex.extended: stable order by identity, each row after
        # the existing rows of its identity; faiss numbers the new rows in that order.
        order = np.argsort(owners, kind="stable")
        at = np.searchsorted(remap[self.owners], owners[order], side="right")
        new_ids = np.arange(self._count, self._count + len(order), dtype=np.int64)
        self._ann.add(np.ascontiguousarray(embeddings[order], dtype=np.float32))
        grown = FaissIndex.__new__(FaissIndex)
        grown._setup(exact, self._params)
        grown._adopt(self._ann, np.insert(self._id_of_row, at, new_ids), self._trained_on)
        return grown

    def _adopt(self, ann: Any, id_of_row: np.ndarray, trained_on: int) -> None:
        self._ann = ann
        self._id_of_row = id_of_row
        self._row_of_id = np.empty_like(id_of_row)
        self._row_of_id[id_of_row] = np.arange(id_of_row.size, dtype=np.int64)
        self._trained_on = trained_on

    def search(
        self, queries: np.ndarray, top_k: int = 1, aggregate: Aggregate = "max"
    ) -> SearchResult:
        """The ``top_k`` best identities for each of ``(Q, D)`` unit ``queries``, among the
        identities of the faiss shortlist, with exact similarities.

        Raises:
            ConfigError: queries not ``(Q, D)`` finite numbers, unknown ``aggregate``, or an
                empty gallery.
        """
        queries = checked_queries(queries, self.dim, aggregate, self.n_identities)
        if not np.isfinite(queries).all():
            raise ConfigError("queries contain NaN or infinite values")
        k = max(1, min(top_k, self.n_identities))
        ids = self._shortlist(queries, min(self._count, max(self._params["shortlist"], 8 * k)))
        width = max(k, 2)
        keep = max(self._params["rerank"], 2 * k)
        top = np.zeros((queries.shape[0], k), np.int64)
        top_scores = np.zeros((queries.shape[0], k), np.float32)
        runner_up = np.full(queries.shape[0], -np.inf, np.float32)
        for i, query in enumerate(queries):
            found = ids[i][(ids[i] >= 0) & (ids[i] < self._count)]  # best first
            owners = self.owners[self._row_of_id[found]]
            _, first = np.unique(owners, return_index=True)
            candidates = owners[np.sort(first)[:keep]]  # by their best shortlisted sample
            if candidates.size < min(width, self.n_identities):  # too few: score everyone
                candidates = np.arange(self.n_identities)
            scores = self._scores(query, candidates, aggregate)
            best, best_scores, second = _top(scores[None, :], min(width, candidates.size))
            top[i] = candidates[best[0, :k]]
            top_scores[i] = best_scores[0, :k]
            runner_up[i] = second[0]
        return SearchResult(top, top_scores, runner_up)

    def _shortlist(self, queries: np.ndarray, depth: int) -> np.ndarray:
        """``(Q, depth)`` faiss ids of the best samples per query (``-1`` = none)."""
        faiss = _faiss()
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self._params["ef_search"], depth))
        else:
            params = faiss.SearchParametersIVF(nprobe=min(self._params["nprobe"], self._ann.nlist))
        _, ids = self._ann.search(queries, depth, params=params)
        found: np.ndarray = ids
        return found

    def _scores(
        self, query: np.ndarray, candidates: np.ndarray, aggregate: Aggregate
    ) -> np.ndarray:
        """``(C,)`` exact scores of ``candidates`` (as `ExactIndex` computes them)."""
        if aggregate == "mean":
            template_scores: np.ndarray = self.templates()[candidates] @ query
            return template_scores
        lengths = self._lengths[candidates]
        offsets = np.cumsum(lengths) - lengths  # where each candidate's rows begin
        rows = np.arange(lengths.sum()) + np.repeat(self._starts[candidates] - offsets, lengths)
        similarities = self.embeddings[rows] @ query
        best: np.ndarray = np.maximum.reduceat(similarities, offsets)
        return best

    def save(self, path: str | os.PathLike[str], key: str) -> None:
        """Write the faiss index to ``path`` and its description to ``path.sha256``.

        Both are written to temporary files and moved into place (``os.replace``), the
        index first, so a crash leaves either the old pair or a pair whose checksum does
        not match (which `load` rejects).

        Args:
            path: index file, e.g. ``<gallery file>.hnsw``.
            key: what the index was built from (e.g. the store's position as a string);
                `load` only accepts the same key.
        """
        if self._ann is None:
            raise ConfigError("an empty index has nothing to save")
        faiss = _faiss()
        path = Path(path)
        blob = faiss.serialize_index(self._ann)
        digest = _atomic_write(path, lambda fh: np.savez(fh, index=blob, rows=self._id_of_row))
        sidecar = {
            "format": _FORMAT,
            "key": key,
            "sha256": digest,
            "data_sha256": self._data_digest(),
            "trained_on": self._trained_on,
            "build": self._build_params(),
        }
        _atomic_write(
            _sidecar(path), lambda fh: fh.write(json.dumps(sidecar, sort_keys=True).encode())
        )

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        key: str,
        embeddings: np.ndarray,
        owners: np.ndarray,
        n_identities: int,
        **params: Any,
    ) -> FaissIndex | None:
        """The index saved at ``path`` for these samples, or ``None`` when the file is
        missing, unreadable, corrupt (sha256 checked before faiss reads it), saved under
        another ``key``, built with other build parameters, or over other vectors.

        Args:
            path: the file given to `save`.
            key: must equal the key given to `save`.
            embeddings, owners, n_identities: the samples, as for the constructor.
            **params: keyword parameters of the constructor.

        Raises:
            ConfigError: bad parameters or samples (as the constructor).
        """
        index = cls.__new__(cls)
        index._setup(ExactIndex(embeddings, owners, n_identities), _with_defaults(params))
        path = Path(path)
        try:
            sidecar = json.loads(_sidecar(path).read_text(encoding="utf-8"))
            if not isinstance(sidecar, dict) or not (
                sidecar.get("format") == _FORMAT
                and sidecar.get("key") == key
                and sidecar.get("build") == index._build_params()
                and isinstance(sidecar.get("trained_on"), int)
            ):
                return None
            with open(path, "rb") as fh:  # hash and read the same file, even if replaced
                if _sha256(fh) != sidecar.get("sha256"):
                    return None
                fh.seek(0)
                with np.load(fh, allow_pickle=False) as arrays:
                    blob, id_of_row = arrays["index"], arrays["rows"]
            if sidecar.get("data_sha256") != index._data_digest():
                return None
            ann = _faiss().deserialize_index(blob)
        except (OSError, ValueError, KeyError, RuntimeError, UnicodeDecodeError):
            return None
        expected = _faiss().IndexHNSWFlat if index.kind == "hnsw" else _faiss().IndexIVFFlat
        count = index._count
        if not (
            isinstance(ann, expected)
            and ann.ntotal == count
            and ann.d == index.dim
            and id_of_row.dtype == np.int64
            and id_of_row.shape == (count,)
            and np.array_equal(np.sort(id_of_row), np.arange(count))
        ):
            return None
        index._adopt(ann, id_of_row, sidecar["trained_on"])
        return index

    def _build_params(self) -> dict[str, Any]:
        """The parameters fixed when the faiss index is built (not the search-time ones)."""
        names = ("kind", "m", "ef_construction") if self.kind == "hnsw" else ("kind", "nlist")
        built = {name: self._params[name] for name in names}
        built["count"] = self._count
        built["dim"] = self.dim if self._count else 0
        return built

    def _data_digest(self) -> str:
        """sha256 of the vectors and their owners, in row order."""
        digest = hashlib.sha256(self.embeddings.tobytes())
        digest.update(self.owners.tobytes())
        return digest.hexdigest()


def _with_defaults(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` completed with the constructor's keyword defaults (one source of truth)."""
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(FaissIndex.__init__).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY
    }
    unknown = set(params) - set(defaults)
    if unknown:
        raise ConfigError(f"unknown FaissIndex parameters: {sorted(unknown)}")
    return {**defaults, **params}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def _atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> str:
    """Write ``path`` through `facekit._atomic.replacing`; returns the content's sha256."""
    with replacing(path) as temporary:
        with temporary.open("wb") as fh:
            write(fh)
        with temporary.open("rb") as fh:
            return _sha256(fh)
