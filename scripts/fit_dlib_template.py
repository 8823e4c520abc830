"""Fit facekit's ``dlib150`` alignment template against dlib's own 150×150 face chips.

dlib's face recogniser (``dlib_face_recognition_resnet_model_v1``) was trained on chips made
by ``dlib.get_face_chip(image, shape, size=150, padding=0.25)`` from its 5-point shape
predictor, whose points (eye corners, nose bottom) are not facekit's. For every face of the
shared photos this script

1. finds the face with dlib (HOG detector + ``shape_predictor_5_face_landmarks.dat``) and
   takes the image→chip similarity of ``dlib.get_face_chip_details(shape, 150, 0.25)``
   (dlib's ``get_mapping_to_chip``, written out in `chip_matrix`);
2. finds the same face with facekit's SCRFD 2.5G (matched by box IoU) and maps its 5
   landmarks (eye centres, nose tip, mouth corners) through that similarity into the chip;
3. averages the mapped landmarks robustly (coordinate-wise median, then faces whose worst
   point is far from it are dropped and the rest averaged) into the template.

It then aligns the held-out faces (`HELD_OUT`, never used in the fit) with facekit's
`SimilarityAligner` on the fitted template and measures how far facekit's crop is from
dlib's chip: where dlib's chip corners land in facekit's crop (px) and the mean absolute
pixel difference of the two crops, next to the same numbers for the ArcFace template scaled
to 150 px. Usage::

    python scripts/fit_dlib_template.py --shared ../shared [--no-orl] [--detector centerface]

``--detector centerface`` fits CenterFace's landmarks instead and also reports the built-in
``dlib150`` (fitted on SCRFD) on them.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import dlib
import numpy as np

from facekit.aligners import TEMPLATES, SimilarityAligner, Template
from facekit.detectors import SCRFD
from facekit.detectors.centerface import CenterFace
from facekit.io import load_image

FaceDetector = SCRFD | CenterFace
DETECTORS: dict[str, type[FaceDetector]] = {"scrfd_2.5g": SCRFD, "centerface": CenterFace}
"""Detectors whose landmarks can be fitted (``--detector``); the template is fitted on SCRFD."""

CHIP_SIZE = 150
CHIP_PADDING = 0.25

PHOTOS = (
    "openface/adams.jpg",
    "openface/carell.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/lennon-1.jpg",
    "openface/lennon-2.jpg",
    "openface/longoria-cooper.jpg",
    "facenet_pytorch/angelina_jolie/1.jpg",
    "facenet_pytorch/kate_siegel/1.jpg",
    "facenet_pytorch/paul_rudd/1.jpg",
    "facenet_pytorch/shea_whigham/1.jpg",
    "facenet_pytorch/multiface.jpg",
    "insightface_samples/t1.jpg",
    "insightface_samples/t2.jpg",
    "insightface_samples/t3.jpg",
    "insightface_samples/t4.jpg",
    "insightface_samples/t5.jpg",
    "insightface_samples/t6.jpg",
    "mtcnn/ivan.jpg",
)
"""Photos (paths under ``data/``) whose faces are used."""

HELD_OUT = (
    "openface/carell.jpg",
    "openface/clapton-2.jpg",
    "openface/longoria-cooper.jpg",
    "mtcnn/ivan.jpg",
    "insightface_samples/t4.jpg",
)
"""Photos kept out of the fit, for measuring it (tests/test_dlib_template.py uses some)."""

ORL_HELD_OUT = ("s1", "s2", "s3", "s4", "s5")
"""ORL subjects kept out of the fit."""

_CORNERS = np.array(
    [[0, 0], [CHIP_SIZE - 1, 0], [0, CHIP_SIZE - 1], [CHIP_SIZE - 1, CHIP_SIZE - 1]],
    dtype=np.float64,
)


@dataclass(frozen=True, slots=True)
class Face:
    """One face seen by both dlib and facekit's detector.

    Attributes:
        source: image path under ``data/``.
        image: ``(H, W, 3)`` uint8 RGB image the face is in (padded for ORL).
        shape: dlib's 5-point ``full_object_detection``.
        to_chip: ``(2, 3)`` dlib's image→chip similarity.
        landmarks: ``(5, 2)`` facekit's landmarks (SCRFD's unless ``--detector``) in
            image pixels.
        iou: box IoU of the dlib and facekit detections.
    """

    source: str
    image: np.ndarray
    shape: dlib.full_object_detection
    to_chip: np.ndarray
    landmarks: np.ndarray
    iou: float


def chip_matrix(details: dlib.chip_details) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: the ``(2, 3)`` image→chip affine of a chip.

    The chip's rectangle, rotated by its angle about its centre, has its top-left,
    top-right and bottom-right corners at chip pixels ``(0, 0)``, ``(cols-1, 0)`` and
    ``(cols-1, rows-1)``.
    """
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array(
        [[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]]
    )
    source = (corners - centre) @ rotation.T + centre
    target = np.array(
        [[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], dtype=np.float64
    )
    # three point pairs fix the affine: [x y 1] @ matrix.T = target
    return np.asarray(np.linalg.solve(np.column_stack([source, np.ones(3)]), target).T)


def dlib_chip(face: Face) -> np.ndarray:
    """dlib's own ``(150, 150, 3)`` uint8 RGB chip of ``face``."""
    return np.asarray(dlib.get_face_chip(face.image, face.shape, CHIP_SIZE, CHIP_PADDING))


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(..., 2)`` points mapped by a ``(2, 3)`` affine."""
    return np.asarray(points @ matrix[:, :2].T + matrix[:, 2])


def invert(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a ``(2, 3)`` affine."""
    return np.asarray(cv2.invertAffineTransform(matrix))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def faces_in(
    source: str,
    image: np.ndarray,
    dlib_detector: dlib.fhog_object_detector,
    predictor: dlib.shape_predictor,
    detector: FaceDetector,
    *,
    upsample: int,
    min_iou: float = 0.4,
) -> Iterator[Face]:
    """The faces of ``image`` found by both dlib and ``detector``, matched by best box IoU."""
    found = detector.detect(image)
    if not found:
        return
    boxes = np.array([d.box for d in found])
    for rect in dlib_detector(image, upsample):
        box = np.array([rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1], float)
        ious = [_iou(box, other) for other in boxes]
        best = int(np.argmax(ious))
        if ious[best] < min_iou:
            continue
        shape = predictor(image, rect)
        details = dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        yield Face(
            source,
            image,
            shape,
            chip_matrix(details),
            np.asarray(found[best].landmarks, np.float64),
            ious[best],
        )


def collect(shared: Path, orl: bool, detector_name: str = "scrfd_2.5g") -> list[Face]:
    """All faces of `PHOTOS` (and the ORL set when ``orl``) seen by dlib and by facekit's
    detector ``detector_name`` (a key of `DETECTORS`)."""
    data = shared / "data"
    dlib_detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(
        str(shared / "models/dlib/shape_predictor_5_face_landmarks.dat")
    )
    detector = DETECTORS[detector_name](detector_name, model_dir=shared / "models")
    faces: list[Face] = []
    for relative in PHOTOS:
        image = load_image(data / relative)
        upsample = 1 if max(image.shape[:2]) <= 1500 else 0
        faces += faces_in(relative, image, dlib_detector, predictor, detector, upsample=upsample)
    if orl:
        # tight 92×112 crops: pad by half the size on each side so that both detectors see
        # a whole face with background around it
        small = detector.with_input_size((320, 320))
        for path in sorted((data / "orl_faces").glob("s*/*.png")):
            image = load_image(path)
            height, width = image.shape[:2]
            padded = cv2.copyMakeBorder(
                image, height // 2, height // 2, width // 2, width // 2, cv2.BORDER_CONSTANT
            )
            relative = str(path.relative_to(data))
            faces += faces_in(relative, padded, dlib_detector, predictor, small, upsample=2)
    return faces


def is_held_out(face: Face) -> bool:
    """Whether ``face`` is kept out of the fit."""
    parts = Path(face.source).parts
    if parts[0] == "orl_faces":
        return parts[1] in ORL_HELD_OUT
    return face.source in HELD_OUT


def fit_template(points: np.ndarray, cutoff: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Robust mean of ``(N, 5, 2)`` chip points.

    The coordinate-wise median first; a face whose farthest point is more than ``cutoff``
    robust standard deviations (1.4826 MAD) above the median of those distances is dropped,
    and the remaining faces are averaged.

    Returns:
        The ``(5, 2)`` template and the ``(N,)`` boolean inlier mask.
    """
    median = np.median(points, axis=0)
    worst = np.linalg.norm(points - median, axis=2).max(axis=1)
    centre = np.median(worst)
    spread = 1.4826 * np.median(np.abs(worst - centre))
    inliers = worst <= centre + cutoff * max(spread, 1e-6)
    return points[inliers].mean(axis=0), inliers


def corner_shift(faces: Sequence[Face], template: Template) -> np.ndarray:
    """``(N, 4)`` px: where dlib's chip corners land in facekit's crop, distance from the
    same corner."""
    aligner = SimilarityAligner(template)
    matrices = aligner.transforms(np.stack([face.landmarks for face in faces]))
    shifts = []
    for face, matrix in zip(faces, matrices, strict=True):
        in_image = apply(invert(face.to_chip), _CORNERS)
        shifts.append(np.linalg.norm(apply(matrix, in_image) - _CORNERS, axis=1))
    return np.array(shifts)


def discrepancy(faces: Sequence[Face], template: Template) -> np.ndarray:
    """``(N, 3)``: facekit's crop relative to dlib's chip as a similarity, split into its
    scale error (percent, absolute log ratio), rotation (degrees, absolute) and the shift of
    the chip centre (px)."""
    matrices = SimilarityAligner(template).transforms(np.stack([face.landmarks for face in faces]))
    rows = []
    for face, matrix in zip(faces, matrices, strict=True):
        chip_to_image = invert(face.to_chip)
        linear = matrix[:, :2] @ chip_to_image[:, :2]  # chip → facekit crop
        centre = np.full(2, (CHIP_SIZE - 1) / 2)
        moved = apply(matrix, apply(chip_to_image, centre))
        rows.append(
            [
                100 * abs(np.log(np.hypot(linear[0, 0], linear[1, 0]))),
                abs(np.degrees(np.arctan2(linear[1, 0], linear[0, 0]))),
                float(np.linalg.norm(moved - centre)),
            ]
        )
    return np.array(rows)


def pixel_difference(faces: Sequence[Face], template: Template | None) -> np.ndarray:
    """``(N,)`` mean absolute difference (0–255) between dlib's chip and facekit's crop on
    ``template``, or, for ``None``, OpenCV's bilinear warp by dlib's own transform (the floor
    set by dlib's pyramid down-sampling)."""
    result = []
    for face in faces:
        if template is None:
            crop = cv2.warpAffine(face.image, face.to_chip, (CHIP_SIZE, CHIP_SIZE))
        else:
            crop = SimilarityAligner(template).align(face.image, face.landmarks)[0]
        result.append(np.abs(crop.astype(np.float64) - dlib_chip(face)).mean())
    return np.array(result)


def descriptor_distance(
    faces: Sequence[Face], template: Template, network: dlib.face_recognition_model_v1
) -> np.ndarray:
    """``(N,)`` Euclidean distance between dlib's 128-d descriptors of facekit's crop and of
    dlib's own chip (dlib's same-person tolerance is 0.6)."""
    result = []
    for face in faces:
        crop = SimilarityAligner(template).align(face.image, face.landmarks)[0]
        ours = np.array(network.compute_face_descriptor(crop))
        theirs = np.array(network.compute_face_descriptor(dlib_chip(face)))
        result.append(np.linalg.norm(ours - theirs))
    return np.array(result)


def arcface150() -> Template:
    """The ArcFace template scaled to 150 px, the obvious but wrong guess, for comparison."""
    base = TEMPLATES["arcface160"]
    return Template("arcface150", (CHIP_SIZE, CHIP_SIZE), base.points * np.float32(150 / 160))


def _summary(values: np.ndarray) -> str:
    return f"mean {values.mean():.2f}  median {np.median(values):.2f}  max {values.max():.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).parents[2] / "shared")
    parser.add_argument("--no-orl", action="store_true", help="leave out the ORL faces")
    parser.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        default="scrfd_2.5g",
        help="facekit detector whose landmarks are fitted (default: scrfd_2.5g)",
    )
    args = parser.parse_args(argv)

    faces = collect(args.shared, orl=not args.no_orl, detector_name=args.detector)
    fit = [face for face in faces if not is_held_out(face)]
    held = [face for face in faces if is_held_out(face)]
    photos = sum(not face.source.startswith("orl_faces") for face in faces)
    print(f"faces seen by dlib and the detector: {len(faces)} ({photos} in photos, rest ORL)")
    print(f"fit on {len(fit)}, held out {len(held)}")
    print(f"dlib/detector box IoU: {_summary(np.array([face.iou for face in faces]))}")

    points = np.stack([apply(face.to_chip, face.landmarks) for face in fit])
    template_points, inliers = fit_template(points)
    print(f"inliers: {int(inliers.sum())} of {len(fit)}")
    names = ("left eye", "right eye", "nose tip", "left mouth", "right mouth")
    residuals = np.linalg.norm(points - template_points, axis=2)  # (N, 5)
    print("residuals in the 150x150 chip, px (fit faces; inliers | all):")
    for index, name in enumerate(names):
        column = residuals[:, index]
        print(
            f"  {name:12s} mean {column[inliers].mean():.2f} max {column[inliers].max():.2f}"
            f" | mean {column.mean():.2f} max {column.max():.2f}"
        )
    held_points = np.stack([apply(face.to_chip, face.landmarks) for face in held])
    held_residuals = np.linalg.norm(held_points - template_points, axis=2)
    print(
        "held-out residuals, px: "
        + ", ".join(
            f"{name} {held_residuals[:, i].mean():.2f}/{held_residuals[:, i].max():.2f}"
            for i, name in enumerate(names)
        )
    )

    rounded = np.round(template_points, 1).astype(np.float32)
    fitted = Template("dlib150-fitted", (CHIP_SIZE, CHIP_SIZE), rounded)
    print("held-out faces, facekit crop vs dlib chip:")
    network = dlib.face_recognition_model_v1(
        str(args.shared / "models/dlib/dlib_face_recognition_resnet_model_v1.dat")
    )
    compared = [("fitted", fitted), ("arcface160 scaled to 150", arcface150())]
    if "dlib150" in TEMPLATES:
        compared.insert(1, ("built-in dlib150", TEMPLATES["dlib150"]))
    for label, template in compared:
        shifts = corner_shift(held, template)
        print(f"  {label}: corner shift px {_summary(shifts)}")
        scale, angle, centre = discrepancy(held, template).T
        print(f"  {label}: scale error % {_summary(scale)}")
        print(f"  {label}: rotation deg {_summary(angle)}")
        print(f"  {label}: centre shift px {_summary(centre)}")
        print(f"  {label}: mean abs pixel difference {_summary(pixel_difference(held, template))}")
        distance = descriptor_distance(held, template, network)
        print(f"  {label}: dlib descriptor distance to dlib's chip {_summary(distance)}")
    floor = pixel_difference(held, None)
    print(f"  dlib's own transform with OpenCV's warp (floor): {_summary(floor)}")
    for label, subset in (
        ("photos", [face for face in held if not face.source.startswith("orl_faces")]),
        ("ORL", [face for face in held if face.source.startswith("orl_faces")]),
    ):
        if subset:
            shifts = corner_shift(subset, fitted)
            print(f"  fitted, {label} only ({len(subset)}): corner shift px {_summary(shifts)}")
    print("  per held-out photo face (fitted | arcface150), mean corner shift px:")
    for face, ours, theirs in zip(
        held,
        corner_shift(held, fitted).mean(axis=1),
        corner_shift(held, arcface150()).mean(axis=1),
        strict=True,
    ):
        if not face.source.startswith("orl_faces"):
            eyes = np.linalg.norm(face.landmarks[0] - face.landmarks[1])
            print(f"    {face.source} (eyes {eyes:.0f} px apart): {ours:.1f} | {theirs:.1f}")

    print("template (150x150, facekit landmark order):")
    print("np.array([")
    for x, y in rounded:
        print(f"    [{x:.1f}, {y:.1f}],")
    print("], dtype=np.float32)")


if __name__ == "__main__":
    main()
