"""Aligners: warp faces onto a 5-point landmark template."""

from .similarity import TEMPLATES, SimilarityAligner, Template, estimate_similarity

__all__ = ["TEMPLATES", "SimilarityAligner", "Template", "estimate_similarity"]
