"""Galleries: enrolled identities bound to their embedder, in a store (an SQLite file, or
Milvus) searched through an index (exact, or faiss HNSW / IVF)."""

from .backends import AUTO_ANN_SAMPLES, IndexName
from .binding import EmbedderInfo
from .gallery import Gallery, Identification
from .index import Aggregate, ExactIndex, SearchResult
from .protocols import GalleryStore, IndexFactory, VectorIndex
from .store import SCHEMA_VERSION, SampleRecord, SQLiteStore

__all__ = [
    "AUTO_ANN_SAMPLES",
    "SCHEMA_VERSION",
    "Aggregate",
    "EmbedderInfo",
    "ExactIndex",
    "Gallery",
    "GalleryStore",
    "Identification",
    "IndexFactory",
    "IndexName",
    "SQLiteStore",
    "SampleRecord",
    "SearchResult",
    "VectorIndex",
]
