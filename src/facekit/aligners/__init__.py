"""Aligners: warp faces onto a 5-point landmark template, or crop their boxes."""

from __future__ import annotations

from ..errors import ConfigError
from ..protocols import Aligner
from .box import BoxAligner
from .similarity import TEMPLATES, SimilarityAligner, Template, estimate_similarity

__all__ = [
    "BOX_TEMPLATES",
    "TEMPLATES",
    "BoxAligner",
    "SimilarityAligner",
    "Template",
    "aligner_for",
    "estimate_similarity",
]

BOX_TEMPLATES: dict[str, tuple[int, float]] = {
    # facenet-pytorch's MTCNN(image_size=160, margin=0): FaceNet's evaluation crops.
    "box160": (160, 0.0),
}
"""Box-crop "templates" by name: ``(size, margin)`` of a `BoxAligner`."""


def aligner_for(template: str) -> Aligner:
    """The aligner that produces the crops of the template called ``template``.

    Raises:
        ConfigError: no template has that name.
    """
    if template in TEMPLATES:
        return SimilarityAligner(template)
    if template in BOX_TEMPLATES:
        size, margin = BOX_TEMPLATES[template]
        return BoxAligner(size, margin, name=template)
    raise ConfigError(
        f"unknown alignment template {template!r}; known: {', '.join([*TEMPLATES, *BOX_TEMPLATES])}"
    )
