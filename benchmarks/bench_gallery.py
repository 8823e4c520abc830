"""Gallery search and enrolment: facekit's exact search against baselines, and enrolment speed.

Search. Random 512-d float32 unit vectors stand in for enrolled embeddings, grouped
``--per-identity`` samples per identity (default 5), and random unit vectors for the
queries. For each gallery size (default 10k / 100k / 1M samples) and query count (default
1 / 100 / 1,000), these are timed side by side in the same process on the same data:

- facekit: ``ExactIndex(embeddings, owners, n_identities).search(queries, top_k=5)``, the
  in-memory index behind ``Gallery.search`` (built directly: filling a ``Gallery`` with one
  ``add`` per identity takes too long at 1M);
- sklearn: ``NearestNeighbors(metric="cosine", algorithm="brute").fit(embeddings)
  .kneighbors(queries, n_neighbors=5)``; the fit is done before timing. It returns the 5
  nearest *samples*, not identities, which is less work than facekit's 5 best identities;
- loop: ``for q in queries: for e in embeddings: float(q @ e)``, the naive per-pair Python
  loop (similarities only, no ranking: a lower bound on a loop search's cost), run only
  where queries x samples <= ``--loop-max-pairs``; elsewhere the table shows "—".

At the smallest size, ``Gallery.search`` of an in-memory ``Gallery(None, embedder=...)``
filled with the same vectors is timed against ``ExactIndex.search`` to show the wrapper's
cost. Every timed output is checked (outside the timed region): facekit's top-1 identity
must be the owner of sklearn's nearest sample, except for float ties, and ``Gallery.search``
must name the same identities as ``ExactIndex.search``. Each cell runs rounds in which the
contenders alternate (order rotated every round) until ``--repeats`` rounds are done or the
cell has used ``--cell-seconds`` (at least one round); one untimed facekit and sklearn
call at 1 query precede each size. Times are medians, ratios the median of per-round ratios
baseline / facekit (how many times faster facekit is). facekit's peak extra memory for the
largest case is measured with ``tracemalloc`` during its first timed call (a call of seconds
that makes a few hundred allocations: tracing adds nothing measurable, and saves a call of
that length).

Enrolment. ORL faces (``data/orl_faces``, ``--subjects`` x 10 images, 92x112 grayscale
crops) are copied into a temporary folder-per-person layout and enrolled with
``FaceRecognizer(detector_model="scrfd_2.5g", embedder_model="mobilefacenet_128d",
detector_options={"padding": 0.5, "input_size": (320, 320)}, gallery=<new file>)
.enroll(folder, batch_size=B)``, ``--enrol-repeats`` times per batch size (alternating),
each run in a fresh process (so its peak resident memory, ``ru_maxrss``, is its own) with a
new gallery file, timed after one warm-up ``faces()`` call. After the first run of each
batch size, one more enrolment into another new gallery, untimed, measures the peak of
Python allocations with ``tracemalloc`` (numpy arrays included; ONNX Runtime's own buffers
are not seen by it). ``--in-memory-too`` repeats everything with an in-memory
``Gallery(None)``, which separates the cost of committing to the file.

Nothing is asserted about the times. Usage::

    python benchmarks/bench_gallery.py --shared ../shared [--sizes 10000,100000]
        [--queries 1,100] [--subjects 40] [--in-memory-too] [--skip-search | --skip-enrol]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

import facekit
from facekit import FaceRecognizer
from facekit.gallery import EmbedderInfo, ExactIndex, Gallery, SearchResult
from facekit.gallery.index import BLOCK_BYTES

REPO = Path(__file__).resolve().parents[1]
TOP_K = 5
DETECTOR = "scrfd_2.5g"
EMBEDDER = "mobilefacenet_128d"
DETECTOR_OPTIONS = {"padding": 0.5, "input_size": (320, 320)}
TIE = 1e-5  # similarities closer than this are a float tie: either identity is exact
MIB = 1 << 20

Work = Callable[[], object]


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchRow:
    """One cell of the search table; times in ms per call (all queries together)."""

    samples: int
    identities: int
    queries: int
    rounds: int
    facekit_ms: float
    sklearn_ms: float
    sklearn_ratio: float
    loop_ms: float | None
    loop_ratio: float | None
    ties: int


@dataclass(frozen=True, slots=True)
class WrapperRow:
    """``Gallery.search`` against ``ExactIndex.search`` on the same vectors."""

    samples: int
    queries: int
    rounds: int
    index_ms: float
    gallery_ms: float
    ratio: float


def unit_vectors(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """``(count, dim)`` float32 Gaussian vectors normalised to unit length, made in chunks so
    the only large allocation is the result."""
    out = np.empty((count, dim), dtype=np.float32)
    step = 65536
    for start in range(0, count, step):
        chunk = out[start : start + step]
        rng.standard_normal(chunk.shape, dtype=np.float32, out=chunk)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def timed_rounds(
    works: Sequence[Work | None], repeats: int, budget: float
) -> tuple[list[list[float]], list[list[object]]]:
    """Run the callables in rounds, rotating their order every round, until ``repeats``
    rounds are done or ``budget`` seconds are used (at least one round). ``None`` entries
    are skipped. Returns the seconds and the outputs of each callable, per round."""
    seconds: list[list[float]] = [[] for _ in works]
    outputs: list[list[object]] = [[] for _ in works]
    present = [i for i, work in enumerate(works) if work is not None]
    started = time.perf_counter()
    for round_ in range(repeats):
        shift = round_ % len(present)
        for i in present[shift:] + present[:shift]:
            work = works[i]
            assert work is not None
            start = time.perf_counter()
            result = work()
            seconds[i].append(time.perf_counter() - start)
            outputs[i].append(result)
        if time.perf_counter() - started >= budget:
            break
    return seconds, outputs


def naive_loop(queries: np.ndarray, embeddings: np.ndarray) -> None:
    """The per-pair Python loop a first attempt would write."""
    for q in queries:
        for e in embeddings:
            float(q @ e)


class TracedOnce:
    """Wraps a callable: its first call runs under ``tracemalloc``, recording the peak of
    the memory it allocated (``peak``, bytes); later calls run plainly."""

    def __init__(self, work: Work) -> None:
        self.work = work
        self.peak: int | None = None

    def __call__(self) -> object:
        if self.peak is not None:
            return self.work()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        try:
            return self.work()
        finally:
            self.peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()


def check_exact(
    found: SearchResult,
    neighbours: tuple[np.ndarray, np.ndarray],
    embeddings: np.ndarray,
    owners: np.ndarray,
    queries: np.ndarray,
) -> int:
    """Raise unless facekit's top-1 identity is the owner of sklearn's nearest sample for
    every query, except float ties (facekit's identity has a sample as close, recomputed
    here in float64); returns the number of ties."""
    distances, indices = neighbours
    sklearn_best = 1.0 - distances[:, 0].astype(np.float64)
    worst = float(np.abs(sklearn_best - found.similarities[:, 0]).max())
    if worst > TIE:
        raise SystemExit(f"facekit's best similarity differs from sklearn's by {worst:.2e}")
    got, expected = found.identities[:, 0], owners[indices[:, 0]]
    differ = np.flatnonzero(got != expected)
    for q in differ:
        samples = embeddings[owners == got[q]].astype(np.float64)
        best = float((samples @ queries[q].astype(np.float64)).max())
        if abs(best - sklearn_best[q]) > TIE:
            raise SystemExit(
                f"query {q}: facekit says identity {got[q]} (similarity {best:.6f}), sklearn's "
                f"nearest sample belongs to {expected[q]} ({sklearn_best[q]:.6f})"
            )
    return int(differ.size)


def search_rows(
    args: argparse.Namespace,
) -> tuple[list[SearchRow], list[WrapperRow], list[str]]:
    """Time every (size, query count) cell; returns the tables and the memory notes."""
    # Imported here, not at the top: the enrolment workers import this module, and their
    # resident memory should be facekit's alone.
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(args.seed)
    largest, most = max(args.sizes), max(args.queries)
    started = time.perf_counter()
    gallery_vectors = unit_vectors(rng, largest, args.dim)
    queries = unit_vectors(rng, most, args.dim)
    owners_all = np.arange(largest, dtype=np.int64) // args.per_identity
    print(
        f"made {largest:,} x {args.dim} gallery and {most:,} query vectors in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    rows: list[SearchRow] = []
    notes: list[str] = []
    for size in sorted(args.sizes):
        embeddings = gallery_vectors[:size]  # a prefix: still grouped, no copy
        owners = owners_all[:size]
        n_identities = int(owners[-1]) + 1
        index = ExactIndex(embeddings, owners, n_identities)
        fitted = NearestNeighbors(metric="cosine", algorithm="brute").fit(embeddings)
        warm = queries[:1]
        index.search(warm, top_k=TOP_K)
        fitted.kneighbors(warm, n_neighbors=TOP_K)
        for count in sorted(args.queries):
            batch = queries[:count]
            run_loop = count * size <= args.loop_max_pairs
            facekit_work: Work = partial(index.search, batch, top_k=TOP_K)
            traced = None
            if args.trace and (size, count) == (largest, most):
                facekit_work = traced = TracedOnce(facekit_work)
            seconds, outputs = timed_rounds(
                [
                    facekit_work,
                    partial(fitted.kneighbors, batch, n_neighbors=TOP_K),
                    partial(naive_loop, batch, embeddings) if run_loop else None,
                ],
                args.repeats,
                args.cell_seconds,
            )
            ties = 0
            for found, neighbours in zip(outputs[0], outputs[1], strict=True):
                assert isinstance(found, SearchResult)
                assert isinstance(neighbours, tuple)
                ties = max(ties, check_exact(found, neighbours, embeddings, owners, batch))
            fk, sk, loop = seconds
            row = SearchRow(
                size,
                n_identities,
                count,
                len(fk),
                1000 * statistics.median(fk),
                1000 * statistics.median(sk),
                statistics.median(s / f for s, f in zip(sk, fk, strict=True)),
                1000 * statistics.median(loop) if loop else None,
                statistics.median(s / f for s, f in zip(loop, fk, strict=True)) if loop else None,
                ties,
            )
            rows.append(row)
            if traced is not None and traced.peak is not None:
                notes = memory_notes(index, count, traced.peak)
            loop_text = f", loop {row.loop_ms:.1f}" if row.loop_ms is not None else ""
            print(
                f"  {size:,} samples x {count:,} queries ({row.rounds} rounds): facekit "
                f"{row.facekit_ms:.1f}, sklearn {row.sklearn_ms:.1f}{loop_text} ms",
                file=sys.stderr,
            )
        del fitted, index
    smallest = min(args.sizes)
    wrapper = wrapper_rows(gallery_vectors[:smallest], owners_all[:smallest], queries, args)
    return rows, wrapper, notes


def wrapper_rows(
    embeddings: np.ndarray, owners: np.ndarray, queries: np.ndarray, args: argparse.Namespace
) -> list[WrapperRow]:
    """``Gallery.search`` (in-memory gallery, one ``add`` per identity) against the bare
    ``ExactIndex.search`` on the same vectors."""
    started = time.perf_counter()
    binding = EmbedderInfo(
        name="random", sha256="0" * 64, dim=args.dim, template="arcface112", flip=False
    )
    gallery = Gallery(None, embedder=binding)
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    for number, (start, stop) in enumerate(zip(starts, [*starts[1:], len(owners)], strict=True)):
        gallery.add(f"id{number:08d}", embeddings[start:stop])  # sorted names = owner order
    index = ExactIndex(embeddings, owners, int(owners[-1]) + 1)
    gallery.search(queries[:1], threshold=0.0)  # loads the index; warm-up
    names = gallery.identities()
    print(
        f"filled an in-memory Gallery with {len(embeddings):,} samples in "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    rows = []
    for count in sorted(args.queries):
        batch = queries[:count]
        seconds, outputs = timed_rounds(
            [
                partial(index.search, batch, top_k=TOP_K),
                partial(gallery.search, batch, threshold=-1.0, top_k=TOP_K),
            ],
            args.repeats,
            args.cell_seconds,
        )
        for found, identified in zip(outputs[0], outputs[1], strict=True):
            assert isinstance(found, SearchResult)
            assert isinstance(identified, list)
            expected = [[names[i] for i in ids] for ids in found.identities.tolist()]
            got = [[name for name, _ in result.candidates] for result in identified]
            if got != expected:
                raise SystemExit("Gallery.search and ExactIndex.search disagree")
        index_s, gallery_s = seconds
        rows.append(
            WrapperRow(
                len(embeddings),
                count,
                len(index_s),
                1000 * statistics.median(index_s),
                1000 * statistics.median(gallery_s),
                statistics.median(g / i for g, i in zip(gallery_s, index_s, strict=True)),
            )
        )
        print(
            f"  Gallery.search {count:,} queries: {rows[-1].gallery_ms:.2f} vs "
            f"{rows[-1].index_ms:.2f} ms",
            file=sys.stderr,
        )
    gallery.close()
    return rows


def mib(size: float) -> str:
    """Bytes as MiB: one decimal below 10 MiB."""
    value = size / MIB
    return f"{value:.1f} MiB" if value < 10 else f"{value:,.0f} MiB"


def memory_notes(index: ExactIndex, count: int, peak: int) -> list[str]:
    """facekit's traced peak for ``count`` queries, with the block-size arithmetic."""
    size = index.embeddings.shape[0]
    per_query = index.bytes_per_query("max")
    per_block = max(1, BLOCK_BYTES // per_query)
    rows = min(per_block, count)
    print(f"  traced peak {mib(peak)}", file=sys.stderr)
    return [
        f"- facekit's peak extra memory, {count:,} queries x {size:,} samples "
        f"(`tracemalloc`, during the first timed call): **{mib(peak)}** (the "
        f"gallery's own {mib(index.embeddings.nbytes)} not counted).",
        f"- Block arithmetic: `BLOCK_BYTES` = {mib(BLOCK_BYTES)} bounds all temporaries of a "
        f"block of queries; one query needs {per_query:,} bytes (4 per sample for its "
        f"similarity row, 4 per identity for its scores, 8 per identity for the partial "
        f"sort's indices), so {per_block:,} queries per block at {size:,} samples and "
        f"{index.n_identities:,} identities; expected peak at most "
        f"{mib(rows * per_query)}.",
    ]


# --- enrolment ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnrolRun:
    """One enrolment run in a fresh process."""

    batch_size: int
    in_memory: bool
    images: int
    added: int
    failed: int
    seconds: float
    rss_before_mib: float
    rss_peak_mib: float
    traced_peak_mib: float | None

    @property
    def per_second(self) -> float:
        return self.images / self.seconds


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def recognizer(models: Path, gallery: Path | None) -> FaceRecognizer:
    """The recogniser the enrolment is timed with; ``None``: an in-memory gallery."""
    return FaceRecognizer(
        detector_model=DETECTOR,
        embedder_model=EMBEDDER,
        model_dir=models,
        download=False,
        detector_options=dict(DETECTOR_OPTIONS),
        gallery=gallery if gallery is not None else Gallery(None),
    )


def enrol_worker(
    folder: str, models: str, batch_size: int, in_memory: bool, trace: bool
) -> EnrolRun:
    """Runs in a fresh process: enrol ``folder`` into a new gallery file (or an in-memory
    gallery), timed; then, if ``trace``, once more into another new one under
    ``tracemalloc``, untimed."""
    images = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    with tempfile.TemporaryDirectory(prefix="bench_gallery_") as scratch:
        faces = recognizer(Path(models), None if in_memory else Path(scratch) / "timed.db")
        faces.faces(images[0])  # warm-up: first ONNX Runtime runs, outside the timing
        before = max_rss_mib()
        start = time.perf_counter()
        report = faces.enroll(folder, batch_size=batch_size, progress=False)
        seconds = time.perf_counter() - start
        peak = max_rss_mib()
        faces.gallery.close()
        traced = None
        if trace:
            again = recognizer(Path(models), None if in_memory else Path(scratch) / "traced.db")
            again.faces(images[0])
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            again.enroll(folder, batch_size=batch_size, progress=False)
            traced = (tracemalloc.get_traced_memory()[1] - base) / MIB
            tracemalloc.stop()
            again.gallery.close()
    return EnrolRun(
        batch_size,
        in_memory,
        len(images),
        len(report.added),
        len(report.failed),
        seconds,
        before,
        peak,
        traced,
    )


def enrol_runs(args: argparse.Namespace) -> list[EnrolRun]:
    """Copy the ORL subjects into a folder per person and enrol them, one process per run,
    alternating the batch sizes; the first run of each batch size also traces."""
    source = args.shared / "data" / "orl_faces"
    rows: list[EnrolRun] = []
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench_gallery_orl_") as folder:
        for subject in range(1, args.subjects + 1):
            shutil.copytree(source / f"s{subject}", Path(folder) / f"s{subject}")
        configs = [(size, False) for size in args.batch_sizes]
        if args.in_memory_too:
            configs += [(size, True) for size in args.batch_sizes]
        for repeat in range(args.enrol_repeats):
            order = configs if repeat % 2 == 0 else configs[::-1]
            for batch_size, in_memory in order:
                with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
                    row = pool.submit(
                        enrol_worker,
                        folder,
                        str(args.shared / "models"),
                        batch_size,
                        in_memory,
                        args.trace and repeat == 0,
                    ).result()
                rows.append(row)
                print(
                    f"  enrol batch {batch_size}{' in memory' if in_memory else ''}: "
                    f"{row.per_second:.1f} images/s, "
                    f"peak RSS {row.rss_peak_mib:.0f} MiB",
                    file=sys.stderr,
                )
    return rows


# --- report ------------------------------------------------------------------------------


def machine() -> list[str]:
    """Lines describing the machine and the library versions."""
    import sklearn

    model = ""
    memory = ""
    cpuinfo, meminfo = Path("/proc/cpuinfo"), Path("/proc/meminfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    if meminfo.is_file():
        first = meminfo.read_text().splitlines()[0].split()
        memory = f"; memory {int(first[1]) / (1 << 20):.1f} GiB"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    blas = ""
    try:
        config = np.show_config(mode="dicts")
        info = config["Build Dependencies"]["blas"]
        blas = f" ({info.get('name', '?')} {info.get('version', '')})".replace(" )", ")")
    except Exception:  # show_config's layout is not a stable API
        blas = ""
    return [
        f"- CPU: {platform.machine()}" + (f", {model}" if model else "") + f"; os.cpu_count() = "
        f"{os.cpu_count()}"
        + (f", usable by this process: {usable}" if usable is not None else "")
        + memory,
        f"- OS: {platform.platform()}; Python {platform.python_version()}",
        f"- numpy {np.__version__}{blas}, scikit-learn {sklearn.__version__}, "
        f"onnxruntime {ort.__version__} (CPU), facekit {facekit.__version__}",
    ]


def thousands(value: int) -> str:
    """10000 -> 10k, 1000000 -> 1M."""
    for unit, name in ((1_000_000, "M"), (1_000, "k")):
        if value >= unit and value % unit == 0:
            return f"{value // unit}{name}"
    return f"{value:,}"


def ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def ratio(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def search_table(rows: Sequence[SearchRow]) -> str:
    lines = [
        "| samples (identities) | queries | rounds | facekit (ms) | sklearn (ms) "
        "| sklearn / facekit | loop (ms) | loop / facekit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        loop = ms(r.loop_ms) if r.loop_ms is not None else "—"
        loop_ratio = ratio(r.loop_ratio) if r.loop_ratio is not None else "—"
        lines.append(
            f"| {thousands(r.samples)} ({thousands(r.identities)}) | {r.queries:,} | {r.rounds} "
            f"| {ms(r.facekit_ms)} | {ms(r.sklearn_ms)} | {ratio(r.sklearn_ratio)} | {loop} "
            f"| {loop_ratio} |"
        )
    return "\n".join(lines)


def wrapper_table(rows: Sequence[WrapperRow]) -> str:
    lines = [
        "| samples | queries | rounds | ExactIndex.search (ms) | Gallery.search (ms) "
        "| Gallery / ExactIndex |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {thousands(r.samples)} | {r.queries:,} | {r.rounds} | {ms(r.index_ms)} "
            f"| {ms(r.gallery_ms)} | {r.ratio:.2f} |"
        )
    return "\n".join(lines)


def enrol_table(runs: Sequence[EnrolRun]) -> str:
    """One line per batch size: medians over its runs, the range of images/s, the largest
    peak RSS, and the traced peak of its first run."""
    lines = [
        "| batch_size | gallery | runs | images | added | failed | time (s) | images/s "
        "| images/s range | RSS before enrol (MiB) | peak RSS (MiB) | tracemalloc peak (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for batch_size, in_memory in sorted(
        dict.fromkeys((r.batch_size, r.in_memory) for r in runs), key=lambda c: (c[1], c[0])
    ):
        mine = [r for r in runs if (r.batch_size, r.in_memory) == (batch_size, in_memory)]
        speeds = [r.per_second for r in mine]
        traced = [r.traced_peak_mib for r in mine if r.traced_peak_mib is not None]
        first = mine[0]
        outcome = {(r.images, r.added, r.failed) for r in mine}
        added = first.added if len(outcome) == 1 else "/".join(str(r.added) for r in mine)
        failed = first.failed if len(outcome) == 1 else "/".join(str(r.failed) for r in mine)
        lines.append(
            f"| {batch_size} | {'in memory' if in_memory else 'file'} | {len(mine)} "
            f"| {first.images} | {added} | {failed} "
            f"| {statistics.median(r.seconds for r in mine):.1f} "
            f"| {statistics.median(speeds):.1f} | {min(speeds):.1f}–{max(speeds):.1f} "
            f"| {statistics.median(r.rss_before_mib for r in mine):.0f} "
            f"| {max(r.rss_peak_mib for r in mine):.0f} "
            f"| {f'{traced[0]:.1f}' if traced else '—'} |"
        )
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    """``"10000,1e5"`` -> ``[10000, 100000]``."""
    try:
        values = [int(float(part)) for part in text.split(",") if part.strip()]
    except ValueError:
        message = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("FACEKIT_SHARED", REPO.parent / "shared")),
        help="folder holding models/ and data/ (default: $FACEKIT_SHARED or ../shared)",
    )
    parser.add_argument(
        "--sizes",
        type=int_list,
        default=[10_000, 100_000, 1_000_000],
        help="gallery sizes in samples (default 10000,100000,1000000)",
    )
    parser.add_argument(
        "--queries",
        type=int_list,
        default=[1, 100, 1000],
        help="query counts (default 1,100,1000)",
    )
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (512)")
    parser.add_argument("--per-identity", type=int, default=5, help="samples per identity (5)")
    parser.add_argument("--repeats", type=int, default=9, help="most timed rounds a cell (9)")
    parser.add_argument(
        "--cell-seconds",
        type=float,
        default=6.0,
        help="no new round once a cell has run this long (default 6; at least 1 round)",
    )
    parser.add_argument(
        "--loop-max-pairs",
        type=float,
        default=1e6,
        help="run the Python loop only where queries x samples <= this (default 1e6)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--subjects", type=int, default=30, help="ORL subjects to enrol, 10 images each (30)"
    )
    parser.add_argument(
        "--batch-sizes", type=int_list, default=[1, 16], help="enrol batch sizes (1,16)"
    )
    parser.add_argument(
        "--enrol-repeats", type=int, default=2, help="enrolment runs per batch size (2)"
    )
    parser.add_argument(
        "--in-memory-too",
        action="store_true",
        help="also enrol into an in-memory Gallery(None), to separate the file's cost",
    )
    parser.add_argument(
        "--no-trace",
        dest="trace",
        action="store_false",
        help="no tracemalloc: neither in the largest search case nor the second enrolments",
    )
    parser.add_argument("--skip-search", action="store_true", help="enrolment only")
    parser.add_argument("--skip-enrol", action="store_true", help="search only")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.cell_seconds < 0 or args.enrol_repeats < 1:
        parser.error("--repeats and --enrol-repeats must be >= 1, --cell-seconds >= 0")
    if args.per_identity < 1 or any(size % args.per_identity for size in args.sizes):
        parser.error("every size must be a multiple of --per-identity")
    if not 1 <= args.subjects <= 40:
        parser.error("--subjects must be 1..40 (ORL has 40)")
    if not args.skip_enrol:
        for needed in (args.shared / "models", args.shared / "data" / "orl_faces"):
            if not needed.is_dir():
                parser.error(f"{needed} is missing (pass --shared)")
    started = time.perf_counter()

    search: list[SearchRow] = []
    wrapper: list[WrapperRow] = []
    notes: list[str] = []
    enrol: list[EnrolRun] = []
    if not args.skip_enrol:  # first, while this process is small (the workers are spawned)
        enrol = enrol_runs(args)
    if not args.skip_search:
        search, wrapper, notes = search_rows(args)

    print("## Machine\n")
    print("\n".join(machine()))
    if search:
        print(
            f"\n## Search\n\n{args.dim}-d float32 random unit vectors, {args.per_identity} "
            f"samples per identity; top_k = {TOP_K}; times per call (all queries at once). "
            f"Median of up to {args.repeats} rounds (fewer once a cell has run "
            f"{args.cell_seconds:g} s: see rounds), contenders alternating; ratios are "
            "medians of per-round baseline / facekit, i.e. how many times faster facekit is.\n\n"
            "- facekit: `ExactIndex.search(queries, top_k=5)`: 5 best identities per query.\n"
            '- sklearn: `NearestNeighbors(metric="cosine", algorithm="brute")'
            ".kneighbors(queries, n_neighbors=5)`, fit not timed: 5 nearest samples.\n"
            "- loop: `for q in queries: for e in embeddings: float(q @ e)` where queries x "
            f"samples <= {args.loop_max_pairs:,.0f}, else not run (—).\n"
            "- Exactness: facekit's top-1 identity = owner of sklearn's nearest sample in "
            "every timed call (float ties allowed; largest number of ties in a call: "
            f"{max(r.ties for r in search)}).\n"
        )
        print(search_table(search))
        print(f"\n### Gallery.search wrapper ({thousands(wrapper[0].samples)} samples)\n")
        print(wrapper_table(wrapper))
        if notes:
            print("\n### Memory\n")
            print("\n".join(notes))
    if enrol:
        print(
            f"\n## Enrolment\n\nORL faces, {args.subjects} subjects x 10 images (92x112 "
            f"grayscale), folder per person; detector {DETECTOR} (input 320x320, padding 0.5), "
            f"embedder {EMBEDDER}; {args.enrol_repeats} run(s) per batch size, alternating, "
            "each in a fresh process with a new gallery file, timed after one warm-up `faces()` "
            "call; time and images/s are medians. RSS = `ru_maxrss` (process peak, models "
            "included; largest over the runs); tracemalloc peak (Python and numpy allocations, "
            "not ONNX Runtime's) from one more, untimed enrolment into another new file after "
            "the first run.\n"
        )
        print(enrol_table(enrol))
    print(f"\nTotal benchmark time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
