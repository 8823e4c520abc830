"""Which store and which index a gallery location and an index name mean: two tables.

Stores are picked by the location's scheme (``None`` or a path: SQLite), indexes by name;
a store that searches itself (`SearchingStore`, Milvus) is its own index. `redact` hides
the secrets of a location in messages.

Entries are ``"module:attribute"`` paths imported only when used, so ``import
facekit.gallery`` never imports faiss or pymilvus.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendError, ConfigError
from .index import ExactIndex
from .protocols import GalleryStore, IndexFactory, VectorIndex
from .store import SQLiteStore

__all__ = [
    "AUTO_ANN_SAMPLES",
    "INDEX_NAMES",
    "IndexName",
    "SearchingStore",
    "index_factory",
    "open_store",
    "redact",
    "searching_store",
]

_LOG = logging.getLogger(__name__)

IndexName = Literal["auto", "exact", "hnsw", "ivf"]
"""How a gallery searches: ``"exact"`` (brute force), ``"hnsw"`` / ``"ivf"`` (faiss,
approximate shortlist re-ranked exactly), ``"auto"`` (exact below `AUTO_ANN_SAMPLES`
samples, HNSW from there when faiss is installed)."""

INDEX_NAMES: tuple[str, ...] = ("auto", "exact", "hnsw", "ivf")

AUTO_ANN_SAMPLES = 50_000
"""Samples from which ``index="auto"`` uses HNSW instead of exact search (see
docs/scaling.md for the measurement)."""

_STORES: dict[str, str] = {
    "milvus-lite://": "facekit.gallery.milvus_store:MilvusStore",
    "milvus://": "facekit.gallery.milvus_store:MilvusStore",
    "milvus+tls://": "facekit.gallery.milvus_store:MilvusStore",
}
"""URI prefix → store class, called as ``cls(uri, create=...)``. Anything else without
``://`` is an SQLite file path."""

_INDEXES: dict[str, tuple[str, dict[str, Any]]] = {
    "exact": ("facekit.gallery.index:ExactIndex", {}),
    "hnsw": ("facekit.gallery.faiss_index:FaissIndex", {"kind": "hnsw"}),
    "ivf": ("facekit.gallery.faiss_index:FaissIndex", {"kind": "ivf"}),
}
"""Index name → (class, keyword arguments), called as ``cls(embeddings, owners,
n_identities, **kwargs)``."""

_USERINFO = re.compile(r"(?<=://)(.*)@")  # to the last @: an unencoded @ or / stays hidden
_TOKEN_OPTION = re.compile(r"([?&]token=)[^&#]*")

_SAVED_KEY = "samples"
"""Key of a saved faiss index: `FaissIndex.load` checks the samples themselves."""


def open_store(location: str | os.PathLike[str] | None, *, create: bool = True) -> GalleryStore:
    """The store a location names: ``None`` (in memory) or a path → `SQLiteStore`;
    ``milvus-lite:///abs/faces.db``, ``milvus://host:19530/collection`` or
    ``milvus+tls://host:19530/collection`` → ``MilvusStore``.

    Raises:
        ConfigError: a URI with an unknown scheme.
        GalleryError: the store cannot be opened.
    """
    if isinstance(location, str) and "://" in location:
        for prefix, target in _STORES.items():
            if location.startswith(prefix):
                store: GalleryStore = _load(target)(location, create=create)
                return store
        schemes = ", ".join(prefix for prefix in _STORES)
        raise ConfigError(
            f"unknown gallery location {redact(location)!r}: use a file path or a URI "
            f"starting with {schemes}"
        )
    return SQLiteStore(location, create=create)


def redact(location: str) -> str:
    """``location`` with its secrets replaced by ``***``: the password of
    ``user:password@`` (a lone ``key@`` entirely) and the value of ``token=``."""

    def hide(match: re.Match[str]) -> str:
        user, colon, _ = match[1].partition(":")
        return f"{user}:***@" if colon else "***@"

    return _TOKEN_OPTION.sub(r"\1***", _USERINFO.sub(hide, location, count=1))


@runtime_checkable
class SearchingStore(Protocol):
    """A store that is also its index (a vector database): a `Gallery` on it reads
    identities and counts with `GalleryStore.identities`, searches through `index_for`, and
    reads vectors only for `embeddings` of one identity (or an explicit export, ``load``)."""

    def index_factory(self) -> IndexFactory:
        """The store's index as an `IndexFactory` (arrays handed in are kept, not needed)."""
        ...

    def index_for(self, names: Sequence[str]) -> VectorIndex:
        """A search view over the sorted identity ``names``, holding no vectors."""
        ...

    def embeddings(self, identity: str) -> np.ndarray:
        """``(n, D)`` float32 embeddings of ``identity``, oldest first."""
        ...


def searching_store(store: GalleryStore) -> SearchingStore | None:
    """``store`` when it is its own index (`SearchingStore`), else ``None``."""
    return store if isinstance(store, SearchingStore) else None


def index_factory(store: GalleryStore, index: str = "auto") -> IndexFactory:
    """How a gallery on ``store`` builds its index: the store's own when it is a
    `SearchingStore` (a vector database searching server-side; then ``index`` must be
    ``"auto"``), else the named one. A faiss index of a gallery file is kept beside it
    (``<file>.hnsw`` / ``<file>.ivf``) and reused while the samples are the same.

    Raises:
        ConfigError: unknown ``index``, or an ``index`` for a store with its own.
    """
    if index not in INDEX_NAMES:
        raise ConfigError(f"unknown index {index!r}; use one of {', '.join(INDEX_NAMES)}")
    own = searching_store(store)
    if own is not None:
        if index != "auto":
            raise ConfigError(
                f"{store.where} searches with its own index; index={index!r} does not apply "
                "(leave it 'auto')"
            )
        return own.index_factory()
    folder = store.path if isinstance(store, SQLiteStore) else None
    if index == "auto":
        return partial(_auto, folder)
    return _named(index, folder)


def _named(name: str, path: Path | None) -> IndexFactory:
    """The factory of a named index; a faiss one is loaded from, or saved to, a file
    beside the gallery file ``path`` (none for an in-memory gallery)."""
    target, options = _INDEXES[name]
    cls = _load(target)
    if path is None or name == "exact":
        built: IndexFactory = partial(cls, **options)
        return built
    return partial(_kept, cls, path.with_name(f"{path.name}.{name}"), options)


def _kept(
    cls: Any,
    saved: Path,
    options: dict[str, Any],
    embeddings: np.ndarray,
    owners: np.ndarray,
    n_identities: int,
) -> VectorIndex:
    """The index saved at ``saved`` when it was built over these very samples (checked
    by `FaissIndex.load`), else a new one, saved there (a failure to save is logged)."""
    index: VectorIndex | None = cls.load(
        saved, _SAVED_KEY, embeddings, owners, n_identities, **options
    )
    if index is not None:
        return index
    built = cls(embeddings, owners, n_identities, **options)
    if n_identities:
        _save(built, saved)
    fresh: VectorIndex = built
    return fresh


def _save(index: Any, saved: Path) -> None:
    """``index.save`` to ``saved``; a failure is logged (the index is rebuilt next time)."""
    try:
        index.save(saved, _SAVED_KEY)
    except OSError as exc:
        _LOG.warning("cannot save the search index to %s (%s); it is rebuilt next time", saved, exc)


def save_grown(store: GalleryStore, index: VectorIndex) -> None:
    """Save a file gallery's faiss index that grew in this session (samples added after it
    was loaded) beside the file, so that the next open loads it instead of rebuilding it
    (minutes per million samples). Other indexes and stores: nothing to do."""
    kind = getattr(index, "kind", None)
    if kind is None or not hasattr(index, "save") or not isinstance(store, SQLiteStore):
        return
    if store.path is not None and index.n_identities:
        _save(index, store.path.with_name(f"{store.path.name}.{kind}"))


def _auto(
    path: Path | None, embeddings: np.ndarray, owners: np.ndarray, n_identities: int
) -> VectorIndex:
    """Exact search below `AUTO_ANN_SAMPLES` samples, HNSW from there (exact, with an INFO
    log, when faiss is not installed)."""
    if embeddings.shape[0] >= AUTO_ANN_SAMPLES:
        try:
            return _named("hnsw", path)(embeddings, owners, n_identities)
        except BackendError as exc:
            _LOG.info("%d samples, exact search: %s", embeddings.shape[0], exc)
    return ExactIndex(embeddings, owners, n_identities)


def _load(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)
