"""What a gallery is bound to: the embedder that made its vectors."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

from ..errors import GalleryError
from ..protocols import Embedder

__all__ = ["EmbedderInfo"]


@dataclass(frozen=True, slots=True)
class EmbedderInfo:
    """The facts that make embeddings comparable. Vectors from embedders that differ in any
    of them live in different spaces and must never be compared.

    Attributes:
        name: model name.
        sha256: sha256 of the weights.
        dim: embedding dimension.
        template: alignment template the crops were warped to.
        flip: whether embeddings are flip-averaged.
    """

    name: str
    sha256: str
    dim: int
    template: str
    flip: bool

    @classmethod
    def of(cls, embedder: Embedder) -> EmbedderInfo:
        """The binding facts of ``embedder``."""
        return cls(
            name=embedder.name,
            sha256=embedder.sha256,
            dim=int(embedder.dim),
            template=embedder.template,
            flip=bool(embedder.flip),
        )

    def to_json(self) -> str:
        """JSON text, as stored in the gallery file."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EmbedderInfo:
        """Parse what :meth:`to_json` wrote.

        Raises:
            GalleryError: the text is not a valid binding record.
        """
        try:
            data = json.loads(text)
            return cls(**{f.name: data[f.name] for f in fields(cls)})
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"gallery has a malformed embedder record: {exc}") from None

    def differences(self, other: EmbedderInfo) -> list[str]:
        """Human-readable list of the fields in which ``other`` differs from this one."""
        return [
            f"{f.name}: gallery has {getattr(self, f.name)!r}, embedder has "
            f"{getattr(other, f.name)!r}"
            for f in fields(self)
            if getattr(self, f.name) != getattr(other, f.name)
        ]
