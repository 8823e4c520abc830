"""Evaluation plots as PNG files (the ``[plot]`` extra: matplotlib, imported on use)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import BackendError
from .metrics import roc_curve

if TYPE_CHECKING:
    from ..types import Thresholds
    from .detection import DetectionReport
    from .verification import VerificationReport

__all__ = ["plot_detection", "plot_verification"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no window
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendError("plots need matplotlib: pip install 'facekit[plot]'") from None
    return plt


def plot_verification(
    report: VerificationReport, folder: Path, thresholds: Thresholds | None = None
) -> list[Path]:
    """``roc.png`` (TAR against FAR, log scale) and ``similarities.png`` (histograms of
    same and different pairs, with the 10-fold threshold and ``thresholds`` marked)."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    genuine, impostor = report.scores[report.same], report.scores[~report.same]
    _, far, tar = roc_curve(genuine, impostor)
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.plot(np.maximum(far, 1.0 / max(impostor.size, 1) / 10), tar)
    axes.set(
        xscale="log",
        xlabel="false-accept rate",
        ylabel="true-accept rate",
        title=f"ROC (AUC {report.auc:.4f})",
    )
    axes.grid(True, alpha=0.3)
    roc = folder / "roc.png"
    figure.tight_layout()
    figure.savefig(roc, dpi=120)
    plt.close(figure)
    figure, axes = plt.subplots(figsize=(6, 4))
    bins = np.linspace(min(report.scores.min(), -0.2), 1.0, 60)
    axes.hist(impostor, bins=bins, alpha=0.6, density=True, label=f"different ({impostor.size})")
    axes.hist(genuine, bins=bins, alpha=0.6, density=True, label=f"same ({genuine.size})")
    axes.axvline(report.ten_fold.threshold, color="k", linestyle="--", label="10-fold threshold")
    if thresholds is not None:
        axes.axvline(thresholds.likely, color="tab:orange", label=f"likely {thresholds.likely:.3f}")
        axes.axvline(thresholds.same, color="tab:red", label=f"same {thresholds.same:.3f}")
    axes.set(xlabel="cosine similarity", ylabel="density", title="Pair similarities")
    axes.legend(fontsize=8)
    histogram = folder / "similarities.png"
    figure.tight_layout()
    figure.savefig(histogram, dpi=120)
    plt.close(figure)
    return [roc, histogram]


def plot_detection(report: DetectionReport, folder: Path) -> list[Path]:
    """``precision_recall.png``: the detection PR curve with its AP."""
    plt = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    figure, axes = plt.subplots(figsize=(5, 4))
    axes.plot(report.recall_curve, report.precision_curve)
    axes.set(
        xlabel="recall",
        ylabel="precision",
        xlim=(0, 1),
        ylim=(0, 1.02),
        title=f"Detection PR (AP@{report.iou:g} {report.ap:.4f})",
    )
    axes.grid(True, alpha=0.3)
    path = folder / "precision_recall.png"
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return [path]
