"""Verification on a pair list: every image embedded once, every pair scored, the LFW
10-fold protocol and the ROC operating points reported, failures listed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from .metrics import (
    OperatingPoint,
    TenFold,
    best_threshold,
    equal_error_rate,
    roc_auc,
    tar_at_far,
    ten_fold_accuracy,
)
from .pairs import Pair

if TYPE_CHECKING:
    from ..recognizer import FaceRecognizer

__all__ = ["Embeddings", "VerificationReport", "embed_images", "evaluate_verification"]

FARS = (1e-1, 1e-2, 1e-3)
"""The false-accept rates at which TAR is reported."""


@dataclass(frozen=True, slots=True, eq=False)
class Embeddings:
    """Embeddings of a set of images, each computed once.

    Attributes:
        paths: the images, in order.
        vectors: ``(len(paths), D)`` float32; rows of failed images are zero.
        failures: image → why it has no embedding.
    """

    paths: tuple[Path, ...]
    vectors: np.ndarray
    failures: dict[Path, str]

    def save(self, path: str | Path) -> None:
        """Write ``paths`` and ``vectors`` to an ``.npz`` file (numpy's format, no pickle)."""
        np.savez(path, paths=np.array([str(p) for p in self.paths]), vectors=self.vectors)


def embed_images(
    fr: FaceRecognizer, paths: list[Path], *, batch_size: int = 16, progress: bool = True
) -> Embeddings:
    """Embed each distinct image once (the run's cache: pair lists reuse images)."""
    unique = list(dict.fromkeys(paths))
    results = fr.embed_each(unique, batch_size=batch_size, progress=progress)
    dim = fr.embedder.dim
    vectors = np.zeros((len(unique), dim), dtype=np.float32)
    failures: dict[Path, str] = {}
    for index, (path, result) in enumerate(zip(unique, results, strict=True)):
        if isinstance(result, np.ndarray):
            vectors[index] = result
        else:
            failures[path] = str(result)
    return Embeddings(tuple(unique), vectors, failures)


@dataclass(frozen=True, slots=True, eq=False)
class VerificationReport:
    """Results of `evaluate_verification`.

    Attributes:
        pairs: pairs in the list.
        scored: pairs scored (both images embedded).
        genuine: scored same-person pairs.
        impostor: scored different-person pairs.
        failed: pairs not scored, ``(pair, reason)``; counted, never silently dropped.
        auc: ROC AUC.
        ten_fold: the LFW 10-fold result (accuracy mean ± std, per-fold thresholds).
        best_threshold: accuracy-optimal threshold on all scored pairs, and its accuracy.
        eer: equal error rate, and its threshold.
        tar_at_far: TAR at FAR 1e-1, 1e-2, 1e-3 (``None``: too few impostor pairs).
        scores: ``(scored,)`` similarities; ``same`` and ``folds`` alongside.
    """

    pairs: int
    scored: int
    genuine: int
    impostor: int
    failed: tuple[tuple[Pair, str], ...]
    auc: float
    ten_fold: TenFold
    best_threshold: tuple[float, float]
    eer: tuple[float, float]
    tar_at_far: dict[float, OperatingPoint | None]
    scores: np.ndarray
    same: np.ndarray
    folds: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (keys ``auc``, ``accuracy``, ``accuracy_std``, ``threshold``,
        ``eer``, ``tar_at_far`` ...)."""
        return {
            "pairs": self.pairs,
            "scored": self.scored,
            "genuine": self.genuine,
            "impostor": self.impostor,
            "failed": [
                {"a": str(p.a), "b": str(p.b), "same": p.same, "reason": r} for p, r in self.failed
            ],
            "auc": self.auc,
            "accuracy": self.ten_fold.accuracy,
            "accuracy_std": self.ten_fold.std,
            "threshold": self.ten_fold.threshold,
            "folds": [
                {"threshold": f.threshold, "accuracy": f.accuracy, "pairs": f.pairs}
                for f in self.ten_fold.folds
            ],
            "folds_skipped": self.ten_fold.skipped,
            "best_threshold": self.best_threshold[0],
            "best_accuracy": self.best_threshold[1],
            "eer": self.eer[0],
            "eer_threshold": self.eer[1],
            "tar_at_far": {
                f"{far:g}": (
                    None
                    if point is None
                    else {"threshold": point.threshold, "far": point.far, "tar": point.tar}
                )
                for far, point in self.tar_at_far.items()
            },
        }

    def markdown(self) -> str:
        """A short human-readable report."""
        lines = [
            "# Verification",
            "",
            f"- pairs: {self.pairs} ({self.scored} scored: {self.genuine} same, "
            f"{self.impostor} different; {len(self.failed)} failed)",
            f"- 10-fold accuracy: {self.ten_fold.accuracy:.4f} ± {self.ten_fold.std:.4f} "
            f"(mean threshold {self.ten_fold.threshold:.4f}"
            + (f"; {self.ten_fold.skipped} folds skipped" if self.ten_fold.skipped else "")
            + ")",
            f"- ROC AUC: {self.auc:.5f}",
            f"- EER: {self.eer[0]:.4f} at threshold {self.eer[1]:.4f}",
            f"- best threshold (all pairs): {self.best_threshold[0]:.4f}, accuracy "
            f"{self.best_threshold[1]:.4f}",
        ]
        for far, point in self.tar_at_far.items():
            lines.append(
                f"- TAR at FAR {far:g}: "
                + (
                    f"too few impostor pairs ({self.impostor} < {1 / far:g})"
                    if point is None
                    else f"{point.tar:.4f} (threshold {point.threshold:.4f})"
                )
            )
        for pair, reason in self.failed:
            lines.append(f"- failed: {pair.a} / {pair.b}: {reason}")
        return "\n".join(lines) + "\n"


def evaluate_verification(
    fr: FaceRecognizer,
    pairs: list[Pair],
    *,
    embeddings: Embeddings | None = None,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[VerificationReport, Embeddings]:
    """Score a pair list with ``fr`` and compute the verification metrics.

    Args:
        fr: the recogniser (its face policy picks the face of each image).
        pairs: from `read_pairs`.
        embeddings: reuse these instead of embedding the images.

    Raises:
        ConfigError: no pair could be scored, or the scored pairs lack one of the classes.
    """
    if embeddings is None:
        images = [p.a for p in pairs] + [p.b for p in pairs]
        embeddings = embed_images(fr, images, batch_size=batch_size, progress=progress)
    failed: list[tuple[Pair, str]] = []
    scored: list[tuple[float, bool, int]] = []
    rows = {path: index for index, path in enumerate(embeddings.paths)}
    for pair in pairs:
        reason = embeddings.failures.get(pair.a) or embeddings.failures.get(pair.b)
        if reason is not None:
            failed.append((pair, reason))
            continue
        similarity = float(embeddings.vectors[rows[pair.a]] @ embeddings.vectors[rows[pair.b]])
        scored.append((similarity, pair.same, pair.fold))
    if not scored:
        raise ConfigError("no pair could be scored (every pair has a failed image)")
    scores = np.array([s for s, _, _ in scored])
    same = np.array([t for _, t, _ in scored], dtype=bool)
    folds = np.array([f for _, _, f in scored])
    if same.all() or not same.any():
        raise ConfigError("the scored pairs must include both same-person and different pairs")
    genuine, impostor = scores[same], scores[~same]
    report = VerificationReport(
        pairs=len(pairs),
        scored=len(scored),
        genuine=int(same.sum()),
        impostor=int((~same).sum()),
        failed=tuple(failed),
        auc=roc_auc(genuine, impostor),
        ten_fold=ten_fold_accuracy(scores, same, folds),
        best_threshold=best_threshold(genuine, impostor),
        eer=equal_error_rate(genuine, impostor),
        tar_at_far=tar_at_far(genuine, impostor, FARS),
        scores=scores,
        same=same,
        folds=folds,
    )
    return report, embeddings
