"""Enrolment and identification on a Ray cluster: many processes (or machines, or GPUs)
detect and embed, one process reads and writes the gallery.

Where things run:

- the **driver** (the process calling `enroll`) lists the files, reads which contents the
  gallery holds already, and is the only writer of the gallery: in batches, one transaction
  each. Milvus Lite admits one process per database and SQLite serialises writers, so the
  workers never open the gallery;
- an **actor pool** (Ray Data ``map_batches``): each actor builds one `FaceRecognizer` from
  ``recognizer_kwargs`` and, per file, hashes the bytes, skips content the gallery has,
  detects, picks the face, applies the quality filter and embeds — the steps of
  `FaceRecognizer.enroll`, with the same code. A file that fails comes back as data (its
  reason), never as an exception, so one bad file does not fail the dataset. Actors take one
  GPU each when the cluster has GPUs, else half a CPU each. `identify` works the same way:
  actors find and embed the faces, the driver searches the gallery a batch at a time.

Needs the ``[ray]`` extra (``pip install "facekit[ray]"``), and facekit installed on every
node of a cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from .embedders._common import require_thresholds
from .errors import ConfigError, FacekitError, GalleryError
from .gallery import Aggregate, EmbedderInfo, Gallery
from .io import describe
from .recognizer import (
    _SKIPPED,
    FaceRecognizer,
    _AlreadyEnrolled,
    _enrolled_contents,
    _EnrollLoader,
    _problem,
)
from .sources import folder_sources
from .types import EnrolledFace, EnrollProblem, EnrollReport, FaceMatch

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["enroll", "identify"]

_LOG = logging.getLogger(__name__)

_WRITE_BATCH = 256
"""Per-file results the driver handles at a time: one gallery transaction (`enroll`) or
one gallery search (`identify`)."""
_CPU_PER_ACTOR = 0.5
"""Logical CPUs reserved per actor on a cluster without GPUs: fractional, so that actors
never hold every CPU (Ray Data's own tasks would then wait for ever)."""
_FACTS_TIMEOUT_S = 600.0
"""How long the driver waits for a worker to build the recogniser and report its embedder."""
_T = TypeVar("_T")


def enroll(
    source: str | os.PathLike[str] | Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    gallery: str | os.PathLike[str] | Gallery,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 32,
    face: Literal["largest", "best", "error"] = "largest",
    progress: bool = True,
    **recognizer_kwargs: Any,
) -> EnrollReport:
    """`FaceRecognizer.enroll` on a Ray cluster: the same faces, embeddings and report.

    Args:
        source: a folder (folder per person ``root/alice/*.jpg`` or ``root/alice.jpg``, as
            `FaceRecognizer.enroll`) or ``(identity, path)`` pairs. Every node must see the
            files at these paths (a shared file system on a cluster).
        gallery: the gallery location (a path, or a URI where the installed backends accept
            one) or an open `Gallery`; it is created and bound to the embedder when new.
        address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``,
            ``"host:6379"``), used only when Ray is not initialised in this process yet;
            ``None`` starts a local one, shut down again at the end. A Ray the caller
            started is used as it is and left running.
        actors: size of the actor pool (default: one per GPU when the cluster has GPUs,
            else one per CPU).
        batch_size: images each actor detects and embeds per call.
        face: which face of an image with several: ``"largest"``, ``"best"``, or
            ``"error"`` to refuse such images.
        progress: show Ray Data's progress bars.
        recognizer_kwargs: arguments of the `FaceRecognizer` each actor builds (detector,
            models, options, quality filter...). On GPU actors ``device``
            defaults to ``"cuda"``; CPU actors default to ``workers=1, threads=1``.

    Returns:
        An `EnrollReport`, entries in input order. Contents already in the gallery are
        skipped, so an interrupted run resumes; per-file problems are collected, logged and
        never abort the run.

    Raises:
        ConfigError: Ray is not installed, bad arguments, or inputs that are not file paths.
        GalleryError: the gallery was made by another embedder, or cannot be opened.
    """
    if face not in ("largest", "best", "error"):
        raise ConfigError(f"face must be 'largest', 'best' or 'error', got {face!r}")
    _check_options(actors, batch_size)
    items = _file_items(source)
    if not items:
        return EnrollReport()
    with _connected(address) as ray:
        return _enroll(ray, items, gallery, actors, batch_size, face, progress, recognizer_kwargs)


def identify(
    images: Iterable[str | os.PathLike[str]],
    *,
    gallery: str | os.PathLike[str] | Gallery,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 32,
    top_k: int = 1,
    threshold: float | None = None,
    aggregate: Aggregate = "max",
    progress: bool = True,
    **recognizer_kwargs: Any,
) -> list[list[FaceMatch] | FacekitError]:
    """`FaceRecognizer.identify` of many image files on a Ray cluster: actors detect and
    embed every face, this process searches the gallery (a batch of faces per search).

    Args:
        images: image files every node can read.
        gallery: an existing gallery location or an open `Gallery`.
        address, actors, batch_size, progress, recognizer_kwargs: as for `enroll`.
        top_k, threshold, aggregate: as for `FaceRecognizer.identify` (``threshold``
            defaults to the embedder's ``thresholds.same``).

    Returns:
        Per image, in input order: one `FaceMatch` per face, largest first (empty when no
        face was found), or the `FacekitError` that image gave (unreadable, ...).

    Raises:
        ConfigError: as for `enroll`; no threshold given and the embedder has none.
        GalleryError: no such gallery, or it was made by another embedder.
    """
    _check_options(actors, batch_size)
    items = _file_items((describe(image), image) for image in images)
    if not items:
        return []
    with _connected(address) as ray:
        plan = _Plan.of(ray, actors, recognizer_kwargs)
        binding, same = _embedder_facts(ray, plan)
        if threshold is not None:
            limit = threshold
        elif same is not None:
            limit = same
        else:  # the usual error for an embedder without thresholds
            limit = require_thresholds(None, binding.name).same
        searched = _open(gallery, binding, create=False)
        try:
            dataset = _mapped(ray, items, plan, _FacesActor, {}, batch_size, progress)
            found: list[list[FaceMatch] | FacekitError] = [[] for _ in items]
            for batch in dataset.iter_batches(batch_size=_WRITE_BATCH, batch_format="numpy"):
                _match(batch, searched, found, top_k, limit, aggregate)
        finally:
            if searched is not gallery:
                searched.close()
    return found


@contextlib.contextmanager
def _connected(address: str | None) -> Iterator[ModuleType]:
    """Ray, initialised: joined at ``address`` (a local cluster when ``None``) and shut down
    afterwards, unless this process had initialised it already (then used as it is)."""
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


@dataclass(frozen=True, slots=True)
class _Plan:
    """How the actor pool is laid out on the cluster."""

    actors: int
    cpus: float
    gpus: float
    recognizer_kwargs: Mapping[str, Any]

    @classmethod
    def of(cls, ray: ModuleType, actors: int | None, kwargs: Mapping[str, Any]) -> _Plan:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        device = str(kwargs.get("device", "cuda" if gpus else "cpu"))
        if device.startswith("cuda") and gpus:
            return cls(actors or gpus, 0.0, 1.0, {**kwargs, "device": device})
        cpus = max(1, int(resources.get("CPU", 1)))
        single = {"workers": 1, "threads": 1, **kwargs}
        return cls(actors or cpus, _CPU_PER_ACTOR, 0.0, single)


def _enroll(
    ray: ModuleType,
    items: list[tuple[str, str]],
    location: str | os.PathLike[str] | Gallery,
    actors: int | None,
    batch_size: int,
    face: str,
    progress: bool,
    recognizer_kwargs: Mapping[str, Any],
) -> EnrollReport:
    plan = _Plan.of(ray, actors, recognizer_kwargs)
    binding, _ = _embedder_facts(ray, plan)
    gallery = _open(location, binding, create=True)
    try:
        known = _enrolled_contents(gallery)
        options = {"known": known, "face": face}
        dataset = _mapped(ray, items, plan, _EnrollActor, options, batch_size, progress)
        writer = _Writer(gallery, binding, items)
        for batch in dataset.iter_batches(batch_size=_WRITE_BATCH, batch_format="numpy"):
            writer.write(batch)
    finally:
        if gallery is not location:
            gallery.close()
    report = writer.report()
    for problem in report.failed:
        _LOG.warning("not enrolled: %s (%s): %s", problem.source, problem.identity, problem.reason)
    return report


def _import_ray() -> ModuleType:
    try:
        import ray
        import ray.data  # the [ray] extra's Ray Data, used below
    except ImportError as exc:
        raise ConfigError(
            f'distributed enrolment needs Ray Data: pip install "facekit[ray]" ({exc})'
        ) from None
    return ray


def _file_items(
    source: str | os.PathLike[str] | Iterable[tuple[str, str | os.PathLike[str]]],
) -> list[tuple[str, str]]:
    """``(identity, path)`` pairs with the paths as text (workers open the files)."""
    pairs = folder_sources(source) if isinstance(source, (str, os.PathLike)) else list(source)
    items = []
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ConfigError(f"expected (identity, path) pairs, got {pair!r}")
        identity, path = pair
        if not isinstance(path, (str, os.PathLike)):
            raise ConfigError(
                f"distributed enrolment reads files on the workers: {identity!r} has a "
                f"{type(path).__name__}, not a path"
            )
        items.append((identity, os.fspath(path)))
    return items


def _check_options(actors: int | None, batch_size: int) -> None:
    if actors is not None and (
        isinstance(actors, bool) or not isinstance(actors, int) or actors < 1
    ):
        raise ConfigError(f"actors must be a positive integer or None, got {actors!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")


def _embedder_facts(ray: ModuleType, plan: _Plan) -> tuple[EmbedderInfo, float | None]:
    """The binding of the embedder the actors will use and its ``thresholds.same`` (``None``
    when it has none), from a recogniser built once on a worker (the driver may lack the
    device, e.g. a CPU-only head node)."""
    task = ray.remote(_recognizer_facts).options(
        num_cpus=plan.cpus, num_gpus=plan.gpus, max_retries=0
    )
    try:
        text, same = ray.get(task.remote(plan.recognizer_kwargs), timeout=_FACTS_TIMEOUT_S)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, FacekitError):  # a bad model name, a missing file...
            raise exc.cause from None
        raise
    except ray.exceptions.GetTimeoutError:
        raise ConfigError(
            f"no Ray worker built the recogniser within {_FACTS_TIMEOUT_S:.0f} s: does the "
            "cluster have the resources asked for (a GPU per actor when it has GPUs)?"
        ) from None
    return EmbedderInfo.from_json(text), same


def _recognizer_facts(recognizer_kwargs: Mapping[str, Any]) -> tuple[str, float | None]:
    """Run on a worker: `_embedder_facts`."""
    recognizer = FaceRecognizer(**recognizer_kwargs)
    try:
        same: float | None = recognizer.thresholds.same
    except ConfigError:
        same = None
    return EmbedderInfo.of(recognizer.embedder).to_json(), same


def _open(
    location: str | os.PathLike[str] | Gallery, binding: EmbedderInfo, *, create: bool
) -> Gallery:
    """The gallery at ``location``, bound to ``binding`` (created when new and ``create``)."""
    if not isinstance(location, Gallery):
        return Gallery(location, embedder=binding, create=create)
    if location.embedder is not None and location.embedder.differences(binding):
        raise GalleryError(
            "the gallery was made by another embedder "
            f"({'; '.join(location.embedder.differences(binding))})"
        )
    return location


def _mapped(
    ray: ModuleType,
    items: list[tuple[str, str]],
    plan: _Plan,
    actor: type,
    options: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> Any:
    """The Ray dataset of ``actor``'s per-file results, in input order: each actor of the
    pool is built as ``actor(recognizer_kwargs, **options)`` and called with batches of
    ``index`` (B,) int64 and ``path`` (B,) bytes columns."""
    rows = [{"index": i, "path": os.fsencode(path)} for i, (_, path) in enumerate(items)]
    dataset = ray.data.from_items(rows)
    dataset.context.execution_options.preserve_order = True
    dataset.context.enable_progress_bars = progress
    return dataset.map_batches(
        actor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(plan.actors, len(items))),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
        fn_constructor_kwargs={"recognizer_kwargs": dict(plan.recognizer_kwargs), **options},
    )


class _EnrollActor:
    """One actor of the pool: a recogniser built once, then per batch of files the outcome
    of each, as columns:

    - ``index`` (B,) int64: the file's position in the input;
    - ``kind`` (B,) str: ``""`` when embedded, else the `EnrollProblem.kind`;
    - ``reason`` (B,) bytes: why not (UTF-8, undecodable file-name bytes kept);
    - ``digest`` (B,) str: sha256 of the file's bytes (``""`` when unread);
    - ``embedding`` (B, D) float32: the unit embedding (zeros when none);
    - ``box`` (B, 4) float64 pixels, ``score`` (B,) float64, ``faces`` (B,) int64 faces found.
    """

    def __init__(self, recognizer_kwargs: dict[str, Any], known: frozenset[str], face: str) -> None:
        self._recognizer = FaceRecognizer(**recognizer_kwargs)
        self._known = known
        self._face: Any = face

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        recognizer = self._recognizer
        paths = [os.fsdecode(bytes(path)) for path in batch["path"]]
        engine = recognizer.pipeline(
            batch_size=len(paths), load=_EnrollLoader(recognizer, self._known)
        )
        count = len(paths)
        kinds, reasons, digests = [""] * count, [b""] * count, [""] * count
        embeddings = np.zeros((count, recognizer.embedder.dim), np.float32)
        boxes = np.zeros((count, 4), np.float64)
        scores = np.full(count, math.nan)
        faces = np.zeros(count, np.int64)
        outcomes = recognizer._detected_enrollables(engine, [("", p) for p in paths], self._face)
        for row, (_, name, outcome) in enumerate(outcomes):
            if isinstance(outcome, _AlreadyEnrolled):
                kinds[row] = _SKIPPED
            elif isinstance(outcome, (EnrollProblem, FacekitError)):
                problem = (
                    outcome if isinstance(outcome, EnrollProblem) else _problem(name, "", outcome)
                )
                kinds[row] = problem.kind
                reasons[row] = problem.reason.encode("utf-8", "surrogateescape")
            else:
                digests[row] = outcome.digest
                embeddings[row] = outcome.embedding
                boxes[row] = outcome.box
                scores[row] = math.nan if outcome.score is None else outcome.score
                faces[row] = outcome.faces_found
        return {
            "index": np.asarray(batch["index"], np.int64),
            "kind": np.asarray(kinds, dtype=object),
            "reason": np.asarray(reasons, dtype=object),
            "digest": np.asarray(digests, dtype=object),
            "embedding": embeddings,
            "box": boxes,
            "score": scores,
            "faces": faces,
        }


class _Writer:
    """The driver's side: writes each batch of embedded files to the gallery in one
    transaction, and keeps the report."""

    def __init__(self, gallery: Gallery, binding: EmbedderInfo, items: list[tuple[str, str]]):
        self._gallery = gallery
        self._binding = binding
        self._items = items
        self._written: set[str] = set()
        self._added: list[tuple[int, EnrolledFace]] = []
        self._skipped: list[tuple[int, EnrollProblem]] = []
        self._failed: list[tuple[int, EnrollProblem]] = []

    def write(self, batch: Mapping[str, np.ndarray]) -> None:
        """Record the failures and skips of ``batch`` and add its embedded files."""
        indices = [int(index) for index in batch["index"]]
        digests = [str(digest) for digest in batch["digest"]]
        # the workers skipped what the gallery held when the run started; this catches what
        # this run or another process wrote since
        stored = self._written | self._gallery.known_content([d for d in digests if d])
        rows: list[int] = []
        for row, (index, digest) in enumerate(zip(indices, digests, strict=True)):
            identity, source = self._items[index]
            kind = str(batch["kind"][row])
            if kind == _SKIPPED or (not kind and digest in stored):
                self._skipped.append((index, EnrollProblem(source, identity, _SKIPPED, _SKIPPED)))
            elif kind:
                reason = bytes(batch["reason"][row]).decode("utf-8", "surrogateescape")
                self._failed.append((index, EnrollProblem(source, identity, reason, kind)))
            else:
                stored.add(digest)
                rows.append(row)
        if rows:
            try:
                self._add(rows, batch)
            except GalleryError:  # e.g. one invalid identity name: find it, add the others
                groups: dict[str, list[int]] = {}
                for row in rows:
                    groups.setdefault(self._items[indices[row]][0], []).append(row)
                for group in groups.values():
                    self._add_or_fail(group, batch)

    def _add(self, rows: list[int], batch: Mapping[str, np.ndarray]) -> None:
        """Add ``rows`` of ``batch`` in one transaction and report them added."""
        indices = [int(batch["index"][row]) for row in rows]
        identities = [self._items[index][0] for index in indices]
        sources = [self._items[index][1] for index in indices]
        digests = [str(batch["digest"][row]) for row in rows]
        boxes = [_box(batch["box"][row]) for row in rows]
        scores = [_score(batch["score"][row]) for row in rows]
        self._gallery.add_many(
            identities,
            batch["embedding"][rows],
            embedder=self._binding,
            sources=sources,
            content_sha256=digests,
            boxes=boxes,
            scores=scores,
        )
        self._written.update(digests)
        for row, index, box, score in zip(rows, indices, boxes, scores, strict=True):
            identity, source = self._items[index]
            faces = int(batch["faces"][row])
            self._added.append((index, EnrolledFace(identity, source, box, score, faces)))

    def _add_or_fail(self, rows: list[int], batch: Mapping[str, np.ndarray]) -> None:
        """`_add`, or every row reported failed with the gallery's reason."""
        try:
            self._add(rows, batch)
        except GalleryError as exc:
            for row in rows:
                index = int(batch["index"][row])
                identity, source = self._items[index]
                self._failed.append((index, _problem(source, identity, exc)))

    def report(self) -> EnrollReport:
        """Everything written so far, each list in input order."""
        return EnrollReport(_ordered(self._added), _ordered(self._skipped), _ordered(self._failed))


def _ordered(entries: list[tuple[int, _T]]) -> tuple[_T, ...]:
    return tuple(entry for _, entry in sorted(entries, key=lambda pair: pair[0]))


class _FacesActor:
    """One actor of `identify`'s pool: per file, its faces as `FaceRecognizer.identify`
    finds them (largest first, the second pass for image-filling faces when none is found),
    as a ``faces`` (B,) bytes column: the pickled list of ``(Detection, (D,) embedding)``,
    or the pickled `FacekitError` of that file."""

    def __init__(self, recognizer_kwargs: dict[str, Any]) -> None:
        self._recognizer = FaceRecognizer(**recognizer_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [os.fsdecode(bytes(path)) for path in batch["path"]]
        engine = self._recognizer.pipeline(batch_size=len(paths))
        found: list[bytes] = []
        for result in engine.run(paths, fill=True):
            if isinstance(result, FacekitError):
                found.append(pickle.dumps(result))
                continue
            faces = sorted(result.faces, key=lambda face: -face.detection.area)
            found.append(pickle.dumps([(face.detection, face.embedding) for face in faces]))
        return {
            "index": np.asarray(batch["index"], np.int64),
            "faces": np.asarray(found, dtype=object),
        }


def _match(
    batch: Mapping[str, np.ndarray],
    gallery: Gallery,
    found: list[list[FaceMatch] | FacekitError],
    top_k: int,
    threshold: float,
    aggregate: Aggregate,
) -> None:
    """Search the faces of a batch of `_FacesActor` results in one gallery search and put
    each file's matches (or error) at its index in ``found``."""
    # the pickles come from this run's own workers
    outcomes = [
        (int(i), pickle.loads(bytes(blob)))
        for i, blob in zip(batch["index"], batch["faces"], strict=True)
    ]
    faces = [face for _, outcome in outcomes if isinstance(outcome, list) for face in outcome]
    matches = iter(
        gallery.search(
            np.stack([embedding for _, embedding in faces]),
            threshold=threshold,
            top_k=top_k,
            aggregate=aggregate,
        )
        if faces
        else []
    )
    for index, outcome in outcomes:
        if isinstance(outcome, FacekitError):
            found[index] = outcome
            continue
        found[index] = [
            FaceMatch(detection, m.identity, m.similarity, m.margin, m.candidates, threshold)
            for (detection, _), m in zip(
                outcome, itertools.islice(matches, len(outcome)), strict=True
            )
        ]


def _box(values: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def _score(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
