"""Face embedders: aligned crops → L2-normalised, flip-averaged vectors.

Backends are imported on first attribute access, so ``import facekit.embedders`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .arcface import ArcFace

__all__ = ["ArcFace"]


def __getattr__(name: str) -> Any:
    if name == "ArcFace":
        from .arcface import ArcFace

        return ArcFace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
