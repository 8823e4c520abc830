"""Enrolment never aborts on one bad input, and enrols tight and aligned crops (issue 11,
items 2, 11 and 13), on the real SCRFD-2.5G and MobileFaceNet weights."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekit import FaceRecognizer, Gallery
from facekit.errors import ImageError
from facekit.io import ImageInput


@pytest.fixture(scope="module")
def recognizer(models_dir: Path) -> FaceRecognizer:
    return FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )


def _enroller(recognizer: FaceRecognizer, gallery: Path) -> FaceRecognizer:
    return FaceRecognizer(
        detector=recognizer.detector, embedder=recognizer.embedder, gallery=gallery
    )


def _dds_named_jpg() -> bytes:
    """A DDS file whose pixel format Pillow does not implement (it raises
    NotImplementedError): the header of an 8×8 texture with FourCC ``ZZZZ``."""
    header = bytearray(128)
    header[0:4] = b"DDS "
    struct.pack_into("<IIIIIII", header, 4, 124, 0x1007, 8, 8, 0, 0, 1)
    struct.pack_into("<II4s", header, 76, 32, 0x4, b"ZZZZ")
    return bytes(header) + bytes(256)


@pytest.mark.slow
def test_orl_crops_enrol_with_default_options(
    recognizer: FaceRecognizer,
    data_dir: Path,
    tmp_path: Path,
    report: Callable[[str], None],
) -> None:
    # Tight 92×112 grayscale crops of all 40 ORL people (3 of each 10, to keep the test
    # fast; the whole folder of 400 enrolled 400 when measured): the detector's normal pass
    # finds no face filling the image, the second pass for such images does.
    orl = data_dir / "orl_faces"
    inputs = [(f"s{i}", orl / f"s{i}/{n}.png") for i in range(1, 41) for n in (1, 5, 10)]
    assert recognizer.detector.detect_batch([recognizer.load(inputs[0][1])]) == [[]]
    fr = _enroller(recognizer, tmp_path / "orl.db")
    result = fr.enroll(inputs, progress=False)
    groups = {kind: len(problems) for kind, problems in result.failures_by_reason().items()}
    report(f"ORL crops, default options: {len(result.added)} of {len(inputs)} enrolled {groups}")
    assert len(result.added) == len(inputs), groups
    assert {face.identity for face in result.added} == {f"s{i}" for i in range(1, 41)}
    assert all(face.faces_found == 1 for face in result.added)
    # identify falls back to the second pass too: a held-out crop is found and recognised
    (match,) = fr.identify(orl / "s7/2.png")
    assert match.identity == "s7"


def test_160px_and_aligned_crops_enrol_with_default_options(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    # facenet-pytorch's 160×160 MTCNN crops of five people
    crops = data_dir / "facenet_pytorch/test_images_aligned"
    result = _enroller(recognizer, tmp_path / "crops.db").enroll(crops, progress=False)
    assert len(result.added) == 5, result.failed
    assert not result.failed
    # 112×112 crops aligned to the ArcFace template (made by facekit's own aligner from
    # the openface photos), enrolled through detection and with aligned=True
    folder = tmp_path / "aligned"
    folder.mkdir()
    expected = {}
    for name in ("lennon-1", "clapton-1", "carell", "adams"):
        (face,) = recognizer.faces(data_dir / f"openface/{name}.jpg")
        Image.fromarray(face.crop).save(folder / f"{name}.png")
        expected[name] = face.embedding
    detected = _enroller(recognizer, tmp_path / "detected.db").enroll(folder, progress=False)
    assert len(detected.added) == 4, detected.failed
    gallery = tmp_path / "aligned.db"
    aligned = _enroller(recognizer, gallery).enroll(folder, aligned=True, progress=False)
    assert len(aligned.added) == 4
    assert {face.faces_found for face in aligned.added} == {0}
    assert {face.score for face in aligned.added} == {None}
    with Gallery(gallery, create=False) as stored:
        for name, embedding in expected.items():
            (sample,) = stored.embeddings(name)
            # a PNG round trip is lossless: the same crop gives the same embedding
            assert np.allclose(sample, embedding, atol=1e-5)


def test_one_bad_input_never_aborts_an_enrolment(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "people"
    lennon, clapton = data_dir / "openface/lennon-1.jpg", data_dir / "openface/clapton-1.jpg"
    (root / "lennon").mkdir(parents=True)
    shutil.copy(lennon, root / "lennon/1.jpg")
    (root / "lennon/texture.jpg").write_bytes(_dds_named_jpg())
    shutil.copy(data_dir / "mtcnn/no-faces.jpg", root / "lennon/cartoon.jpg")
    (root / "   ").mkdir()  # an identity that is only whitespace
    shutil.copy(data_dir / "openface/carell.jpg", root / "   /1.jpg")
    undecodable = os.path.join(os.fsencode(root), b"caf\xe9")  # Latin-1 folder name
    os.mkdir(undecodable)
    shutil.copy(os.fsencode(data_dir / "openface/adams.jpg"), os.path.join(undecodable, b"1.jpg"))
    (root / "clapton").mkdir()
    shutil.copy(clapton, root / "clapton/1.jpg")
    shutil.copy(
        data_dir / "openface/clapton-2.jpg", os.path.join(os.fsencode(root), b"clapton/\xff.jpg")
    )

    result = _enroller(recognizer, tmp_path / "g.db").enroll(root, progress=False)

    added = sorted((face.identity, Path(face.source).name) for face in result.added)
    assert added == [("clapton", "1.jpg"), ("clapton", "\udcff.jpg"), ("lennon", "1.jpg")]
    failed = {
        Path(p.source).name if p.identity == "lennon" else p.identity: p for p in result.failed
    }
    assert set(failed) == {"texture.jpg", "cartoon.jpg", "   ", "caf\udce9"}
    assert failed["texture.jpg"].kind == "unreadable image"
    assert "texture.jpg" in failed["texture.jpg"].reason
    assert failed["cartoon.jpg"].kind == "no face found"
    assert failed["   "].kind == "invalid identity name"
    assert failed["caf\udce9"].kind == "invalid identity name"
    groups = result.failures_by_reason()
    assert {kind: len(problems) for kind, problems in groups.items()} == {
        "invalid identity name": 2,
        "unreadable image": 1,
        "no face found": 1,
    }
    assert str(result) == "3 added, 0 skipped (already enrolled), 4 failed"
    # a re-run resumes: everything added before is skipped, the failures fail again
    again = _enroller(recognizer, tmp_path / "g.db").enroll(root, progress=False)
    assert (len(again.added), len(again.skipped), len(again.failed)) == (0, 3, 4)


def test_inputs_that_cannot_be_read_are_reported(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    lennon = data_dir / "openface/lennon-1.jpg"
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # reading it would block forever
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    inputs: list[tuple[str, ImageInput]] = [
        ("gone", tmp_path / "deleted-meanwhile.jpg"),
        ("pipe", fifo),
        ("folder", folder),
        ("lennon", lennon),
        ("bytes", b"\x89PNG\r\n\x1a\n truncated"),
    ]
    result = _enroller(recognizer, tmp_path / "g.db").enroll(inputs, progress=False)
    assert [face.identity for face in result.added] == ["lennon"]
    assert [p.identity for p in result.failed] == ["gone", "pipe", "folder", "bytes"]
    assert {p.kind for p in result.failed} == {"unreadable image"}
    assert "deleted-meanwhile.jpg" in result.failed[0].reason


def test_group_photos_and_repeated_content_are_reported(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    group = data_dir / "openface/longoria-cooper.jpg"  # two faces
    lennon = (data_dir / "openface/lennon-1.jpg").read_bytes()
    inputs: list[tuple[str, ImageInput]] = [("cooper", group), ("lennon", lennon)]
    inputs.append(("lennon", bytes(lennon)))  # the same content twice in one batch
    result = _enroller(recognizer, tmp_path / "g.db").enroll(inputs, progress=False)
    assert [(f.identity, f.faces_found) for f in result.added] == [("cooper", 2), ("lennon", 1)]
    assert [f.identity for f in result.several_faces] == ["cooper"]
    assert [(p.identity, p.kind) for p in result.skipped] == [("lennon", "already enrolled")]
    assert "1 from images with several faces" in str(result)


def test_aligned_enrolment_checks_the_crop_size(
    recognizer: FaceRecognizer, data_dir: Path, tmp_path: Path
) -> None:
    crop = data_dir / "facenet_pytorch/test_images_aligned/paul_rudd/1.png"  # 160×160
    result = _enroller(recognizer, tmp_path / "g.db").enroll(
        [("rudd", crop)], aligned=True, progress=False
    )
    assert not result.added
    (problem,) = result.failed
    assert problem.kind == "wrong crop size"
    assert "160x160" in problem.reason
    assert "112x112" in problem.reason
    with pytest.raises(ImageError, match="expects 112x112"):
        recognizer.embed_aligned([crop])
