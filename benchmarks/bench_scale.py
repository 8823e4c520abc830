"""Gallery search at scale: exact vs faiss HNSW vs faiss IVF vs Milvus Lite, side by side.

Vectors are 512-d and shaped like face embeddings, not uniform noise: identity centres in
a 100-d random subspace (strangers 0 ± 0.1 cosine), each identity with 5-15 samples
``unit(0.8 centre + 0.6 noise)`` (same person ≈ 0.64). Queries are new samples of enrolled
people ("enrolled") and samples of people never enrolled ("unknown"); the two are reported
separately, because an unknown query's best match is a weak, near-tie score (≈ 0.3) that
an approximate index may miss without any effect on the decision.

For each size and method: build/insert time, RSS growth, disk size of the saved index,
single-query latency (median over single calls), 100-query batch latency, recall@1 against
exact search (same top identity), hit rate (top identity = the true person; enrolled
queries), the largest top-1 score difference to exact, and decision agreement with exact at
the "same person" thresholds of MobileFaceNet (0.425) and ArcFace w600k (0.28): a decision
is "this identity" when its score reaches the threshold, else "unknown".

    python benchmarks/bench_scale.py                   # 100k and 1M (1M HNSW build: minutes)
    python benchmarks/bench_scale.py --quick           # 100k only, shallower HNSW build
    python benchmarks/bench_scale.py --sizes 20k,100k --crossover --json out.json

The goal of issue 13: at 1M samples one query ≤ 5 ms on 2 cores with recall@1 ≥ 0.99.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facekit.gallery import ExactIndex, SearchResult
from facekit.gallery.faiss_index import FaissIndex

DIM = 512
THRESHOLDS = {"mobilefacenet": 0.425, "arcface": 0.28}


def unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


class Faces:
    """``samples`` face-like unit vectors grouped by identity, plus query generators."""

    def __init__(self, samples: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        counts = rng.integers(5, 16, samples // 5)
        counts = counts[: int(np.searchsorted(np.cumsum(counts), samples)) + 1]
        counts[-1] -= counts.sum() - samples
        self.n_identities = counts.size
        self.owners = np.repeat(np.arange(counts.size), counts)
        self.basis = rng.standard_normal((100, DIM), dtype=np.float32)
        self.centres = unit(
            rng.standard_normal((counts.size + 10_000, 100), np.float32) @ self.basis
        )
        self.embeddings = np.empty((samples, DIM), np.float32)
        for start in range(0, samples, 100_000):  # in blocks: bounded temporaries
            self.embeddings[start : start + 100_000] = self.samples(
                self.owners[start : start + 100_000]
            )

    def samples(self, who: np.ndarray) -> np.ndarray:
        noise = unit(self.rng.standard_normal((who.size, DIM), np.float32))
        return unit(0.8 * self.centres[who] + 0.6 * noise)

    def queries(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Enrolled queries, their true identities, unknown queries."""
        who = self.rng.integers(0, self.n_identities, count)
        return self.samples(who), who, self.samples(self.n_identities + np.arange(count))


def rss_mib() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def disk_mib(path: Path) -> float:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20
    return path.stat().st_size / 2**20 if path.exists() else float("nan")


class Method:
    """One way to search: ``search(queries) -> (identities (Q,), similarities (Q,))``."""

    name: str
    build_s: float
    rss_mib: float
    disk_mib: float

    def search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Free what the method holds."""


class IndexMethod(Method):
    def __init__(self, name: str, make: Callable[[], ExactIndex | FaissIndex], folder: Path):
        self.name = name
        before = rss_mib()
        started = time.perf_counter()
        self.index: ExactIndex | FaissIndex | None = make()
        self.build_s = time.perf_counter() - started
        self.rss_mib = rss_mib() - before
        self.disk_mib = float("nan")
        if isinstance(self.index, FaissIndex):
            self.path = folder / f"{name}.index"
            self.index.save(self.path, "bench")
            self.disk_mib = disk_mib(self.path)

    def search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert self.index is not None
        found: SearchResult = self.index.search(queries)
        return found.identities[:, 0], found.similarities[:, 0]

    def close(self) -> None:
        self.index = None


class MilvusMethod(Method):
    """Milvus Lite through facekit's MilvusStore (insert + flush + reopen, then search)."""

    def __init__(self, faces: Faces, folder: Path) -> None:
        from facekit.gallery.binding import EmbedderInfo
        from facekit.gallery.milvus_store import MilvusStore

        self.name = "milvus-lite"
        self._uri = f"milvus-lite://{folder / 'faces.db'}"
        self._names = [f"p{i:07d}" for i in range(faces.n_identities)]
        count = faces.owners.size
        before = rss_mib()
        started = time.perf_counter()
        store = MilvusStore(self._uri)
        store.bind(EmbedderInfo("bench", "0" * 64, DIM, "arcface112", False))
        for start in range(0, count, 10_000):
            rows = slice(start, start + 10_000)
            names = [self._names[o] for o in faces.owners[rows]]
            none: list[None] = [None] * len(names)
            store.add_many(names, faces.embeddings[rows], none, none, none, none)
        store.close()
        self._store = MilvusStore(self._uri, create=False)  # reopen: indexed segments
        self._store.search_names(faces.embeddings[:1])
        self.build_s = time.perf_counter() - started
        self.rss_mib = rss_mib() - before
        self.disk_mib = disk_mib(folder / "faces.db")
        self._number = {name: i for i, name in enumerate(self._names)}

    def search(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hits = self._store.search_names(queries, top_k=1)
        return (
            np.array([self._number[h[0][0]] for h in hits]),
            np.array([h[0][1] for h in hits], np.float32),
        )

    def close(self) -> None:
        self._store.close()


def latency_ms(method: Method, queries: np.ndarray, batch: int, repeats: int) -> float:
    """Median wall time of one ``search`` call on ``batch`` queries, in ms."""
    times = []
    for i in range(repeats):
        chunk = queries[(i * batch) % len(queries) :][:batch]
        started = time.perf_counter()
        method.search(chunk)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def agreement(
    ids: np.ndarray, sims: np.ndarray, ref_ids: np.ndarray, ref_sims: np.ndarray, threshold: float
) -> float:
    decided = np.where(sims >= threshold, ids, -1)
    reference = np.where(ref_sims >= threshold, ref_ids, -1)
    return float(np.mean(decided == reference))


def measure(
    method: Method, queries: dict[str, np.ndarray], truth: dict[str, Any]
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "method": method.name,
        "build_s": round(method.build_s, 2),
        "rss_mib": round(method.rss_mib),
        "disk_mib": round(method.disk_mib, 1),
    }
    single = queries["enrolled"]
    row["ms_1q"] = round(
        latency_ms(method, single, 1, 30 if method.name != "milvus-lite" else 10), 3
    )
    row["ms_100q"] = round(latency_ms(method, single, 100, 3), 1)
    for kind in ("enrolled", "unknown"):
        ids, sims = method.search(queries[kind])
        ref_ids, ref_sims = truth[kind]
        row[f"{kind}_recall@1"] = round(float(np.mean(ids == ref_ids)), 4)
        same = ids == ref_ids
        row[f"{kind}_max_score_diff"] = float(
            np.max(np.abs(sims[same] - ref_sims[same]), initial=0)
        )
        row[f"{kind}_over_exact"] = int(np.sum(sims > ref_sims + 1e-5))
        for label, threshold in THRESHOLDS.items():
            row[f"{kind}_agree@{label}"] = round(
                agreement(ids, sims, ref_ids, ref_sims, threshold), 4
            )
        if kind == "enrolled":
            row["enrolled_hit"] = round(float(np.mean(ids == truth["who"])), 4)
    return row


def run_size(samples: int, args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    print(f"\n## {samples:,} samples, {DIM}-d", flush=True)
    started = time.perf_counter()
    faces = Faces(samples)
    enrolled, who, unknown = faces.queries(args.queries)
    queries = {"enrolled": enrolled, "unknown": unknown}
    print(f"data: {faces.n_identities:,} identities, made in {time.perf_counter() - started:.1f} s")
    args_common = (faces.embeddings, faces.owners, faces.n_identities)
    search = {"ef_search": args.ef_search, "shortlist": args.shortlist}
    makers: list[tuple[str, Callable[[], Method]]] = [
        ("exact", lambda: IndexMethod("exact", lambda: ExactIndex(*args_common), folder)),
        (
            "hnsw",
            lambda: IndexMethod(
                "hnsw",
                lambda: FaissIndex(
                    *args_common,
                    kind="hnsw",
                    m=args.m,
                    ef_construction=args.ef_construction,
                    **search,
                ),
                folder,
            ),
        ),
        (
            "ivf",
            lambda: IndexMethod(
                "ivf",
                lambda: FaissIndex(
                    *args_common, kind="ivf", nprobe=args.nprobe, shortlist=args.shortlist
                ),
                folder,
            ),
        ),
    ]
    if samples <= args.milvus_max:
        if importlib.util.find_spec("facekit.gallery.milvus_store") is None:
            print("milvus-lite: facekit.gallery.milvus_store is missing: row skipped")
        else:
            makers.append(("milvus-lite", lambda: MilvusMethod(faces, folder)))
    else:
        print(f"milvus-lite: skipped above --milvus-max {args.milvus_max:,} samples")
    rows: list[dict[str, Any]] = []
    truth: dict[str, Any] = {"who": who}
    for name, make in makers:
        if name not in args.methods:
            continue
        gc.collect()
        method = make()
        if name == "exact":
            truth.update({k: method.search(q) for k, q in queries.items()})
        elif "enrolled" not in truth:
            exact = ExactIndex(*args_common)
            truth.update({k: _top1(exact.search(q)) for k, q in queries.items()})
            del exact
        row = {"samples": samples, **measure(method, queries, truth)}
        print(json.dumps(row), flush=True)
        rows.append(row)
        if name == "hnsw" and args.sweep:
            rows += sweep(method, faces, queries, truth, args)
        method.close()
        del method
    return rows


def sweep(
    built: Method, faces: Faces, queries: dict[str, np.ndarray], truth: dict[str, Any], args: Any
) -> list[dict[str, Any]]:
    """The saved HNSW index loaded back with other search settings (``ef_search:shortlist``)."""
    assert isinstance(built, IndexMethod)
    built.close()
    rows = []
    for setting in args.sweep.split(","):
        ef_search, shortlist = (int(v) for v in setting.split(":"))
        method = IndexMethod(
            f"hnsw ef{ef_search} sl{shortlist}",
            lambda e=ef_search, s=shortlist: _loaded(built.path, faces, args, e, s),
            built.path.parent,
        )
        row = {"samples": faces.owners.size, **measure(method, queries, truth)}
        row["build_s"] = float("nan")  # loading, not building
        print(json.dumps(row), flush=True)
        rows.append(row)
        method.close()
    return rows


def _loaded(path: Path, faces: Faces, args: Any, ef_search: int, shortlist: int) -> FaissIndex:
    index = FaissIndex.load(
        path,
        "bench",
        faces.embeddings,
        faces.owners,
        faces.n_identities,
        m=args.m,
        ef_construction=args.ef_construction,
        ef_search=ef_search,
        shortlist=shortlist,
    )
    assert index is not None, "the saved index did not load"
    return index


def _top1(found: SearchResult) -> tuple[np.ndarray, np.ndarray]:
    return found.identities[:, 0], found.similarities[:, 0]


def crossover(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Single-query latency of exact vs HNSW (default build) at growing sizes."""
    print("\n## exact / HNSW crossover (single query, ms)", flush=True)
    rows = []
    for samples in (5_000, 10_000, 20_000, 50_000):
        faces = Faces(samples, seed=1)
        enrolled, _, _ = faces.queries(200)
        args_common = (faces.embeddings, faces.owners, faces.n_identities)
        exact = IndexMethod(
            "exact", lambda data=args_common: ExactIndex(*data), Path(tempfile.gettempdir())
        )
        hnsw = IndexMethod(
            "hnsw",
            lambda data=args_common: FaissIndex(
                *data, ef_search=args.ef_search, shortlist=args.shortlist
            ),
            Path(tempfile.gettempdir()),
        )
        row = {
            "samples": samples,
            "exact_ms": round(latency_ms(exact, enrolled, 1, 50), 3),
            "hnsw_ms": round(latency_ms(hnsw, enrolled, 1, 50), 3),
            "hnsw_build_s": round(hnsw.build_s, 1),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,1M", help="sample counts, e.g. 100k,1M")
    parser.add_argument("--quick", action="store_true", help="100k only, HNSW efConstruction 40")
    parser.add_argument("--queries", type=int, default=1000, help="queries of each kind")
    parser.add_argument("--methods", default="exact,hnsw,ivf,milvus-lite")
    parser.add_argument("--m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--shortlist", type=int, default=64)
    parser.add_argument("--nprobe", type=int, default=64)
    parser.add_argument("--milvus-max", type=parse_size, default=100_000)
    parser.add_argument(
        "--sweep", default="", help="HNSW search settings to try, e.g. 64:32,128:64,256:64"
    )
    parser.add_argument("--crossover", action="store_true", help="also time exact vs HNSW")
    parser.add_argument("--json", type=Path, help="write all rows to this file")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.ef_construction = "100k", 40
    args.methods = args.methods.split(",")
    load = os.getloadavg()
    import faiss

    print(
        f"# bench_scale: {os.cpu_count()} CPUs, faiss {faiss.__version__} with "
        f"{faiss.omp_get_max_threads()} OpenMP threads, load average {load[0]:.1f} at start, "
        f"python {sys.version.split()[0]}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench_scale."))
    try:
        results: dict[str, Any] = {"sizes": []}
        for size in (parse_size(s) for s in args.sizes.split(",")):
            results["sizes"] += run_size(size, args, folder)
        if args.crossover:
            results["crossover"] = crossover(args)
        results["load_average_end"] = os.getloadavg()[0]
        print(f"load average at the end: {results['load_average_end']:.1f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
