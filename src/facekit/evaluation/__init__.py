"""Measuring facekit: verification (LFW 10-fold, ROC, EER, TAR@FAR), identification
(rank-k, precision@k, open set), detection (AP, recall) and threshold calibration.

The metric functions take plain arrays; the ``evaluate_*`` functions run a recogniser or
detector over a data set, embedding each image once.
"""

from .calibration import CalibrationFile, calibrate_pairs, load_thresholds
from .detection import DetectionReport, average_precision, evaluate_detection, read_boxes
from .identification import (
    IdentificationReport,
    Split,
    evaluate_identification,
    identification_metrics,
    split_gallery,
)
from .metrics import (
    FoldResult,
    OperatingPoint,
    TenFold,
    best_threshold,
    calibrate,
    equal_error_rate,
    pair_scores,
    roc_auc,
    roc_curve,
    tar_at,
    tar_at_far,
    ten_fold_accuracy,
    threshold_at_far,
)
from .pairs import Pair, read_pairs
from .verification import Embeddings, VerificationReport, embed_images, evaluate_verification

__all__ = [
    "CalibrationFile",
    "DetectionReport",
    "Embeddings",
    "FoldResult",
    "IdentificationReport",
    "OperatingPoint",
    "Pair",
    "Split",
    "TenFold",
    "VerificationReport",
    "average_precision",
    "best_threshold",
    "calibrate",
    "calibrate_pairs",
    "embed_images",
    "equal_error_rate",
    "evaluate_detection",
    "evaluate_identification",
    "evaluate_verification",
    "identification_metrics",
    "load_thresholds",
    "pair_scores",
    "read_boxes",
    "read_pairs",
    "roc_auc",
    "roc_curve",
    "split_gallery",
    "tar_at",
    "tar_at_far",
    "ten_fold_accuracy",
    "threshold_at_far",
]
