"""5-point similarity alignment (rotation, uniform scale, translation; least squares).

The transform from a face's landmarks to a template is the Umeyama least-squares
similarity, computed for all faces at once, and each face is warped with OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError

__all__ = ["TEMPLATES", "SimilarityAligner", "Template", "estimate_similarity"]

_ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True, slots=True, eq=False)
class Template:
    """Where the 5 landmarks must land in the crop.

    Attributes:
        name: template name.
        size: crop ``(width, height)`` in pixels.
        points: ``(5, 2)`` float32 ``x, y`` targets (left eye, right eye, nose, left and
            right mouth corner, image left/right).
    """

    name: str
    size: tuple[int, int]
    points: np.ndarray


TEMPLATES: dict[str, Template] = {
    template.name: template
    for template in (
        # InsightFace ArcFace training crops.
        Template("arcface112", (112, 112), _ARCFACE_112),
        # SphereFace/CosFace crops: the ArcFace template without its 8-pixel side margins.
        Template("arcface96x112", (96, 112), _ARCFACE_112 - np.array([8.0, 0.0], dtype=np.float32)),
        # The ArcFace template scaled to 160×160, for FaceNet-style 160-pixel networks.
        Template("arcface160", (160, 160), _ARCFACE_112 * np.float32(160.0 / 112.0)),
        # dlib's ResNet face recogniser: where facekit's 5 landmarks fall in dlib's own
        # get_face_chip(..., size=150, padding=0.25) chips. scripts/fit_dlib_template.py:
        # SCRFD 2.5G landmarks mapped into dlib's chips of 457 faces (shared photos + ORL),
        # robust mean; residuals 2.1-2.2 px (eyes), 4.8-5.0 px (nose, mouth) on average. On
        # 76 held-out faces dlib's chip corners are 7.3 px (SCRFD) / 8.9 px (CenterFace) from
        # facekit's, 24 px with the ArcFace template scaled to 150.
        Template(
            "dlib150",
            (150, 150),
            np.array(
                [[46.5, 45.7], [102.0, 45.7], [74.4, 75.7], [50.7, 99.9], [97.8, 100.0]],
                dtype=np.float32,
            ),
        ),
    )
}
"""Built-in templates by name."""


def estimate_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity transforms (Umeyama 1991) mapping ``source`` onto ``target``.

    Args:
        source: ``(N, K, 2)`` points, for example detected landmarks.
        target: ``(K, 2)`` template points.

    Returns:
        ``(N, 2, 3)`` float64 affine matrices ``M`` with ``target ≈ M @ [x, y, 1]``.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean = src.mean(axis=1, keepdims=True)  # (N, 1, 2)
    dst_mean = dst.mean(axis=0)  # (2,)
    src_c = src - src_mean
    dst_c = dst - dst_mean
    covariance = np.einsum("kj,nki->nji", dst_c, src_c) / src.shape[1]  # (N, 2, 2) dst x src
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones((src.shape[0], 2))
    sign[:, 1] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    rotation = u @ (sign[:, :, None] * vt)
    variance = (src_c**2).sum(axis=(1, 2)) / src.shape[1]
    scale = (singular * sign).sum(axis=1) / np.maximum(variance, 1e-12)
    linear = scale[:, None, None] * rotation
    translation = dst_mean - np.einsum("nij,nj->ni", linear, src_mean[:, 0, :])
    return np.concatenate([linear, translation[:, :, None]], axis=2)


class SimilarityAligner:
    """Aligns faces to a `Template` with a 5-point similarity transform.

    Args:
        template: a template name from `TEMPLATES` or a `Template`.
    """

    def __init__(self, template: str | Template = "arcface112") -> None:
        if isinstance(template, str):
            try:
                template = TEMPLATES[template]
            except KeyError:
                raise ConfigError(
                    f"unknown alignment template {template!r}; known: {', '.join(TEMPLATES)}"
                ) from None
        if template.points.shape != (5, 2):
            raise ConfigError("a template needs (5, 2) points")
        self.template = template

    @property
    def size(self) -> tuple[int, int]:
        """Crop ``(width, height)`` in pixels."""
        return self.template.size

    def __repr__(self) -> str:
        return f"SimilarityAligner({self.template.name!r})"

    def transforms(self, landmarks: np.ndarray) -> np.ndarray:
        """``(N, 5, 2)`` landmarks → ``(N, 2, 3)`` image-to-crop affine matrices."""
        points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
        if not np.isfinite(points).all():
            raise ConfigError("landmarks contain NaN: the detector export has no keypoints")
        return estimate_similarity(points, self.template.points)

    def align(
        self, image: np.ndarray, landmarks: np.ndarray, boxes: np.ndarray | None = None
    ) -> np.ndarray:
        """Aligned crops of the faces of one image.

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            landmarks: ``(N, 5, 2)`` (or ``(5, 2)`` for one face) in image pixels.
            boxes: unused (the transform follows the landmarks).

        Returns:
            ``(N, height, width, 3)`` uint8 RGB crops; borders outside the image are black.
        """
        matrices = self.transforms(landmarks)
        width, height = self.size
        crops = np.empty((matrices.shape[0], height, width, 3), dtype=np.uint8)
        for index, matrix in enumerate(matrices):  # cv2.warpAffine takes one matrix
            crops[index] = cv2.warpAffine(image, matrix, (width, height), borderValue=0.0)
        return crops
