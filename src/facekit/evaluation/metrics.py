"""Verification metrics on similarity scores: ROC, AUC, EER, operating points, the LFW
10-fold accuracy, and threshold calibration.

All functions take genuine (same-person) and impostor (different-person) cosine
similarities as 1-D arrays and are vectorised. A pair is accepted ("same") when its score
is ``>=`` the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import ConfigError
from ..types import Thresholds

__all__ = [
    "FoldResult",
    "OperatingPoint",
    "TenFold",
    "best_threshold",
    "calibrate",
    "equal_error_rate",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at",
    "tar_at_far",
    "ten_fold_accuracy",
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


def roc_curve(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC: at each distinct score taken as the threshold, highest first.

    Returns:
        ``(thresholds, far, tar)``, each ``(T + 1,)``: the first point is threshold
        ``+inf`` (nothing accepted, FAR = TAR = 0), then every distinct score in descending
        order with the rates of accepting scores ``>=`` it.
    """
    pos = _scores(genuine, "genuine")
    neg = _scores(impostor, "impostor")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    pos_sorted = np.sort(pos)
    neg_sorted = np.sort(neg)
    # count of scores >= t is size - (count of scores < t)
    tar = (pos.size - np.searchsorted(pos_sorted, thresholds, side="left")) / pos.size
    far = (neg.size - np.searchsorted(neg_sorted, thresholds, side="left")) / neg.size
    return (
        np.concatenate([[np.inf], thresholds]),
        np.concatenate([[0.0], far]),
        np.concatenate([[0.0], tar]),
    )


def equal_error_rate(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """The equal error rate and the threshold where it is reached.

    Walks the ROC (`roc_curve`) to the first threshold at which the false-reject rate
    ``1 - TAR`` is no longer above the false-accept rate; the EER is the mean of the two
    rates at whichever of that point and the one before it has them closer together.

    Returns:
        ``(eer, threshold)``.
    """
    thresholds, far, tar = roc_curve(genuine, impostor)
    frr = 1.0 - tar
    crossing = int(np.argmax(frr <= far))  # frr falls from 1, far rises from 0: it exists
    candidates = [crossing - 1, crossing] if crossing > 0 else [crossing]
    best = min(candidates, key=lambda i: abs(frr[i] - far[i]))
    return float((frr[best] + far[best]) / 2.0), float(thresholds[best])


def best_threshold(genuine: npt.ArrayLike, impostor: npt.ArrayLike) -> tuple[float, float]:
    """The accuracy-optimal threshold and its accuracy.

    Candidates are midpoints between consecutive distinct scores (and one below the
    lowest, one above the highest); ties in accuracy go to the lowest such threshold.

    Returns:
        ``(threshold, accuracy)`` with accuracy = (genuine accepted + impostors rejected)
        / all pairs.
    """
    pos = _scores(genuine, "genuine")
    neg = _scores(impostor, "impostor")
    values = np.unique(np.concatenate([pos, neg]))
    candidates = np.concatenate(
        [[values[0] - 1e-6], (values[:-1] + values[1:]) / 2.0, [values[-1] + 1e-6]]
    )
    accepted = pos.size - np.searchsorted(np.sort(pos), candidates, side="left")
    rejected = np.searchsorted(np.sort(neg), candidates, side="left")
    accuracy = (accepted + rejected) / (pos.size + neg.size)
    best = int(np.argmax(accuracy))
    return float(candidates[best]), float(accuracy[best])


def tar_at_far(
    genuine: npt.ArrayLike, impostor: npt.ArrayLike, fars: tuple[float, ...] = (1e-1, 1e-2, 1e-3)
) -> dict[float, OperatingPoint | None]:
    """TAR at each false-accept rate, or ``None`` where there are too few impostor pairs
    to measure it (fewer than ``1 / far``: no impostor may pass, so the rate is not
    resolved)."""
    pos = _scores(genuine, "genuine")
    neg = _scores(impostor, "impostor")
    points: dict[float, OperatingPoint | None] = {}
    for far in fars:
        if far * neg.size < 1:
            points[far] = None
            continue
        threshold = threshold_at_far(neg, far)
        points[far] = OperatingPoint(
            threshold, float(np.mean(neg >= threshold)), tar_at(pos, threshold)
        )
    return points


@dataclass(frozen=True, slots=True)
class FoldResult:
    """One fold of `ten_fold_accuracy`: the threshold chosen on the other folds and the
    accuracy it gives on this one (``None`` for a fold without pairs)."""

    threshold: float | None
    accuracy: float | None
    pairs: int


@dataclass(frozen=True, slots=True)
class TenFold:
    """The LFW protocol's result.

    Attributes:
        accuracy: mean accuracy over the folds that have pairs.
        std: standard deviation of the per-fold accuracies (population, ``ddof=0``).
        threshold: mean of the per-fold thresholds.
        folds: each fold's threshold, accuracy and size.
        skipped: folds left out: empty, or whose other folds lack either kind of pair.
    """

    accuracy: float
    std: float
    threshold: float
    folds: tuple[FoldResult, ...]
    skipped: int


def ten_fold_accuracy(scores: npt.ArrayLike, same: npt.ArrayLike, folds: npt.ArrayLike) -> TenFold:
    """The LFW verification protocol: for each fold, the accuracy-optimal threshold is
    chosen on the pairs of all other folds (`best_threshold`) and applied to this fold.

    Args:
        scores: ``(P,)`` pair similarities.
        same: ``(P,)`` bool, True for same-person pairs.
        folds: ``(P,)`` fold index of each pair (0..K-1; LFW has 10).

    Raises:
        ConfigError: no fold could be evaluated.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(same, dtype=bool).ravel()
    fold_ids = np.asarray(folds).ravel()
    if not values.size == labels.size == fold_ids.size:
        raise ConfigError("scores, same and folds must have one entry per pair")
    results: list[FoldResult] = []
    skipped = 0
    for fold in np.unique(fold_ids):
        test = fold_ids == fold
        train = ~test
        train_pos, train_neg = values[train & labels], values[train & ~labels]
        if not train_pos.size or not train_neg.size:
            skipped += 1
            results.append(FoldResult(None, None, int(test.sum())))
            continue
        threshold, _ = best_threshold(train_pos, train_neg)
        correct = (values[test] >= threshold) == labels[test]
        results.append(FoldResult(threshold, float(correct.mean()), int(test.sum())))
    measured = [r for r in results if r.accuracy is not None]
    if not measured:
        raise ConfigError("no fold could be evaluated: each needs both kinds of pairs elsewhere")
    accuracies = np.array([r.accuracy for r in measured])
    return TenFold(
        accuracy=float(accuracies.mean()),
        std=float(accuracies.std()),
        threshold=float(np.mean([r.threshold for r in measured])),
        folds=tuple(results),
        skipped=skipped,
    )
