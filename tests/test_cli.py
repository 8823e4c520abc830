"""The ``facekit`` command, run in-process (`facekit.cli.main`) and as ``python -m facekit``,
on the real small models and photos."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from facekit.cli import main
from facekit.draw import save_image
from facekit.io import load_image

DETECTOR = ["--detector-model", "scrfd_2.5g"]
EMBEDDER = ["--embedder-model", "mobilefacenet_128d"]


@pytest.fixture
def detector_options(models_dir: Path) -> list[str]:
    return [*DETECTOR, "--model-dir", str(models_dir)]


@pytest.fixture
def model_options(models_dir: Path) -> list[str]:
    return [*DETECTOR, *EMBEDDER, "--model-dir", str(models_dir)]


@pytest.fixture
def umask_027() -> Iterator[None]:
    before = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(before)


# --- facekit detect ----------------------------------------------------------------------


def test_detect_json_finds_the_six_faces_of_t1(
    data_dir: Path, detector_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    t1 = str(data_dir / "insightface_samples/t1.jpg")
    assert main(["detect", t1, *detector_options, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert entry["image"] == t1
    assert len(entry["faces"]) == 6
    for face in entry["faces"]:
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= 1280
        assert 0 <= y1 < y2 <= 886
        assert 0.5 < face["score"] <= 1
        assert len(face["landmarks"]) == 5
    assert main(["detect", t1, *detector_options]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0] == f"{t1}: 6 face(s)"
    assert len(text) == 7


def test_detect_goes_on_after_a_bad_file(
    data_dir: Path,
    detector_options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    ivan = str(data_dir / "mtcnn/ivan.jpg")
    assert main(["detect", str(bad), ivan, *detector_options, "--json"]) == 1
    captured = capsys.readouterr()
    first, second = json.loads(captured.out)
    assert "notes.jpg" in first["error"]
    assert len(second["faces"]) == 1
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("facekit: error: ")
    assert "notes.jpg" in captured.err


def test_options_after_the_subcommand(
    data_dir: Path, detector_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from facekit.cli import _parser

    for argv in (
        ["-v", "verify", "a", "b"],
        ["verify", "-v", "a", "b"],
        ["verify", "a", "b", "-v"],
    ):
        assert _parser().parse_args(argv).verbose is True
    assert _parser().parse_args(["verify", "a", "b"]).verbose is False
    assert _parser().parse_args(["gallery", "list", "g", "--verbose"]).verbose is True
    ivan = str(data_dir / "mtcnn/ivan.jpg")
    assert main(["detect", "-v", ivan, *detector_options, "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith(f"{ivan}: 1 face(s)")


def test_device_option_reaches_the_backend(
    data_dir: Path, detector_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    import onnxruntime

    ivan = str(data_dir / "mtcnn/ivan.jpg")
    code = main(["detect", ivan, *detector_options, "--device", "cuda:0"])
    captured = capsys.readouterr()
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert code == 0
    else:  # asked for a GPU that onnxruntime cannot use: a clear one-line error
        assert code == 1
        assert captured.err.startswith("facekit: error: ")
        assert "cuda" in captured.err.lower()
        assert captured.err.count("\n") == 1
    assert main(["detect", ivan, *detector_options, "--device", "tpu"]) == 1
    assert capsys.readouterr().err.startswith("facekit: error: ")


def test_help_names_facekit_home_and_shows_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "FACEKIT_HOME" in text
    assert "detect" in text
    with pytest.raises(SystemExit):
        main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: open)" in text
    assert "(default: the preset's)" in text
    assert "(default: largest)" in text
    assert "$FACEKIT_HOME" in text
    with pytest.raises(SystemExit):
        main(["enroll", "--help"])
    assert "--aligned" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["eval", "identify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.0)" in text  # falsy defaults are shown too
    assert "(default: 0)" in text


def test_progress_bar_only_when_wanted(
    data_dir: Path,
    detector_options: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = [str(data_dir / "mtcnn/ivan.jpg"), str(data_dir / "mtcnn/no-faces.jpg")]
    assert main(["detect", *images, *detector_options]) == 0
    assert "2/2" not in capsys.readouterr().err  # stderr is not a terminal here
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["detect", *images, *detector_options]) == 0
    assert "2/2" in capsys.readouterr().err
    assert main(["detect", *images, *detector_options, "--no-progress"]) == 0
    assert "2/2" not in capsys.readouterr().err


# --- --draw outputs ----------------------------------------------------------------------


def test_draw_keeps_same_named_files_from_two_folders(
    data_dir: Path,
    detector_options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    umask_027: None,
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(data_dir / "insightface_samples/t1.jpg", tmp_path / "a/photo.jpg")
    shutil.copy(data_dir / "mtcnn/ivan.jpg", tmp_path / "b/photo.jpg")
    save_image(tmp_path / "b/clapton.png", load_image(data_dir / "openface/clapton-2.jpg"))
    inputs = [str(tmp_path / "a/photo.jpg"), str(tmp_path / "b/photo.jpg")]
    inputs.append(str(tmp_path / "b/clapton.png"))
    out = tmp_path / "drawn"
    assert main(["detect", *inputs, *detector_options, "--draw", str(out), "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    drawn = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert drawn == ["a/photo.jpg", "b/clapton.png", "b/photo.jpg"]
    assert [e["drawn"] for e in entries] == [
        str(out / "a/photo.jpg"),
        str(out / "b/photo.jpg"),
        str(out / "b/clapton.png"),
    ]
    for source, name in zip(inputs, ("a/photo.jpg", "b/photo.jpg", "b/clapton.png"), strict=True):
        written = out / name
        original = load_image(source)
        picture = load_image(written)
        assert picture.shape == original.shape  # each input kept its own copy
        assert (picture != original).any()  # with boxes drawn on it
        head = written.read_bytes()[:4]
        assert head[:2] == b"\xff\xd8" if name.endswith(".jpg") else head == b"\x89PNG"
        assert stat.S_IMODE(written.stat().st_mode) == 0o640  # 0o666 less the umask 027

    # Existing outputs are never replaced unless asked.
    before = (out / "a/photo.jpg").read_bytes()
    assert main(["detect", inputs[1], *detector_options, "--draw", str(out / "b")]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err
    assert "--overwrite" in err
    assert err.count("\n") == 1
    assert main(["detect", *inputs[:2], *detector_options, "--draw", str(out)]) == 1
    capsys.readouterr()
    assert (out / "a/photo.jpg").read_bytes() == before
    assert (
        main(["detect", inputs[1], *detector_options, "--draw", str(out / "b"), "--overwrite"]) == 0
    )
    assert load_image(out / "b/photo.jpg").shape == load_image(inputs[1]).shape

    # Asked for another format; names that would clash get a suffix.
    png = tmp_path / "png"
    args = ["detect", inputs[1], inputs[1], *detector_options]
    assert main([*args, "--draw", str(png), "--draw-format", "png"]) == 0
    assert sorted(p.name for p in png.iterdir()) == ["photo-2.png", "photo.png"]
    assert (png / "photo.png").read_bytes()[:4] == b"\x89PNG"


def test_draw_into_an_unusable_folder_is_one_line(
    data_dir: Path,
    detector_options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ivan = str(data_dir / "mtcnn/ivan.jpg")
    assert main(["detect", ivan, *detector_options, "--draw", str(blocker / "sub")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("facekit: error: ")
    assert err.count("\n") == 1
    assert str(blocker) in err


# --- enroll / identify / verify ----------------------------------------------------------


def test_verify_says_which_of_several_faces_it_used(
    data_dir: Path, model_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    pair = str(data_dir / "openface/longoria-cooper.jpg")
    carell = str(data_dir / "openface/carell.jpg")
    assert main(["verify", pair, carell, *model_options]) == 0
    captured = capsys.readouterr()
    assert f"2 faces in {pair}, used the largest" in captured.err
    assert carell not in captured.err
    assert main(["verify", pair, carell, *model_options, "--json", "--face", "best"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["faces_found"] == [2, 1]
    assert f"2 faces in {pair}, used the highest-scoring" in captured.err


def test_enroll_with_nothing_added_exits_nonzero_with_grouped_reasons(
    data_dir: Path, model_options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    for name in ("squid", "octopus", "kraken", "nautilus"):
        shutil.copy(data_dir / "mtcnn/no-faces.jpg", folder / f"{name}.jpg")
        # Different bytes, so none counts as a copy of another.
        with (folder / f"{name}.jpg").open("ab") as handle:
            handle.write(name.encode())
    (folder / "notes.jpg").write_text("not an image")
    gallery = str(tmp_path / "g.facekit")
    code = main(["enroll", str(folder), "--gallery", gallery, *model_options, "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    out, err = captured.out, captured.err
    assert out.startswith("0 added, 0 skipped (already enrolled), 5 failed")
    assert "  no face found: 4 image(s), e.g. " in out
    assert "  unreadable image: 1 image(s), e.g. notes.jpg" in out
    assert out.index("no face found") < out.index("unreadable image")  # largest group first
    assert ", ..." in out  # 3 examples of 4
    assert out.count("hint: ") == 2
    both = out + err
    for name in ("squid", "octopus", "kraken", "nautilus", "notes"):
        assert both.count(f"{name}.jpg") <= 1  # never one line per file twice
    assert err.strip().splitlines() == [
        f"facekit: error: nothing enrolled from {folder}: 5 images failed"
    ]
    assert main(["enroll", str(folder), "--gallery", gallery, *model_options, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["failures_by_reason"] == {"no face found": 4, "unreadable image": 1}


def test_enroll_aligned_crops_and_identify(
    data_dir: Path, model_options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from facekit import FaceRecognizer

    fr = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=model_options[-1],
    )
    crops = tmp_path / "crops"
    for name, photo in (("lennon", "lennon-1"), ("clapton", "clapton-1"), ("carell", "carell")):
        (face,) = fr.faces(data_dir / f"openface/{photo}.jpg")
        assert face.crop.shape == (112, 112, 3)
        (crops / name).mkdir(parents=True)
        save_image(crops / name / "1.png", face.crop)
    gallery = str(tmp_path / "aligned.facekit")
    args = ["enroll", str(crops), "--gallery", gallery, *model_options, "--no-progress"]
    assert main([*args, "--aligned"]) == 0
    assert capsys.readouterr().out.startswith("3 added, 0 skipped")
    assert main([*args, "--aligned"]) == 0  # nothing new, but nothing failed: a resumed run
    assert capsys.readouterr().out.startswith("0 added, 3 skipped")
    lennon = str(data_dir / "openface/lennon-2.jpg")
    assert main(["identify", lennon, "--gallery", gallery, *model_options, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert [face["identity"] for face in entry["faces"]] == ["lennon"]

    # Whole photos are no aligned crops: nothing added, a grouped reason with a hint.
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(data_dir / "openface/adams.jpg", photos / "adams.jpg")
    other = str(tmp_path / "other.facekit")
    assert main(["enroll", str(photos), "--gallery", other, *model_options, "--aligned"]) == 1
    out = capsys.readouterr().out
    assert "1 failed" in out
    assert "adams.jpg" in out
    assert "hint: --aligned expects" in out


def test_enroll_lists_images_with_several_faces(
    data_dir: Path, model_options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "people"
    folder.mkdir()
    shutil.copy(data_dir / "openface/longoria-cooper.jpg", folder / "eva.jpg")
    shutil.copy(data_dir / "openface/lennon-1.jpg", folder / "lennon.jpg")
    gallery = str(tmp_path / "g.facekit")
    assert main(["enroll", str(folder), "--gallery", gallery, *model_options]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 added")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "had several faces" in line)
    assert lines[start].strip().startswith("1 image(s) had several faces")
    assert lines[start + 1].strip() == "eva.jpg (2 faces, enrolled as eva)"
    assert "lennon.jpg" not in out


def test_ctrl_c_during_enroll_says_a_rerun_resumes(
    data_dir: Path,
    model_options: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from facekit.recognizer import FaceRecognizer

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(FaceRecognizer, "enroll", interrupted)
    gallery = str(tmp_path / "g.facekit")
    folder = str(data_dir / "openface/aligned")
    assert main(["enroll", folder, "--gallery", gallery, *model_options]) == 130
    err = capsys.readouterr().err
    assert "run the same command again to resume" in err
    assert err.count("\n") == 1


def test_identify_draw_labels_unknown_faces_with_the_nearest(
    data_dir: Path, model_options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    people = tmp_path / "people"
    people.mkdir()
    shutil.copy(data_dir / "openface/lennon-1.jpg", people / "lennon.jpg")
    gallery = str(tmp_path / "g.facekit")
    assert main(["enroll", str(people), "--gallery", gallery, *model_options]) == 0
    capsys.readouterr()
    carell = str(data_dir / "openface/carell.jpg")
    out = tmp_path / "drawn"
    args = ["identify", carell, "--gallery", gallery, *model_options, "--draw", str(out)]
    assert main([*args, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    (face,) = entry["faces"]
    assert face["identity"] is None
    assert face["candidates"][0]["identity"] == "lennon"
    drawn = load_image(out / "carell.jpg")
    original = load_image(carell)
    x1, y1 = (round(v) for v in face["face"]["box"][:2])
    strip = drawn[max(0, y1 - 20) : y1, x1 : x1 + 200].reshape(-1, 3).astype(int)
    red = (np.abs(strip - (220, 0, 0)).sum(axis=1) < 60).mean()
    assert red > 0.3  # an unknown face's label strip, long enough for "unknown (nearest ...)"
    assert drawn.shape == original.shape


# --- failures are one line, never a traceback ----------------------------------------------


@pytest.mark.parametrize("content", [b"", b"hello, not a gallery\n" * 10])
def test_gallery_info_on_bad_files_is_one_line(
    tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "g.facekit"
    path.write_bytes(content)
    assert main(["gallery", "info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"facekit: error: {path}")
    assert err.count("\n") == 1
    assert path.read_bytes() == content  # left as it was


def test_python_m_facekit_fails_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.facekit"
    empty.touch()
    done = subprocess.run(
        [sys.executable, "-m", "facekit", "gallery", "info", str(empty)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("facekit: error: ")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_enroll_hints_name_aligned_crops_and_tight_crops(
    data_dir: Path, models_dir: Path, tmp_path: Path
) -> None:
    from facekit import FaceRecognizer
    from facekit.cli._enroll import summary_lines
    from facekit.types import EnrollProblem, EnrollReport

    fr = FaceRecognizer(
        detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d", model_dir=models_dir
    )
    faces = fr.faces(data_dir / "insightface_samples/t1.jpg")
    crops = tmp_path / "crops"
    crops.mkdir()
    for index, face in enumerate(faces[:4]):
        save_image(crops / f"{index}.png", face.crop)

    def report_of(paths: list[Path]) -> EnrollReport:
        problems = [
            EnrollProblem(str(p), p.stem, f"no face found in {p}", "no face found") for p in paths
        ]
        return EnrollReport(failed=tuple(problems))

    lines = summary_lines(report_of(sorted(crops.iterdir())), str(crops), aligned=False)
    assert lines[0] == "  no face found: 4 image(s), e.g. 0.png, 1.png, 2.png, ..."
    assert lines[1] == (
        "    hint: these are 112x112 images: if they are aligned face crops, use --aligned"
    )
    orl = sorted((data_dir / "orl_faces/s1").iterdir())[:2]
    lines = summary_lines(report_of(orl), str(data_dir / "orl_faces"), aligned=False)
    assert lines[0].startswith("  no face found: 2 image(s), e.g. s1/")
    assert "tight face crops (92x112 pixels); try --aligned" in lines[1]
    photo = [data_dir / "mtcnn/no-faces.jpg"]
    lines = summary_lines(report_of(photo), str(tmp_path), aligned=False)
    assert lines[0] == f"  no face found: 1 image(s), e.g. {photo[0]}"  # outside the folder
    assert "--aligned" not in lines[1]


def test_detector_options_the_backend_does_not_take_are_one_line(
    data_dir: Path, detector_options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    ivan = str(data_dir / "mtcnn/ivan.jpg")
    assert main(["detect", ivan, *detector_options, "--detector-options", '{"bogus": 1}']) == 1
    err = capsys.readouterr().err
    assert err.startswith("facekit: error: the detector 'scrfd' takes no option 'bogus'")
    assert err.count("\n") == 1


# --- facekit enroll --index, facekit identify FOLDER, --ray without Ray ------------------

PEOPLE = ("angelina_jolie", "kate_siegel", "paul_rudd", "shea_whigham")


def test_enroll_index_saves_the_faiss_index_and_identify_takes_a_folder(
    data_dir: Path, model_options: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "people"
    for name in PEOPLE:
        shutil.copytree(data_dir / "facenet_pytorch" / name, folder / name)
    gallery = str(tmp_path / "g.facekit")
    enroll = ["enroll", str(folder), "--gallery", gallery, "--index", "hnsw", *model_options]
    assert main(enroll) == 0
    assert capsys.readouterr().out.startswith("4 added, 0 skipped (already enrolled), 0 failed")
    assert (tmp_path / "g.facekit.hnsw").is_file()  # grown with the new samples, saved
    identify = ["identify", str(folder), "--gallery", gallery, "--index", "hnsw", *model_options]
    assert main([*identify, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [Path(entry["image"]).parent.name for entry in entries] == list(PEOPLE)
    assert [entry["faces"][0]["identity"] for entry in entries] == list(PEOPLE)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["identify", str(empty), "--gallery", gallery, *model_options]) == 1
    assert "no image files" in capsys.readouterr().err


def test_ray_options_without_ray_are_one_line(
    data_dir: Path,
    model_options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "people"
    shutil.copytree(data_dir / "facenet_pytorch" / PEOPLE[0], folder / PEOPLE[0])
    gallery = str(tmp_path / "g.facekit")
    assert main(["enroll", str(folder), "--gallery", gallery, *model_options]) == 0
    capsys.readouterr()
    photo = str(folder / PEOPLE[0] / "1.jpg")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were missing
    for command in (
        ["identify", photo, "--gallery", gallery, *model_options, "--ray"],
        ["enroll", str(folder), "--gallery", gallery, *model_options, "--ray"],
    ):
        assert main(command) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("facekit: error: ")
        assert 'pip install "facekit[ray]"' in line
    assert main(["identify", photo, "--gallery", gallery, *model_options, "--actors", "2"]) == 1
    assert "--actors applies to --ray only" in capsys.readouterr().err
    assert main(["identify", "--video", photo, "--gallery", gallery, "--ray"]) == 1
    assert "--ray identifies image files, not --video" in capsys.readouterr().err


# --- facekit identify --video --out ---------------------------------------------------------


def test_identify_video_out_is_on_disk_before_the_rename(
    data_dir: Path,
    model_options: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    umask_027: None,
) -> None:
    (tmp_path / "people/lennon").mkdir(parents=True)
    shutil.copy(data_dir / "openface/lennon-2.jpg", tmp_path / "people/lennon/1.jpg")
    gallery = str(tmp_path / "g.facekit")
    assert main(["enroll", str(tmp_path / "people"), "--gallery", gallery, *model_options]) == 0
    photo = cv2.imread(str(data_dir / "openface/lennon-1.jpg"))
    assert photo is not None
    scale = 240 / photo.shape[0]
    frame = cv2.resize(photo, (round(photo.shape[1] * scale), 240), interpolation=cv2.INTER_AREA)
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"mp4v"), 10.0, frame.shape[1::-1])
    for _ in range(3):
        writer.write(frame)
    writer.release()
    capsys.readouterr()
    synced: list[int] = []
    fsync = os.fsync

    def spy(fd: int) -> None:  # the real fsync, recording which file it flushed
        synced.append(os.fstat(fd).st_ino)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    out = tmp_path / "annotated.mp4"
    args = ["identify", "--video", str(video), "--gallery", gallery, *model_options]
    assert main([*args, "--out", str(out), "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["frames"], result["drawn"]) == (3, str(out))
    assert [t["identity"] for t in result["tracks"]] == ["lennon"]
    assert out.stat().st_ino in synced  # the video renamed into place was flushed
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "annotated.mp4",
        "clip.mp4",
        "g.facekit",
        "people",
    ]  # no partial file left
    assert stat.S_IMODE(out.stat().st_mode) == 0o640  # 0o666 less the umask 027
    written = cv2.VideoCapture(str(out))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    written.release()
