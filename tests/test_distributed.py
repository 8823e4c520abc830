"""Enrolment on Ray (`facekit.distributed`): a local Ray cluster of 2 CPUs enrols the ORL
photos into SQLite and Milvus Lite, and the result must equal a single-process
`FaceRecognizer.enroll` of the same files."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray

from facekit import FaceRecognizer, distributed
from facekit.cli import main
from facekit.errors import ConfigError, FacekitError, ImageError
from facekit.gallery import EmbedderInfo, Gallery
from facekit.recognizer import ALREADY_ENROLLED, Enrollable, EnrollWriter, enrolled_contents
from facekit.sources import folder_sources
from facekit.types import EnrollProblem, EnrollReport

ORL_OPTIONS = {"padding": 0.5, "input_size": (320, 320)}


def orl_kwargs(models_dir: Path) -> dict[str, Any]:
    return {
        "detector_model": "scrfd_2.5g",
        "embedder_model": "mobilefacenet_128d",
        "model_dir": models_dir,
        "detector_options": ORL_OPTIONS,
    }


def orl_copy(data_dir: Path, target: Path, subjects: range) -> Path:
    """A folder-per-person copy of ORL subjects ``sN`` (10 photos each)."""
    for subject in subjects:
        shutil.copytree(data_dir / f"orl_faces/s{subject}", target / f"s{subject}")
    return target


def samples(location: str | Path, root: Path) -> dict[str, tuple[str, np.ndarray, str]]:
    """Content hash → (identity, embedding, source relative to ``root``) of every sample of
    a gallery."""
    found = {}
    with Gallery(location, create=False) as gallery:
        for identity in gallery.identities():
            embeddings = gallery.embeddings(identity)
            for record, embedding in zip(gallery.samples(identity), embeddings, strict=True):
                assert record.content_sha256 is not None
                source = Path(str(record.source)).relative_to(root).as_posix()
                found[record.content_sha256] = (identity, embedding, source)
    return found


def assert_same_samples(
    got: dict[str, tuple[str, np.ndarray, str]],
    expected: dict[str, tuple[str, np.ndarray, str]],
) -> None:
    assert got.keys() == expected.keys()
    for digest, (identity, embedding, source) in got.items():
        assert identity == expected[digest][0]
        assert source == expected[digest][2]
        np.testing.assert_allclose(embedding, expected[digest][1], rtol=0, atol=1e-6)


def assert_same_json(got: object, expected: object) -> None:
    """``got == expected``, floats to within 1e-6."""
    if isinstance(expected, float):
        assert got == pytest.approx(expected, rel=0, abs=1e-6)
    elif isinstance(expected, dict):
        assert isinstance(got, dict)
        assert list(got) == list(expected)
        for key, value in expected.items():
            assert_same_json(got[key], value)
    elif isinstance(expected, list):
        assert isinstance(got, list)
        assert len(got) == len(expected)
        for item, value in zip(got, expected, strict=True):
            assert_same_json(item, value)
    else:
        assert got == expected


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One local Ray cluster of 2 CPUs for the module. Ray writes its auth token under
    ``$HOME/.ray``: HOME points at a folder of this run meanwhile. The session folder has
    a short path (Ray's Unix sockets live in it)."""
    saved_home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp_path_factory.mktemp("ray-home"))
    session = tempfile.mkdtemp(prefix="fkray-", dir="/tmp")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=session)
        yield
    finally:
        ray.shutdown()
        if saved_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = saved_home
        shutil.rmtree(session, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(
    models_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, EnrollReport]:
    """All of ORL (40 people x 10 photos) enrolled by one process, the usual way."""
    location = tmp_path_factory.mktemp("single") / "orl.db"
    recognizer = FaceRecognizer(**orl_kwargs(models_dir), gallery=location)
    report = recognizer.enroll(data_dir / "orl_faces", progress=False)
    recognizer.gallery.close()
    return location, report


@pytest.fixture(scope="module")
def on_ray(
    local_ray: None, models_dir: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, EnrollReport]:
    """All of ORL enrolled through Ray into SQLite."""
    location = tmp_path_factory.mktemp("ray") / "orl.db"
    report = distributed.enroll(
        data_dir / "orl_faces", gallery=location, progress=False, **orl_kwargs(models_dir)
    )
    return location, report


@pytest.mark.slow
def test_ray_enrolment_equals_single_process(
    on_ray: tuple[Path, EnrollReport], reference: tuple[Path, EnrollReport], data_dir: Path
) -> None:
    (ray_gallery, report), (single_gallery, expected) = on_ray, reference
    assert len(report.added) == 400
    assert report.added == expected.added  # identities, sources, boxes, scores, faces found
    assert report.failed == expected.failed
    assert report.skipped == ()
    with Gallery(ray_gallery) as got, Gallery(single_gallery) as want:
        assert got.counts() == want.counts()
        assert len(got) == 40
        for identity in want.identities():
            hashes = [s.content_sha256 for s in got.samples(identity)]
            assert hashes == [s.content_sha256 for s in want.samples(identity)]
    root = data_dir / "orl_faces"
    assert_same_samples(samples(ray_gallery, root), samples(single_gallery, root))
    assert ray.is_initialized()  # the Ray the caller started is left running


@pytest.mark.slow
def test_rerun_adds_nothing(
    on_ray: tuple[Path, EnrollReport], models_dir: Path, data_dir: Path
) -> None:
    ray_gallery, first = on_ray
    root = data_dir / "orl_faces"
    before = samples(ray_gallery, root)
    report = distributed.enroll(root, gallery=ray_gallery, progress=False, **orl_kwargs(models_dir))
    assert report.added == ()
    assert report.failed == ()
    assert [p.source for p in report.skipped] == [f.source for f in first.added]
    assert {p.kind for p in report.skipped} == {"already enrolled"}
    assert samples(ray_gallery, root).keys() == before.keys()


def test_bad_files_are_reported_not_fatal(
    local_ray: None, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    folder = orl_copy(data_dir, tmp_path / "people", range(1, 4))
    (folder / "s2" / "corrupt.png").write_bytes(b"not an image at all")
    truncated = (data_dir / "orl_faces/s3/1.png").read_bytes()[:300]
    (folder / "s3" / "truncated.png").write_bytes(truncated)
    single = FaceRecognizer(**orl_kwargs(models_dir), gallery=tmp_path / "single.db")
    expected = single.enroll(folder, progress=False)
    single.gallery.close()
    with Gallery(tmp_path / "ray.db") as gallery:  # an open Gallery is written and left open
        report = distributed.enroll(
            folder,
            gallery=gallery,
            actors=2,
            batch_size=8,
            progress=False,
            **orl_kwargs(models_dir),
        )
        assert gallery.counts() == {"s1": 10, "s2": 10, "s3": 10}
    assert len(report.added) == 30
    assert sorted(Path(p.source).name for p in report.failed) == ["corrupt.png", "truncated.png"]
    assert {p.kind for p in report.failed} == {"unreadable image"}
    assert report.failed == expected.failed  # same reasons, word for word
    assert report.added == expected.added


def test_milvus_lite_equals_single_process(
    local_ray: None,
    reference: tuple[Path, EnrollReport],
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    folder = orl_copy(data_dir, tmp_path / "people", range(1, 6))
    location = f"milvus-lite:///{tmp_path}/faces.db"
    report = distributed.enroll(folder, gallery=location, progress=False, **orl_kwargs(models_dir))
    assert len(report.added) == 50
    assert report.failed == ()
    people = {f"s{i}" for i in range(1, 6)}
    single = samples(reference[0], data_dir / "orl_faces")
    expected = {digest: sample for digest, sample in single.items() if sample[0] in people}
    assert_same_samples(samples(location, folder), expected)
    again = distributed.enroll(folder, gallery=location, progress=False, **orl_kwargs(models_dir))
    assert (len(again.added), len(again.skipped), len(again.failed)) == (0, 50, 0)


def test_cli_enroll_on_ray(
    local_ray: None,
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = orl_copy(data_dir, tmp_path / "people", range(7, 9))
    (folder / "s8" / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    gallery = str(tmp_path / "cli.db")
    models = [
        "--detector-model", "scrfd_2.5g", "--embedder-model", "mobilefacenet_128d",
        "--model-dir", str(models_dir), "--detector-options", json.dumps(ORL_OPTIONS),
    ]  # fmt: skip
    assert main(["enroll", str(folder), "--gallery", gallery, "--ray", *models]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"20 added, 0 skipped (already enrolled), 1 failed -> {gallery}: 2 ")
    assert "unreadable image: 1 image(s), e.g. s8/broken.jpg" in out
    assert main(["enroll", str(folder), "--gallery", gallery, "--ray", "--json", *models]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts == {"added": 0, "skipped": 20, "failed": 1, "several_faces": 0}


def test_identify_equals_single_process(
    local_ray: None,
    reference: tuple[Path, EnrollReport],
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
) -> None:
    photos = [data_dir / f"orl_faces/s{s}/{i}.png" for s in (1, 9, 23, 40) for i in (1, 5, 10)]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    inputs = [*photos[:6], broken, *photos[6:]]
    got = distributed.identify(
        inputs,
        gallery=reference[0],
        top_k=3,
        batch_size=4,
        progress=False,
        **orl_kwargs(models_dir),
    )
    single = FaceRecognizer(**orl_kwargs(models_dir), gallery=reference[0])
    assert isinstance(got[6], ImageError)
    assert str(broken) in str(got[6])
    for photo, matches in zip(photos, got[:6] + got[7:], strict=True):
        assert not isinstance(matches, FacekitError)
        expected = single.identify(photo, top_k=3)
        assert len(matches) == len(expected) == 1
        (match,), (want,) = matches, expected
        assert match.identity == want.identity == photo.parent.name  # an enrolled photo
        assert (match.face.box, match.face.score) == (want.face.box, want.face.score)
        np.testing.assert_array_equal(match.face.landmarks, want.face.landmarks)
        assert match.threshold == want.threshold
        assert [c[0] for c in match.candidates] == [c[0] for c in want.candidates]
        np.testing.assert_allclose(
            [c[1] for c in match.candidates], [c[1] for c in want.candidates], atol=1e-6
        )
    single.gallery.close()


def test_a_bad_model_is_a_typed_error(
    local_ray: None, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    photo = data_dir / "orl_faces/s1/1.png"
    options = {**orl_kwargs(models_dir), "embedder_model": tmp_path / "missing.onnx"}
    with pytest.raises(FacekitError) as raised:
        distributed.enroll([("s1", photo)], gallery=tmp_path / "g.db", **options)
    assert not isinstance(raised.value, ray.exceptions.RayError)
    assert "missing.onnx" in str(raised.value)
    assert not (tmp_path / "g.db").exists()  # nothing was created


def test_bad_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pixels: Any = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ConfigError, match="not a path"):
        distributed.enroll([("a", pixels)], gallery=tmp_path / "g.db")
    with pytest.raises(ConfigError, match="face must be"):
        distributed.enroll(tmp_path, gallery=tmp_path / "g.db", face="first")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="actors"):
        distributed.enroll(tmp_path, gallery=tmp_path / "g.db", actors=0)
    assert distributed.enroll(tmp_path, gallery=tmp_path / "g.db") == EnrollReport()
    assert distributed.identify([], gallery=tmp_path / "g.db") == []
    assert not (tmp_path / "g.db").exists()
    assert (
        main(["enroll", str(tmp_path), "--gallery", str(tmp_path / "g.db"), "--actors", "2"]) == 1
    )
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the [ray] extra were missing
    with pytest.raises(ConfigError, match=r'pip install "facekit\[ray\]"'):
        distributed.enroll([("a", tmp_path / "a.png")], gallery=tmp_path / "g.db")


def test_actor_plan() -> None:
    """One GPU per actor where the cluster has GPUs; else half a CPU each, one actor per
    CPU, single-threaded sessions."""
    gpus = types.SimpleNamespace(cluster_resources=lambda: {"CPU": 16.0, "GPU": 2.0})
    plan = distributed._Plan.of(gpus, None, {})  # type: ignore[arg-type]
    assert (plan.actors, plan.gpus, plan.cpus) == (2, 1.0, 0.0)
    assert plan.recognizer_kwargs == {"device": "cuda"}
    cpu_only = distributed._Plan.of(gpus, 3, {"device": "cpu"})  # type: ignore[arg-type]
    assert (cpu_only.actors, cpu_only.gpus, cpu_only.cpus) == (3, 0.0, 0.5)
    cpus = types.SimpleNamespace(cluster_resources=lambda: {"CPU": 2.0})
    plan = distributed._Plan.of(cpus, None, {"threads": 2})  # type: ignore[arg-type]
    assert (plan.actors, plan.gpus, plan.cpus) == (2, 0.0, 0.5)
    assert plan.recognizer_kwargs == {"workers": 1, "threads": 2}


def test_distributed_uses_only_public_recognizer_names() -> None:
    """The Ray path runs the recogniser's own enrolment and identification steps through
    their public names, never its private helpers."""
    tree = ast.parse(Path(distributed.__file__).read_text(encoding="utf-8"))
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "recognizer"
        for alias in node.names
    ]
    assert {"EnrollWriter", "FaceRecognizer", "enrolled_contents"} <= set(imported)
    assert [name for name in imported if name.startswith("_")] == []
    private = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert private == []


def test_enrolment_steps_give_what_enroll_gives(
    models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    """`FaceRecognizer.enrollables` + `EnrollWriter` (what the Ray actors and driver run)
    give the report and gallery of `FaceRecognizer.enroll`, which is made of them."""
    folder = orl_copy(data_dir, tmp_path / "people", range(1, 3))
    (folder / "s2" / "corrupt.png").write_bytes(b"not an image at all")
    shutil.copy(folder / "s1" / "1.png", folder / "s2" / "copy.png")  # content seen before
    recognizer = FaceRecognizer(**orl_kwargs(models_dir), gallery=tmp_path / "single.db")
    expected = recognizer.enroll(folder, progress=False)
    assert (len(expected.added), len(expected.skipped), len(expected.failed)) == (20, 1, 1)
    items = folder_sources(folder)
    outcomes = list(recognizer.enrollables(items, batch_size=8))
    assert [outcome.source for outcome in outcomes] == [str(path) for _, path in items]
    problems = [outcome for outcome in outcomes if isinstance(outcome, EnrollProblem)]
    assert [(Path(p.source).name, p.kind) for p in problems] == [
        ("corrupt.png", "unreadable image")
    ]
    for outcome in outcomes:
        if isinstance(outcome, Enrollable):
            digest = hashlib.sha256(Path(outcome.source).read_bytes()).hexdigest()
            assert outcome.content_sha256 == digest
            assert outcome.embedding.shape == (128,)
            assert outcome.faces_found == 1
    with Gallery(tmp_path / "steps.db") as gallery:  # one batch, one transaction
        writer = EnrollWriter(gallery, EmbedderInfo.of(recognizer.embedder))
        writer.write(outcomes)
        assert writer.report() == expected  # the copy skipped, the corrupt file failed
        assert gallery.counts() == {"s1": 10, "s2": 10}
        known = enrolled_contents(gallery)
    assert known == enrolled_contents(recognizer.gallery)
    again = list(recognizer.enrollables(items, known=known))
    kinds = [o.kind if isinstance(o, EnrollProblem) else "embedded" for o in again]
    assert kinds == [ALREADY_ENROLLED] * 21 + ["unreadable image"]  # the copy is known too
    assert not any(isinstance(o, Enrollable) for o in again)
    # a batch the gallery refuses (an invalid name) fails only that identity's inputs
    made = [o for o in outcomes if isinstance(o, Enrollable)]
    blank = dataclasses.replace(made[0], identity="   ", content_sha256="0" * 64)
    fresh = dataclasses.replace(made[1], identity="newcomer", content_sha256="1" * 64)
    with Gallery(tmp_path / "steps.db") as gallery:
        writer = EnrollWriter(gallery, EmbedderInfo.of(recognizer.embedder))
        writer.write([blank, made[2], fresh])
        report = writer.report()
        assert [face.identity for face in report.added] == ["newcomer"]
        assert [(p.identity, p.kind) for p in report.skipped] == [("s1", ALREADY_ENROLLED)]
        assert [(p.identity, p.kind) for p in report.failed] == [("   ", "invalid identity name")]
        assert gallery.counts() == {"newcomer": 1, "s1": 10, "s2": 10}
    recognizer.gallery.close()


def test_cli_identify_on_ray_equals_single_process(
    local_ray: None,
    reference: tuple[Path, EnrollReport],
    models_dir: Path,
    data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``facekit identify FOLDER --ray``: the text and JSON of the single-process command,
    a corrupt file reported in its place. The numbers in the JSON agree to float32
    precision: the Ray driver searches a batch of faces in one matrix product, the
    single-process command one image's faces (BLAS sums them in another order)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for subject, number in ((1, 2), (9, 4), (23, 7), (40, 10)):
        shutil.copy(
            data_dir / f"orl_faces/s{subject}/{number}.png", folder / f"s{subject}_{number}.png"
        )
    shutil.copy(data_dir / "openface/longoria-cooper.jpg", folder / "t_strangers.jpg")
    (folder / "s2_corrupt.png").write_bytes(b"\x89PNG broken")
    models = [
        "--detector-model", "scrfd_2.5g", "--embedder-model", "mobilefacenet_128d",
        "--model-dir", str(models_dir), "--detector-options", json.dumps(ORL_OPTIONS),
    ]  # fmt: skip
    command = ["identify", str(folder), "--gallery", str(reference[0]), "--top-k", "2", *models]
    for output in ([], ["--json"]):
        assert main([*command, *output]) == 1  # a file failed
        single = capsys.readouterr()
        assert main([*command, *output, "--ray", "--actors", "2"]) == 1
        on_ray = capsys.readouterr()
        if output:
            assert_same_json(json.loads(on_ray.out), json.loads(single.out))
        else:
            assert on_ray.out == single.out
        errors = [line for line in single.err.splitlines() if line.startswith("facekit:")]
        assert len(errors) == 1
        assert str(folder / "s2_corrupt.png") in errors[0]
        assert [line for line in on_ray.err.splitlines() if line.startswith("facekit:")] == errors
    entries = json.loads(on_ray.out)
    names = ["s1_2.png", "s23_7.png", "s2_corrupt.png", "s40_10.png", "s9_4.png", "t_strangers.jpg"]
    assert [Path(entry["image"]).name for entry in entries] == names
    assert "s2_corrupt.png" in entries[2]["error"]
    for entry, person in zip(entries[:2] + entries[3:5], ("s1", "s23", "s40", "s9"), strict=True):
        (face,) = entry["faces"]
        assert face["identity"] == person  # enrolled photos
    strangers = entries[5]["faces"]
    assert len(strangers) == 2
    assert [face["identity"] for face in strangers] == [None, None]
