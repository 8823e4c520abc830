"""The second detection pass for faces that fill the image (`detect_filling`), on the real
shared crops: every ORL face (92×112), facenet-pytorch's 160×160 crops and 112×112 ArcFace
crops aligned here from real photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit.aligners import TEMPLATES, SimilarityAligner
from facekit.detectors import SCRFD
from facekit.detectors.tight import Resizable, detect_filling
from facekit.errors import ConfigError
from facekit.io import load_image
from facekit.types import Detection

# Real photos with one large face each, and t1.jpg's six faces.
_PHOTOS = [
    "openface/adams.jpg",
    "openface/carell.jpg",
    "openface/clapton-1.jpg",
    "openface/clapton-2.jpg",
    "openface/lennon-2.jpg",
    "insightface_samples/t1.jpg",
]


@pytest.fixture(scope="module")
def scrfd(models_dir: Path) -> SCRFD:
    """The detector as the recogniser builds it by default: 640 input."""
    return SCRFD("scrfd_2.5g", model_dir=models_dir)


@pytest.fixture(scope="module")
def orl(data_dir: Path) -> list[np.ndarray]:
    paths = sorted((data_dir / "orl_faces").glob("s*/*.png"))
    assert len(paths) == 400
    return [load_image(path) for path in paths]


@pytest.fixture(scope="module")
def crops160(data_dir: Path) -> list[np.ndarray]:
    paths = sorted((data_dir / "facenet_pytorch/test_images_aligned").glob("*/1.png"))
    assert len(paths) == 5
    return [load_image(path) for path in paths]


@pytest.fixture(scope="module")
def crops112(scrfd: SCRFD, data_dir: Path) -> list[np.ndarray]:
    """ArcFace 112×112 crops made with facekit's own detector and aligner: 11 faces."""
    aligner = SimilarityAligner("arcface112")
    crops = []
    for name in _PHOTOS:
        image = load_image(data_dir / name)
        found = scrfd.detect(image)
        crops.extend(aligner.align(image, np.stack([d.landmarks for d in found])))
    assert len(crops) == 11
    return crops


def _plausible(detection: Detection, image: np.ndarray) -> bool:
    """Landmarks of an upright frontal face: inside the image, eyes in its upper two thirds
    and left of right, nose below the eyes and above the mouth."""
    height, width = image.shape[:2]
    eye_l, eye_r, nose, mouth_l, mouth_r = detection.landmarks
    return bool(
        (detection.landmarks >= 0).all()
        and (detection.landmarks[:, 0] <= width).all()
        and (detection.landmarks[:, 1] <= height).all()
        and eye_l[0] < eye_r[0]
        and mouth_l[0] < mouth_r[0]
        and max(eye_l[1], eye_r[1]) < 2 * height / 3
        and max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    )


def _one_plausible_face(images: list[np.ndarray], found: list[list[Detection]]) -> int:
    """How many images got exactly one plausible face with a box inside the image."""
    good = 0
    for image, faces in zip(images, found, strict=True):
        height, width = image.shape[:2]
        if len(faces) != 1:
            continue
        x1, y1, x2, y2 = faces[0].box
        if 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height and _plausible(faces[0], image):
            good += 1
    return good


def test_the_normal_pass_misses_faces_that_fill_the_frame(
    scrfd: SCRFD, orl: list[np.ndarray], crops160: list[np.ndarray], crops112: list[np.ndarray]
) -> None:
    """Why the second pass exists: SCRFD at 640 finds none of these."""
    assert scrfd.detect_batch([orl[0], crops160[0], crops112[0]]) == [[], [], []]


@pytest.mark.parametrize(("model", "step"), [("scrfd_500m", 1), ("scrfd_2.5g", 4)])
def test_every_orl_face_is_found(
    models_dir: Path,
    orl: list[np.ndarray],
    report: Callable[[str], None],
    model: str,
    step: int,
) -> None:
    """All 400 faces with SCRFD-500M; every 4th with SCRFD-2.5G (all 400 measured: 400)."""
    images = orl[::step]
    found = detect_filling(SCRFD(model, model_dir=models_dir), images)
    good = _one_plausible_face(images, found)
    report(f"detect_filling, {model}: {good}/{len(images)} ORL faces")
    assert good == len(images)
    assert min(faces[0].score for faces in found) > 0.7


def test_160_and_112_crops_are_found(
    scrfd: SCRFD, crops160: list[np.ndarray], crops112: list[np.ndarray]
) -> None:
    assert _one_plausible_face(crops160, detect_filling(scrfd, crops160)) == 5
    found = detect_filling(scrfd, crops112)
    assert _one_plausible_face(crops112, found) == 11
    # The crops were aligned to the template: the landmarks found again sit near it
    # (SCRFD's landmarks scatter a few pixels from face to face).
    template = TEMPLATES["arcface112"].points
    errors = np.array([np.linalg.norm(f[0].landmarks - template, axis=1).max() for f in found])
    assert np.median(errors) < 8.0
    assert errors.max() < 16.0


def test_landmarks_map_back_to_the_original_image(scrfd: SCRFD, data_dir: Path) -> None:
    """The same faces found normally and through the shrunk, padded, small-input pass land
    on the same pixels (within SCRFD's own scatter between scales, a few % of the face):
    large faces in large photos (shrink and border undone) and a tight crop cut out of
    t1.jpg (offset undone)."""
    photos = [load_image(data_dir / f"openface/{name}.jpg") for name in ("carell", "adams")]
    t1 = load_image(data_dir / "insightface_samples/t1.jpg")
    face = max(scrfd.detect(t1), key=lambda d: d.box[0])
    x1, y1, x2, y2 = (round(v) for v in face.box)
    left, top = max(0, x1 - 10), max(0, y1 - 10)
    crop = t1[top : y2 + 10, left : x2 + 10]

    normal = [scrfd.detect(photo)[0] for photo in photos] + [face]
    filled = [faces[0] for faces in detect_filling(scrfd, [*photos, crop])]
    shifts = [np.zeros(2), np.zeros(2), np.array([left, top], dtype=np.float64)]
    for reference, found, shift in zip(normal, filled, shifts, strict=True):
        size = reference.width
        assert np.abs(found.landmarks + shift - reference.landmarks).max() < 0.06 * size
        box = np.array(found.box) + np.tile(shift, 2)
        assert np.abs(box - np.array(reference.box)).max() < 0.1 * size
    # Boxes are clipped to the crop, not to the padded canvas.
    assert min(filled[2].box) >= 0
    assert filled[2].box[2] <= crop.shape[1]
    assert filled[2].box[3] <= crop.shape[0]


def test_no_face_is_invented(scrfd: SCRFD, data_dir: Path, models_dir: Path) -> None:
    empty = load_image(data_dir / "mtcnn/no-faces.jpg")
    dark = np.zeros((112, 112, 3), np.uint8)
    assert detect_filling(scrfd, [empty, dark]) == [[], []]
    small = SCRFD("scrfd_500m", model_dir=models_dir)
    assert detect_filling(small, [empty, dark]) == [[], []]


def test_detectors_that_cannot_resize_are_padded_only(
    models_dir: Path, orl: list[np.ndarray]
) -> None:
    """A graph with a fixed 640 input runs the padded image at 640 (slower, also found)."""
    fixed = SCRFD("scrfd_2.5g_kps_640", model_dir=models_dir)
    assert isinstance(fixed, Resizable)
    with pytest.raises(ConfigError, match="fixed input"):
        fixed.with_input_size((160, 160))
    sample = orl[::200]
    assert _one_plausible_face(sample, detect_filling(fixed, sample)) == len(sample)


def test_bad_arguments(scrfd: SCRFD) -> None:
    with pytest.raises(ConfigError, match="padding"):
        detect_filling(scrfd, [], padding=3.0)
    with pytest.raises(ConfigError, match="max_side"):
        detect_filling(scrfd, [], max_side=8)
    with pytest.raises(ConfigError, match="uint8"):
        detect_filling(scrfd, [np.zeros((112, 112), np.uint8)])
    assert detect_filling(scrfd, []) == []
