"""Face detectors: image → boxes, scores and 5 landmarks.

Backends are imported on first attribute access, so ``import facekit.detectors`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .scrfd import SCRFD

__all__ = ["SCRFD"]


def __getattr__(name: str) -> Any:
    if name == "SCRFD":
        from .scrfd import SCRFD

        return SCRFD
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
