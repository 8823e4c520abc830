"""One gallery suite, every backend: SQLite with exact search, SQLite with faiss HNSW, and
Milvus Lite, on real weights and photos (ORL): enrol, identify held-back photos, keep
strangers unknown, rename, remove, refuse another embedder, resume without duplicates,
bulk-add; plus how locations and index names are chosen, and ``facekit identify --index``."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.cli import main
from facekit.errors import BackendError, ConfigError, GalleryError
from facekit.gallery import EmbedderInfo, ExactIndex, Gallery, IndexName

ORL_OPTIONS = {"padding": 0.5, "input_size": (320, 320)}
MODELS = ["--detector-model", "scrfd_2.5g", "--embedder-model", "mobilefacenet_128d"]
PEOPLE = range(1, 11)  # enrolled from photos 1-4
HELD_BACK = (7, 8)
STRANGERS = range(31, 41)  # never enrolled: photo 1 of each
BACKENDS = ("sqlite+exact", "sqlite+hnsw", "milvus-lite")


def recognizer(models_dir: Path, gallery: str | Path | Gallery | None = None) -> FaceRecognizer:
    return FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options=ORL_OPTIONS,
        gallery=gallery,
    )


def open_backend(backend: str, folder: Path, embedder: EmbedderInfo | None = None) -> Gallery:
    """A new (or reopened) gallery of ``backend`` in ``folder``."""
    if backend == "milvus-lite":
        return Gallery(f"milvus-lite:///{folder / 'g.db'}", embedder=embedder)
    index: IndexName = "hnsw" if backend == "sqlite+hnsw" else "exact"
    return Gallery(folder / "g.facekit", embedder=embedder, index=index)


@pytest.fixture(scope="module")
def photos(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder per person: ``people/sN/K.png`` for the enrolled photos."""
    root = tmp_path_factory.mktemp("people")
    for subject in PEOPLE:
        (root / f"s{subject}").mkdir()
        for image in range(1, 5):
            shutil.copy(
                data_dir / f"orl_faces/s{subject}/{image}.png", root / f"s{subject}/{image}.png"
            )
    return root


@pytest.fixture(scope="module")
def plain(models_dir: Path) -> FaceRecognizer:
    return recognizer(models_dir)


def embedding(fr: FaceRecognizer, path: Path) -> np.ndarray:
    (face,) = fr.faces(path)
    return face.embedding


@pytest.fixture(scope="module")
def queries(plain: FaceRecognizer, data_dir: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """``"held back"``: (true names, (Q, D) embeddings); ``"strangers"``: the same."""
    held = [(f"s{s}", data_dir / f"orl_faces/s{s}/{i}.png") for s in PEOPLE for i in HELD_BACK]
    strangers = [(f"s{s}", data_dir / f"orl_faces/s{s}/1.png") for s in STRANGERS]
    return {
        kind: ([name for name, _ in pairs], np.stack([embedding(plain, p) for _, p in pairs]))
        for kind, pairs in (("held back", held), ("strangers", strangers))
    }


@pytest.fixture(scope="module", params=BACKENDS)
def enrolled(
    request: pytest.FixtureRequest,
    models_dir: Path,
    photos: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, Path, FaceRecognizer]]:
    """The photos enrolled through `FaceRecognizer.enroll` into a gallery of each backend."""
    backend: str = request.param
    folder = tmp_path_factory.mktemp(backend.replace("+", "-"))
    if backend == "milvus-lite":  # the recogniser takes a URI as it takes a path
        fr = recognizer(models_dir, f"milvus-lite:///{folder / 'g.db'}")
    else:
        fr = recognizer(models_dir, open_backend(backend, folder))
    gallery = fr.gallery
    report = fr.enroll(photos, progress=False)
    assert len(report.added) == 4 * len(PEOPLE)
    assert not report.failed
    yield backend, folder, fr
    gallery.close()


@pytest.fixture(scope="module")
def exact_answers(
    models_dir: Path, photos: Path, queries: dict[str, tuple[list[str], np.ndarray]]
) -> dict[str, list[tuple[str | None, float]]]:
    """What exact search over the same photos answers, per query kind."""
    fr = recognizer(models_dir, Gallery(index="exact"))
    fr.enroll(photos, progress=False)
    limit = fr.thresholds.same
    return {
        kind: [(f.identity, f.similarity) for f in fr.gallery.search(vectors, threshold=limit)]
        for kind, (_, vectors) in queries.items()
    }


def test_held_back_photos_of_enrolled_people_are_identified(
    enrolled: tuple[str, Path, FaceRecognizer],
    queries: dict[str, tuple[list[str], np.ndarray]],
    exact_answers: dict[str, list[tuple[str | None, float]]],
) -> None:
    _, _, fr = enrolled
    names, vectors = queries["held back"]
    found = fr.gallery.search(vectors, threshold=fr.thresholds.same, top_k=3)
    assert sum(f.identity == name for f, name in zip(found, names, strict=True)) >= len(names) - 1
    # the same decisions and (exact cosine) scores as exact search
    assert [(f.identity, pytest.approx(f.similarity, abs=1e-4)) for f in found] == [
        (identity, pytest.approx(similarity, abs=1e-4))
        for identity, similarity in exact_answers["held back"]
    ]
    assert all(len(f.candidates) == 3 for f in found)


def test_strangers_stay_unknown(
    enrolled: tuple[str, Path, FaceRecognizer],
    queries: dict[str, tuple[list[str], np.ndarray]],
    exact_answers: dict[str, list[tuple[str | None, float]]],
) -> None:
    _, _, fr = enrolled
    _, vectors = queries["strangers"]
    found = fr.gallery.search(vectors, threshold=fr.thresholds.same)
    assert [f.identity for f in found] == [identity for identity, _ in exact_answers["strangers"]]
    assert sum(f.identity is None for f in found) >= 8


def test_identify_through_the_recognizer(
    enrolled: tuple[str, Path, FaceRecognizer], data_dir: Path
) -> None:
    _, _, fr = enrolled
    (match,) = fr.identify(data_dir / "orl_faces/s3/9.png")
    assert match.identity == "s3"


def test_resume_adds_nothing_twice(
    enrolled: tuple[str, Path, FaceRecognizer], photos: Path
) -> None:
    _, _, fr = enrolled
    before = fr.gallery.counts()
    report = fr.enroll(photos, progress=False)
    assert not report.added
    assert len(report.skipped) == 4 * len(PEOPLE)
    assert fr.gallery.counts() == before


def test_another_embedder_is_refused(enrolled: tuple[str, Path, FaceRecognizer]) -> None:
    backend, folder, fr = enrolled
    bound = EmbedderInfo.of(fr.embedder)
    other = EmbedderInfo("other", "b" * 64, bound.dim, bound.template, True)
    vector = fr.gallery.embeddings("s1")[:1]
    with pytest.raises(GalleryError, match="another embedder"):
        fr.gallery.add("s1", vector, embedder=other)
    with pytest.raises(GalleryError, match="another embedder"):
        open_backend(backend, folder, embedder=other)


def test_rename_remove_and_add_many(
    tmp_path: Path, enrolled: tuple[str, Path, FaceRecognizer]
) -> None:
    """A second gallery of the same backend, filled with the first one's embeddings."""
    backend, _, source = enrolled
    names = source.gallery.identities()
    vectors = np.concatenate([source.gallery.embeddings(name) for name in names])
    owners = [name for name in names for _ in range(source.gallery.counts()[name])]
    hashes = [f"{i:064x}" for i in range(len(owners))]
    with open_backend(backend, tmp_path, EmbedderInfo.of(source.embedder)) as gallery:
        assert gallery.add_many(owners, vectors, content_sha256=hashes) == len(owners)
        assert gallery.add_many(owners, vectors, content_sha256=hashes) == 0  # stored once
        assert gallery.counts() == source.gallery.counts()
        assert gallery.known_content([hashes[0], "e" * 64]) == {hashes[0]}
        probe = vectors[owners.index("s2")]
        assert gallery.search(probe, threshold=0.99)[0].identity == "s2"
        gallery.rename("s2", "Second")
        assert "s2" not in gallery
        assert gallery.search(probe, threshold=0.99)[0].identity == "Second"
        with pytest.raises(GalleryError, match="already enrolled"):
            gallery.rename("Second", "s3")
        assert gallery.remove("Second") == owners.count("s2")
        assert "Second" not in gallery
        assert gallery.search(probe, threshold=0.99)[0].identity is None
        assert len(gallery) == len(names) - 1
    with open_backend(backend, tmp_path) as reopened:  # everything was saved
        assert reopened.counts() == {
            name: count for name, count in source.gallery.counts().items() if name != "s2"
        }


# --- locations and index names -------------------------------------------------------------


def test_index_names_and_locations(tmp_path: Path) -> None:
    with Gallery(tmp_path / "g.facekit", index="exact") as gallery:
        assert gallery.path == tmp_path / "g.facekit"
    with pytest.raises(ConfigError, match="unknown index 'flat'"):
        Gallery(tmp_path / "g.facekit", index="flat")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown gallery location 'redis://"):
        Gallery("redis://localhost/faces")
    with pytest.raises(ConfigError, match="its own index"):
        Gallery(f"milvus-lite:///{tmp_path / 'm.db'}", index="hnsw")


def test_auto_index_is_exact_for_small_galleries_and_hnsw_for_large(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facekit.gallery import backends
    from facekit.gallery.faiss_index import FaissIndex

    info = EmbedderInfo("m", "a" * 64, 8, "arcface112", True)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Gallery(tmp_path / "g.facekit", embedder=info) as gallery:
        gallery.add_many([f"p{i % 20}" for i in range(40)], vectors)
        assert isinstance(gallery._index, ExactIndex)
    monkeypatch.setattr(backends, "AUTO_ANN_SAMPLES", 40)
    with Gallery(tmp_path / "g.facekit") as gallery:
        assert isinstance(gallery._index, FaissIndex)
        assert gallery.search(vectors[7], threshold=0.99)[0].identity == "p7"
    assert (tmp_path / "g.facekit.hnsw").is_file()  # kept beside the gallery file


def test_an_index_grown_in_a_session_is_saved_on_close_and_loaded_next_time(
    tmp_path: Path,
) -> None:
    info = EmbedderInfo("m", "a" * 64, 8, "arcface112", True)
    vectors = np.random.default_rng(1).standard_normal((60, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    saved = tmp_path / "g.facekit.hnsw"
    with Gallery(tmp_path / "g.facekit", embedder=info, index="hnsw") as gallery:
        gallery.add_many([f"p{i % 20}" for i in range(40)], vectors[:40])
        assert gallery.search(vectors[7], threshold=0.99)[0].identity == "p7"
        assert not saved.exists()  # not written for every addition
    first = saved.stat().st_mtime_ns  # written once, on close
    with Gallery(tmp_path / "g.facekit", index="hnsw") as gallery:
        assert gallery.num_samples == 40
        assert saved.stat().st_mtime_ns == first  # loaded, not rebuilt
        gallery.add_many([f"q{i}" for i in range(20)], vectors[40:])
        assert gallery.search(vectors[50], threshold=0.99)[0].identity == "q10"
    grown = saved.stat().st_mtime_ns
    assert grown != first
    with Gallery(tmp_path / "g.facekit", index="hnsw") as gallery:
        assert gallery.num_samples == 60
        assert gallery.search(vectors[45], threshold=0.99)[0].identity == "q5"
    assert saved.stat().st_mtime_ns == grown  # loaded as saved, not rebuilt and saved again


def test_without_faiss_auto_stays_exact_and_hnsw_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from facekit.gallery import backends

    monkeypatch.setitem(sys.modules, "faiss", None)  # "import faiss" now fails
    monkeypatch.setattr(backends, "AUTO_ANN_SAMPLES", 4)
    info = EmbedderInfo("m", "a" * 64, 4, "arcface112", True)
    with caplog.at_level(logging.INFO, logger="facekit.gallery.backends"):
        with Gallery(tmp_path / "g.facekit", embedder=info) as gallery:
            gallery.add_many(["a", "b", "c", "d"], np.eye(4, dtype=np.float32))
            gallery.remove("d")  # the next search rebuilds: 3 samples, exact
            assert gallery.search(np.eye(4)[1], threshold=0.9)[0].identity == "b"
        with Gallery(tmp_path / "g.facekit") as gallery:  # 3 samples
            assert isinstance(gallery._index, ExactIndex)
        with Gallery(tmp_path / "g.facekit") as gallery:
            gallery.add("d", np.eye(4, dtype=np.float32)[3])
        with Gallery(tmp_path / "g.facekit") as gallery:  # 4 samples: HNSW wanted, exact used
            assert isinstance(gallery._index, ExactIndex)
    assert "pip install 'facekit[ann]'" in caplog.text
    with pytest.raises(BackendError, match="facekit\\[ann\\]"):
        Gallery(tmp_path / "g.facekit", index="hnsw")


def test_reading_a_thresholds_file_does_not_import_the_evaluation_tools(
    models_dir: Path, tmp_path: Path
) -> None:
    """The thresholds file is read by `facekit.thresholds`, not through
    ``facekit.evaluation`` (whose verification module imports the recogniser: a cycle)."""
    script = f"""
import sys
from facekit import FaceRecognizer
from facekit.thresholds import CalibrationFile
from facekit.types import Thresholds
options = dict(detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d",
               model_dir={str(models_dir)!r})
embedder = FaceRecognizer(**options).embedder
CalibrationFile(Thresholds(0.3, 0.4, "test"), embedder.name, embedder.sha256, "scrfd", 1e-3,
                0.9, 1e-3, 0.8).save({str(tmp_path / "calib.json")!r})
fr = FaceRecognizer(**options, thresholds={str(tmp_path / "calib.json")!r})
assert fr.thresholds.same == 0.4
assert "facekit.evaluation" not in sys.modules, "evaluation imported"
import facekit.evaluation.calibration
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


# --- facekit identify --index ------------------------------------------------------------


@pytest.mark.parametrize("index", ["exact", "hnsw", "ivf", "auto"])
def test_identify_cli_with_each_index(
    index: str,
    models_dir: Path,
    photos: Path,
    data_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gallery = tmp_path_factory.getbasetemp() / "cli.facekit"
    if not gallery.exists():
        recognizer(models_dir, gallery).enroll(photos, progress=False)
    options = [*MODELS, "--model-dir", str(models_dir), "--detector-options"]
    photo = str(data_dir / "orl_faces/s5/8.png")
    args = ["identify", photo, "--gallery", str(gallery), "--index", index, "--json"]
    assert main([*args, *options, '{"padding": 0.5, "input_size": [320, 320]}']) == 0
    assert '"identity": "s5"' in capsys.readouterr().out


def test_identify_cli_refuses_an_unknown_index(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["identify", "x.png", "--gallery", str(tmp_path / "g"), "--index", "annoy"])
    assert "invalid choice: 'annoy'" in capsys.readouterr().err
