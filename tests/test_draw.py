"""Drawing detections, side-by-side pictures and saving images."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekit.detectors import SCRFD
from facekit.draw import draw_faces, draw_matches, match_label, save_image, side_by_side
from facekit.errors import ImageError
from facekit.io import load_image
from facekit.types import Detection, FaceMatch


@pytest.fixture(scope="module")
def t1(models_dir: Path, data_dir: Path) -> tuple[np.ndarray, list[Detection]]:
    image = load_image(data_dir / "insightface_samples/t1.jpg")
    return image, SCRFD("scrfd_2.5g", model_dir=models_dir).detect(image)


def test_draw_faces_marks_every_face_and_nothing_else(
    t1: tuple[np.ndarray, list[Detection]],
) -> None:
    image, faces = t1
    before = image.copy()
    labels = ["alice 0.62", None, "björn", "d", "e", "f"]  # None: unknown; ö is drawn as ?
    drawn = draw_faces(image, faces, labels)
    assert np.array_equal(image, before)  # the input is untouched
    assert drawn.shape == image.shape
    assert drawn.dtype == np.uint8
    changed = np.any(drawn != image, axis=2)
    mask = np.zeros_like(changed)
    for face in faces:
        x1, y1, x2, y2 = (round(v) for v in face.box)
        assert changed[y1 - 1 : y1 + 2, x1:x2].any()  # the top edge
        assert changed[y1:y2, x2 - 1 : x2 + 2].any()  # the right edge
        assert changed[max(0, y1 - 30) : y1, x1 : x1 + 20].any()  # the label strip
        mask[max(0, y1 - 60) : y2 + 10, max(0, x1 - 10) : x2 + 60] = True
    assert not changed[~mask].any()  # nothing drawn away from the faces
    unknown = faces[1]
    x1, y1 = round(unknown.box[0]), round(unknown.box[1])
    strip = drawn[max(0, y1 - 20) : y1, x1 : x1 + 10].reshape(-1, 3)
    assert (np.abs(strip.astype(int) - (220, 0, 0)).sum(axis=1) < 30).mean() > 0.5


def test_side_by_side_and_save(data_dir: Path, tmp_path: Path) -> None:
    a = load_image(data_dir / "openface/aligned/lennon-1.png")
    b = load_image(data_dir / "facenet_pytorch/test_images_aligned/paul_rudd/1.png")
    picture = side_by_side(a, b, similarity=0.123, query_label="lennon", match_label="rudd")
    assert picture.dtype == np.uint8
    assert picture.shape[0] > 224
    left = cv2.resize(a, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(picture[:224, :224].astype(int) - left).mean() < 2
    right_start = picture.shape[1] - 224
    right = cv2.resize(b, (224, 224), interpolation=cv2.INTER_LINEAR)
    assert np.abs(picture[:224, right_start:].astype(int) - right).mean() < 2
    caption = picture[224:]
    assert (caption < 128).any()  # text was written
    assert (caption == 255).mean() > 0.5

    png = tmp_path / "match.png"
    save_image(png, picture)
    assert np.array_equal(load_image(png), picture)
    jpg = tmp_path / "match.JPG"
    save_image(jpg, picture)
    assert np.abs(load_image(jpg).astype(int) - picture).mean() < 3
    with pytest.raises(ImageError, match="unsupported image extension"):
        save_image(tmp_path / "match.xyz", picture)
    with pytest.raises(ImageError, match="cannot write"):
        save_image(tmp_path / "missing-folder" / "x.png", picture)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["match.JPG", "match.png"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_save_image_honours_the_umask(tmp_path: Path, umask: int) -> None:
    picture = np.zeros((8, 8, 3), dtype=np.uint8)
    before = os.umask(umask)
    try:
        save_image(tmp_path / "new.png", picture)
        (tmp_path / "old.png").write_bytes(b"")
        save_image(tmp_path / "old.png", picture)  # replaced
    finally:
        os.umask(before)
    for name in ("new.png", "old.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.png", "old.png"]  # no leftovers


def test_save_image_can_refuse_to_overwrite(tmp_path: Path) -> None:
    picture = np.full((8, 8, 3), 7, dtype=np.uint8)
    target = tmp_path / "kept.png"
    save_image(target, picture, overwrite=False)
    assert np.array_equal(load_image(target), picture)
    kept = target.read_bytes()
    with pytest.raises(ImageError, match="already exists"):
        save_image(target, np.zeros_like(picture), overwrite=False)
    assert target.read_bytes() == kept
    assert [p.name for p in tmp_path.iterdir()] == ["kept.png"]


def test_unknown_faces_are_labelled_with_their_nearest_candidate(
    t1: tuple[np.ndarray, list[Detection]],
) -> None:
    image, faces = t1
    known = FaceMatch(faces[0], "alice", 0.62, 0.3, (("alice", 0.62), ("bob", 0.32)), 0.42)
    unknown = FaceMatch(faces[1], None, 0.31, 0.05, (("bob", 0.31), ("carol", 0.26)), 0.42)
    empty = FaceMatch(faces[2], None, -1.0, float("inf"), (), 0.42)
    assert match_label(known) == "alice 0.62"
    assert match_label(unknown) == "unknown (nearest bob 0.31)"
    assert match_label(empty) == "unknown"
    drawn = draw_matches(image, [known, unknown])
    expected = draw_faces(image, faces[:1], ["alice 0.62"])
    expected = draw_faces(expected, faces[1:2], [None])  # box and tint of an unknown face
    differs = np.any(drawn != expected, axis=2)
    x1, y1 = round(faces[1].box[0]), round(faces[1].box[1])
    assert not differs[: y1 - 40].any()  # the same everywhere above the unknown's strip ...
    assert differs[max(0, y1 - 30) : y1, x1:].any()  # ... but its label is longer
    strip = drawn[max(0, y1 - 20) : y1, x1 : x1 + 150].reshape(-1, 3).astype(int)
    assert (np.abs(strip - (220, 0, 0)).sum(axis=1) < 30).mean() > 0.5  # in the unknown tint
