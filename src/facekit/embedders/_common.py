"""What every embedder does around its network: input checks, flip-averaging, normalising."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import ConfigError
from ..types import Thresholds

__all__ = ["check_crops", "flip_averaged", "flip_summed", "l2_normalize", "require_thresholds"]


def check_crops(crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Validate ``(N, H, W, 3)`` uint8 crops of ``size = (W, H)``; a single crop gains N=1."""
    array = np.asarray(crops)
    if array.ndim == 3:
        array = array[None]
    width, height = size
    if array.ndim != 4 or array.shape[1:] != (height, width, 3) or array.dtype != np.uint8:
        raise ConfigError(
            f"expected uint8 crops of shape (N, {height}, {width}, 3), got {array.dtype} "
            f"{array.shape}; align faces with the embedder's template first"
        )
    return array


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32). A zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalized: np.ndarray = vectors / np.maximum(norms, np.float32(1e-12))
    return normalized


def flip_summed(
    crops: np.ndarray, run: Callable[[np.ndarray], np.ndarray], flip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Raw embeddings of ``crops`` plus (if ``flip``) those of their horizontal mirrors,
    computed in one batch.

    Args:
        crops: ``(N, H, W, 3)`` uint8 RGB.
        run: maps ``(M, H, W, 3)`` uint8 crops to ``(M, D)`` raw embeddings.
        flip: add the mirrored crops' embeddings.

    Returns:
        ``(N, D)`` float32 sums (not normalised) and ``(N,)`` L2 norms of the unmirrored
        crops' raw embeddings.
    """
    count = crops.shape[0]
    if count == 0:
        raise ConfigError("no crops to embed")
    raw = np.asarray(run(np.concatenate([crops, crops[:, :, ::-1]]) if flip else crops))
    norms = np.linalg.norm(raw[:count], axis=1).astype(np.float32)
    return (raw[:count] + raw[count:] if flip else raw).astype(np.float32, copy=False), norms


def flip_averaged(
    crops: np.ndarray, run: Callable[[np.ndarray], np.ndarray], flip: bool
) -> np.ndarray:
    """Embed ``crops`` and (if ``flip``) their horizontal mirrors in one batch, sum the two
    raw embeddings of each face and L2-normalise (see `flip_summed`).

    Returns:
        ``(N, D)`` float32 unit vectors.
    """
    return l2_normalize(flip_summed(crops, run, flip)[0])


def require_thresholds(thresholds: Thresholds | None, name: str) -> Thresholds:
    """``thresholds``, or the clear error for a model that has none (an embedder's
    ``thresholds`` is ``None``): what `FaceRecognizer` raises when a verdict needs them.

    Args:
        thresholds: the embedder's (or an override's) thresholds.
        name: the embedder's model name, for the message.

    Raises:
        ConfigError: ``thresholds`` is ``None``.
    """
    if thresholds is None:
        raise ConfigError(
            f"facekit has no calibrated thresholds for {name} (not calibrated: an unlisted "
            "model, or weights facekit could not measure); calibrate them on your own pairs "
            "(facekit calibrate) and pass thresholds=Thresholds(likely=..., same=...) or "
            "thresholds='calib.json'"
        )
    return thresholds
