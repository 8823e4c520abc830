"""Galleries: enrolled identities, bound to their embedder, stored in one SQLite file."""

from .binding import EmbedderInfo
from .gallery import Gallery, Identification
from .index import Aggregate, ExactIndex, SearchResult
from .store import SCHEMA_VERSION, SampleRecord

__all__ = [
    "SCHEMA_VERSION",
    "Aggregate",
    "EmbedderInfo",
    "ExactIndex",
    "Gallery",
    "Identification",
    "SampleRecord",
    "SearchResult",
]
