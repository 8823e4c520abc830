"""Verification metrics on similarity scores: ROC AUC, operating points, calibration.

All functions take genuine (same-person) and impostor (different-person) cosine
similarities as 1-D arrays and are vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .errors import ConfigError
from .types import Thresholds

__all__ = [
    "OperatingPoint",
    "calibrate",
    "pair_scores",
    "roc_auc",
    "tar_at",
    "threshold_at_far",
]


def _scores(values: npt.ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0:
        raise ConfigError(f"no {what} scores")
    return array


def roc_auc(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> float:
    """Area under the ROC curve: the probability that a random genuine pair scores higher
    than a random impostor pair (ties count half)."""
    pos = _scores(genuine, "genuine")
    neg = _scores(impostor, "impostor")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    rank_sum = ranks[: pos.size].sum()
    return float((rank_sum - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [values.size]])
    averaged = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty_like(averaged)
    ranks[order] = averaged
    return ranks


def threshold_at_far(impostor: npt.ArrayLike, far: float) -> float:
    """Smallest threshold whose false-accept rate (share of impostor scores ``>=`` it) is at
    most ``far``."""
    if not 0.0 < far < 1.0:
        raise ConfigError(f"far must be in (0, 1), got {far}")
    neg = np.sort(_scores(impostor, "impostor"))[::-1]
    allowed = int(np.floor(far * neg.size))  # impostors that may pass
    if allowed == 0:
        return float(np.nextafter(neg[0], np.inf))
    # Just above the (allowed+1)-th highest score, so ties cannot let more impostors pass.
    return float(np.nextafter(neg[allowed], np.inf))


def tar_at(genuine: npt.ArrayLike, threshold: float) -> float:
    """True-accept rate: share of genuine scores ``>= threshold``."""
    return float(np.mean(_scores(genuine, "genuine") >= threshold))


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """A threshold with its measured rates on a calibration set."""

    threshold: float
    far: float
    tar: float


def calibrate(
    genuine: npt.ArrayLike,
    impostor: npt.ArrayLike,
    *,
    likely_far: float = 1e-2,
    same_far: float = 1e-3,
    description: str = "",
) -> tuple[Thresholds, OperatingPoint, OperatingPoint]:
    """Thresholds at two false-accept rates: ``likely`` at ``likely_far``, ``same`` at
    ``same_far``, with the operating points measured on the given scores.

    Returns:
        The `Thresholds` (its protocol states the rates and pair counts) and the
        two operating points.
    """
    pos = _scores(genuine, "genuine")
    neg = _scores(impostor, "impostor")
    points = []
    for far in (likely_far, same_far):
        threshold = round(threshold_at_far(neg, far), 3)
        while np.mean(neg >= threshold) > far:  # rounding must not loosen the FAR
            threshold = round(threshold + 0.001, 3)
        points.append(
            OperatingPoint(threshold, float(np.mean(neg >= threshold)), tar_at(pos, threshold))
        )
    likely, same = points
    protocol = (
        f"{description}{' ' if description else ''}"
        f"likely = FAR {likely_far:g} (TAR {likely.tar:.3f}), same = FAR {same_far:g} "
        f"(TAR {same.tar:.3f}) on {pos.size} genuine / {neg.size} impostor pairs"
    )
    return Thresholds(likely.threshold, same.threshold, protocol), likely, same


def pair_scores(embeddings: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every unordered pair of ``embeddings``, split by label.

    Args:
        embeddings: ``(N, D)`` unit vectors.
        labels: ``(N,)`` identity of each row.

    Returns:
        ``(genuine, impostor)``: scores of same-label and different-label pairs.
    """
    vectors = np.asarray(embeddings, dtype=np.float32)
    names = np.asarray(labels)
    if vectors.ndim != 2 or names.shape != (vectors.shape[0],):
        raise ConfigError("embeddings must be (N, D) with one label per row")
    first, second = np.triu_indices(vectors.shape[0], k=1)
    similarity = (vectors @ vectors.T)[first, second]
    same = names[first] == names[second]
    return similarity[same], similarity[~same]
