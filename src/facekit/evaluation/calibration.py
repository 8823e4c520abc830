"""Calibrating the two verdict thresholds on the user's own pairs, written to the small
JSON file (`facekit.thresholds`) that carries them to
``FaceRecognizer(thresholds="calib.json")``.

``likely`` is the accuracy-optimal threshold on the pairs; ``same`` is the lowest threshold
whose false-accept rate on them is at most the target (default 1e-3), raised to ``likely``
if it would fall below it. The file records the embedder it was made with (name and
weights sha256).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..thresholds import CalibrationFile, load_thresholds
from ..types import Thresholds
from .metrics import best_threshold, tar_at, threshold_at_far

if TYPE_CHECKING:
    from ..protocols import Embedder
    from .verification import VerificationReport

__all__ = ["CalibrationFile", "calibrate_pairs", "load_thresholds"]


def calibrate_pairs(
    report: VerificationReport,
    *,
    embedder: Embedder,
    detector: str,
    target_far: float = 1e-3,
    description: str = "",
) -> CalibrationFile:
    """Thresholds from a verification run: ``likely`` accuracy-optimal, ``same`` at
    ``target_far``.

    Raises:
        ConfigError: too few impostor pairs to resolve ``target_far`` (fewer than
            ``1 / target_far``).
    """
    genuine, impostor = report.scores[report.same], report.scores[~report.same]
    if target_far * impostor.size < 1:
        raise ConfigError(
            f"{impostor.size} different-person pairs cannot resolve a FAR of {target_far:g}: "
            f"need at least {int(np.ceil(1 / target_far))}"
        )
    likely, accuracy = best_threshold(genuine, impostor)
    same = max(threshold_at_far(impostor, target_far), likely)
    # Stored rounded, and rounding must loosen neither threshold's promise.
    likely_r = float(np.round(likely, 4))
    same_r = float(np.ceil(same * 1e4) / 1e4)
    same_far = float(np.mean(impostor >= same_r))
    same_tar = tar_at(genuine, same_r)
    protocol = (
        f"{description + ' ' if description else ''}calibrated with facekit calibrate on "
        f"{genuine.size} same / {impostor.size} different pairs: likely = accuracy-optimal "
        f"(accuracy {accuracy:.4f}), same = FAR {target_far:g} (measured FAR {same_far:.4g}, "
        f"TAR {same_tar:.4f})"
    )
    return CalibrationFile(
        thresholds=Thresholds(min(likely_r, same_r), same_r, protocol),
        embedder=embedder.name,
        embedder_sha256=embedder.sha256,
        detector=detector,
        target_far=target_far,
        likely_accuracy=accuracy,
        same_far=same_far,
        same_tar=same_tar,
    )
