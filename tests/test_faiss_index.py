"""FaissIndex (HNSW and IVF, re-ranked exactly) against ExactIndex: on structured synthetic
face-like vectors, on real embeddings of the shared photos, incremental additions,
persistence beside the gallery and bad input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from facekit import FaceRecognizer
from facekit.errors import ConfigError
from facekit.gallery import ExactIndex
from facekit.gallery.faiss_index import FaissIndex

DIM = 512
BUILD = {"ef_construction": 40}  # a shallower HNSW build than the default, to stay fast


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class FaceLike:
    """Vectors shaped like face embeddings: identity centres in a 100-d random subspace
    (strangers 0 ± 0.1 cosine), samples ``unit(0.8 centre + 0.6 noise)`` (same person
    about 0.64), 1-9 samples per identity."""

    def __init__(self, identities: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        basis = self.rng.standard_normal((100, DIM))
        self.centres = unit(self.rng.standard_normal((2 * identities, 100)) @ basis)
        self.n_identities = identities
        counts = self.rng.integers(1, 10, identities)
        self.owners = np.repeat(np.arange(identities), counts)
        self.embeddings = self.samples(self.owners)

    def samples(self, who: np.ndarray) -> np.ndarray:
        noise = unit(self.rng.standard_normal((who.size, DIM)))
        return unit(0.8 * self.centres[who] + 0.6 * noise)

    def enrolled_queries(self, count: int) -> np.ndarray:
        return self.samples(self.rng.integers(0, self.n_identities, count))

    def unknown_queries(self, count: int) -> np.ndarray:  # people never enrolled
        return self.samples(self.n_identities + np.arange(count))


def exact_scores(index: ExactIndex, queries: np.ndarray, aggregate: str) -> np.ndarray:
    """``(Q, I)`` every identity's exact score, computed independently of both indexes."""
    starts = np.searchsorted(index.owners, np.arange(index.n_identities))
    if aggregate == "mean":
        result: np.ndarray = queries @ unit(np.add.reduceat(index.embeddings, starts)).T
        return result
    best: np.ndarray = np.maximum.reduceat(queries @ index.embeddings.T, starts, axis=1)
    return best


@pytest.fixture(scope="module")
def faces() -> FaceLike:
    return FaceLike(3000)  # about 15,000 samples


@pytest.fixture(scope="module")
def exact(faces: FaceLike) -> ExactIndex:
    return ExactIndex(faces.embeddings, faces.owners, faces.n_identities)


@pytest.fixture(scope="module", params=["hnsw", "ivf"])
def approximate(request: pytest.FixtureRequest, faces: FaceLike) -> FaissIndex:
    return FaissIndex(
        faces.embeddings, faces.owners, faces.n_identities, kind=request.param, **BUILD
    )


@pytest.mark.parametrize("aggregate", ["max", "mean"])
def test_enrolled_queries_find_the_exact_best_identity_with_exact_scores(
    faces: FaceLike,
    exact: ExactIndex,
    approximate: FaissIndex,
    aggregate: str,
    report: Callable[[str], None],
) -> None:
    queries = faces.enrolled_queries(400)
    truth = exact.search(queries, top_k=3, aggregate=aggregate)  # type: ignore[arg-type]
    found = approximate.search(queries, top_k=3, aggregate=aggregate)  # type: ignore[arg-type]
    assert found.identities.shape == (400, 3)
    assert found.similarities.dtype == np.float32
    recall = float(np.mean(found.identities[:, 0] == truth.identities[:, 0]))
    report(f"FaissIndex {approximate.kind} {aggregate}: enrolled recall@1 vs exact {recall:.4f}")
    assert recall >= 0.99
    scores = exact_scores(exact, queries, aggregate)
    returned = np.take_along_axis(scores, found.identities, axis=1)
    np.testing.assert_allclose(found.similarities, returned, atol=1e-5)  # exact re-rank
    assert np.all(np.diff(found.similarities, axis=1) <= 0)
    np.testing.assert_allclose(found.similarities[:, 0], truth.similarities[:, 0], atol=1e-5)
    assert np.all(found.runner_up <= truth.runner_up + 1e-5)


def test_unknown_queries_never_score_above_the_exact_best(
    faces: FaceLike, exact: ExactIndex, approximate: FaissIndex, report: Callable[[str], None]
) -> None:
    queries = faces.unknown_queries(300)
    truth = exact.search(queries)
    found = approximate.search(queries)
    assert np.all(found.similarities[:, 0] <= truth.similarities[:, 0] + 1e-5)
    scores = exact_scores(exact, queries, "max")
    returned = np.take_along_axis(scores, found.identities, axis=1)
    np.testing.assert_allclose(found.similarities, returned, atol=1e-5)
    recall = float(np.mean(found.identities[:, 0] == truth.identities[:, 0]))
    report(f"FaissIndex {approximate.kind}: unknown-query recall@1 vs exact {recall:.3f}")


@pytest.fixture(scope="module")
def small() -> FaceLike:
    return FaceLike(300, seed=1)


def split(faces: FaceLike) -> tuple[ExactIndex, np.ndarray, np.ndarray, np.ndarray]:
    """The first half of the samples of the even identities, and the rest as an addition
    in the numbering of all identities, identities shuffled (as `Gallery` merges)."""
    rank = np.arange(faces.owners.size) - np.searchsorted(faces.owners, faces.owners)
    first = (faces.owners % 2 == 0) & (rank < np.bincount(faces.owners)[faces.owners] / 2)
    kept = faces.owners[first] // 2  # old numbering: even identities only
    remap = np.arange(0, faces.n_identities, 2)
    base = ExactIndex(faces.embeddings[first], kept, int(kept.max()) + 1)
    rest = np.flatnonzero(~first)  # identities shuffled, each one's samples in order
    key = np.random.default_rng(2).permutation(faces.n_identities)[faces.owners[rest]]
    rest = rest[np.argsort(key, kind="stable")]
    return base, remap, faces.embeddings[rest], faces.owners[rest]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_extended_equals_a_rebuild(small: FaceLike, kind: str) -> None:
    base, remap, added, owners = split(small)
    before = FaissIndex(base.embeddings, base.owners, base.n_identities, kind=kind, nlist=4)  # type: ignore[arg-type]
    grown = before.extended(remap, small.n_identities, added, owners)
    rebuilt = FaissIndex(small.embeddings, small.owners, small.n_identities, kind=kind, nlist=4)  # type: ignore[arg-type]
    np.testing.assert_array_equal(grown.embeddings, rebuilt.embeddings)
    np.testing.assert_array_equal(grown.owners, rebuilt.owners)
    assert grown.n_identities == small.n_identities
    assert grown.dim == DIM
    queries = small.enrolled_queries(200)
    for index in (grown, rebuilt):
        found, truth = (
            index.search(queries, top_k=2),
            ExactIndex(small.embeddings, small.owners, small.n_identities).search(queries, top_k=2),
        )
        np.testing.assert_array_equal(found.identities, truth.identities)
        np.testing.assert_allclose(found.similarities, truth.similarities, atol=1e-5)
    # The index it grew from still answers over its own samples only.
    old = before.search(queries)
    np.testing.assert_array_equal(old.identities, base.search(queries).identities)


def test_an_ivf_index_is_retrained_when_the_gallery_grows_fourfold(small: FaceLike) -> None:
    tiny = FaissIndex(
        small.embeddings[:40], small.owners[:40], int(small.owners[39]) + 1, kind="ivf"
    )
    rest = np.arange(40, small.owners.size)
    remap = np.arange(tiny.n_identities)
    grown = tiny.extended(remap, small.n_identities, small.embeddings[rest], small.owners[rest])
    assert grown._ann is not tiny._ann
    assert grown._ann.nlist > tiny._ann.nlist
    queries = small.enrolled_queries(100)
    truth = ExactIndex(small.embeddings, small.owners, small.n_identities).search(queries)
    np.testing.assert_array_equal(grown.search(queries).identities, truth.identities)


def test_top_k_beyond_the_shortlist_falls_back_to_every_identity(small: FaceLike) -> None:
    index = FaissIndex(small.embeddings, small.owners, small.n_identities, shortlist=4)
    queries = small.enrolled_queries(5)
    found = index.search(queries, top_k=small.n_identities + 10)
    truth = ExactIndex(small.embeddings, small.owners, small.n_identities).search(
        queries, top_k=small.n_identities
    )
    np.testing.assert_array_equal(found.identities, truth.identities)
    np.testing.assert_allclose(found.runner_up, truth.runner_up, atol=1e-5)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_save_and_load_round_trip(small: FaceLike, tmp_path: Path, kind: str) -> None:
    args = (small.embeddings, small.owners, small.n_identities)
    index = FaissIndex(*args, kind=kind)  # type: ignore[arg-type]
    path = tmp_path / "faces.facekit.hnsw"
    index.save(path, "42:1:1000")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".sha256"]
    loaded = FaissIndex.load(path, "42:1:1000", *args, kind=kind, ef_search=200)
    assert loaded is not None
    assert loaded.kind == kind
    queries = small.enrolled_queries(50)
    first, again = index.search(queries, top_k=3), loaded.search(queries, top_k=3)
    np.testing.assert_array_equal(first.identities, again.identities)
    np.testing.assert_array_equal(first.similarities, again.similarities)


@pytest.fixture
def saved(small: FaceLike, tmp_path: Path) -> Path:
    path = tmp_path / "faces.facekit.hnsw"
    FaissIndex(small.embeddings, small.owners, small.n_identities).save(path, "7")
    return path


def corrupt_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.unlink(),
        lambda p: p.with_name(p.name + ".sha256").unlink(),
        corrupt_byte,
        lambda p: p.write_bytes(p.read_bytes()[:1000]),
        lambda p: p.with_name(p.name + ".sha256").write_text("{not json"),
        lambda p: p.with_name(p.name + ".sha256").write_bytes(b"\xff\xfe"),
        lambda p: p.with_name(p.name + ".sha256").write_text("[1, 2]"),
    ],
    ids=["no-index", "no-sidecar", "flipped-byte", "truncated", "bad-json", "not-utf8", "list"],
)
def test_a_damaged_sidecar_loads_as_none(
    small: FaceLike, saved: Path, damage: Callable[[Path], None]
) -> None:
    damage(saved)
    assert FaissIndex.load(saved, "7", small.embeddings, small.owners, small.n_identities) is None


def test_a_consistent_forgery_is_still_checked(small: FaceLike, saved: Path) -> None:
    """Garbage whose sha256 matches the sidecar: faiss refuses it, load says None."""
    saved.write_bytes(b"x" * 5000)
    sidecar = saved.with_name(saved.name + ".sha256")
    description = json.loads(sidecar.read_text())
    description["sha256"] = hashlib.sha256(b"x" * 5000).hexdigest()
    sidecar.write_text(json.dumps(description))
    assert FaissIndex.load(saved, "7", small.embeddings, small.owners, small.n_identities) is None


def test_load_refuses_another_key_other_vectors_or_other_build_parameters(
    small: FaceLike, saved: Path
) -> None:
    args = (small.embeddings, small.owners, small.n_identities)
    assert FaissIndex.load(saved, "7", *args) is not None
    assert FaissIndex.load(saved, "8", *args) is None
    assert FaissIndex.load(saved, "7", *args, m=16) is None
    assert FaissIndex.load(saved, "7", *args, kind="ivf") is None
    other = small.embeddings.copy()
    other[0] = other[1]
    assert FaissIndex.load(saved, "7", other, small.owners, small.n_identities) is None
    fewer = (small.embeddings[:-1], small.owners[:-1], small.n_identities)
    assert FaissIndex.load(saved, "7", *fewer) is None
    with pytest.raises(ConfigError, match="unknown FaissIndex parameters"):
        FaissIndex.load(saved, "7", *args, efSearch=10)


def test_bad_queries_and_parameters_are_config_errors(small: FaceLike) -> None:
    index = FaissIndex(small.embeddings, small.owners, small.n_identities)
    for queries in (
        np.zeros((2, 128), np.float32),
        np.zeros(DIM, np.float32),
        np.zeros((1, 2, DIM)),
    ):
        with pytest.raises(ConfigError, match="queries must be"):
            index.search(queries)
    with pytest.raises(ConfigError, match="NaN"):
        index.search(np.full((1, DIM), np.nan, np.float32))
    with pytest.raises(ConfigError, match="aggregate"):
        index.search(small.embeddings[:1], aggregate="median")  # type: ignore[arg-type]
    args = (small.embeddings, small.owners, small.n_identities)
    for bad in ({"kind": "flat"}, {"m": 0}, {"shortlist": 2.5}, {"nprobe": True}, {"nlist": 0}):
        with pytest.raises(ConfigError):
            FaissIndex(*args, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="grouped"):
        FaissIndex(small.embeddings, small.owners[::-1], small.n_identities)
    empty = FaissIndex(np.empty((0, DIM), np.float32), np.empty(0, np.int64), 0)
    with pytest.raises(ConfigError, match="empty"):
        empty.search(small.embeddings[:1])
    with pytest.raises(ConfigError, match="empty"):
        empty.save(Path("never-written"), "0")


def test_importing_the_gallery_does_not_import_faiss() -> None:
    code = (
        "import sys, facekit, facekit.gallery, facekit.gallery.faiss_index;"
        "assert 'faiss' not in sys.modules, 'faiss imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_embeddings_agree_with_exact_search(
    models_dir: Path, data_dir: Path, report: Callable[[str], None]
) -> None:
    """MobileFaceNet embeddings of ORL photos: subjects 1-20 enrolled from images 1-4,
    identified from images 9-10, and subjects 31-40 as strangers."""
    fr = FaceRecognizer(
        detector_model="scrfd_2.5g",
        embedder_model="mobilefacenet_128d",
        model_dir=models_dir,
        detector_options={"padding": 0.5, "input_size": (320, 320)},
    )
    orl = data_dir / "orl_faces"
    enrolled = [(s, orl / f"s{s}/{i}.png") for s in range(1, 21) for i in range(1, 5)]
    probes = [(s, orl / f"s{s}/{i}.png") for s in range(1, 21) for i in (9, 10)]
    probes += [(s, orl / f"s{s}/1.png") for s in range(31, 41)]
    vectors = fr.embed_each([path for _, path in enrolled + probes])
    found_faces = [
        (s - 1, v)
        for (s, _), v in zip(enrolled + probes, vectors, strict=True)
        if isinstance(v, np.ndarray)
    ]
    gallery, asked = found_faces[: len(enrolled)], found_faces[len(enrolled) :]
    assert len(vectors) == len(found_faces)  # every ORL photo has its face found
    owners = np.array([s for s, _ in gallery])
    embeddings = np.stack([v for _, v in gallery])
    queries = np.stack([v for _, v in asked])
    exact = ExactIndex(embeddings, owners, 20).search(queries, top_k=3)
    for kind in ("hnsw", "ivf"):
        found = FaissIndex(embeddings, owners, 20, kind=kind, shortlist=8).search(queries, top_k=3)  # type: ignore[arg-type]
        np.testing.assert_array_equal(found.identities, exact.identities)
        np.testing.assert_allclose(found.similarities, exact.similarities, atol=1e-5)
        np.testing.assert_allclose(found.runner_up, exact.runner_up, atol=1e-5)
    correct = float(np.mean(exact.identities[:40, 0] == [s for s, _ in asked[:40]]))
    report(f"FaissIndex on ORL MobileFaceNet embeddings: agrees with exact; top-1 {correct:.2f}")
    assert correct >= 0.8
