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
import logging
import os
import pickle
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .embedders._common import require_thresholds
from .errors import ConfigError, FacekitError, GalleryError
from .gallery import Aggregate, EmbedderInfo, Gallery
from .gallery.backends import IndexName
from .io import describe
from .recognizer import EnrollWriter, FaceRecognizer, enrolled_contents, identify_faces
from .sources import folder_sources
from .types import EnrollReport, FaceMatch

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["enroll", "identify"]

_WRITE_BATCH = 256
"""Per-file results the driver handles at a time: one gallery transaction (`enroll`) or
one gallery search (`identify`)."""
_CPU_PER_ACTOR = 0.5
"""Logical CPUs reserved per actor on a cluster without GPUs: fractional, so that actors
never hold every CPU (Ray Data's own tasks would then wait for ever)."""
_PROGRESS_LOGGERS = {
    "ray.data._internal.progress": logging.ERROR,
    "ray.data._internal.execution.streaming_executor": logging.WARNING,
}
"""Ray Data's loggers of progress, and the level they are set to while facekit runs a
dataset without ``progress``: the warning that bars are off (facekit turned them off) and
the INFO lines at each run's start and end are left out."""
_FACTS_TIMEOUT_S = 600.0
"""How long the driver waits for a worker to build the recogniser and report its embedder."""


def enroll(
    source: str | os.PathLike[str] | Iterable[tuple[str, str | os.PathLike[str]]],
    *,
    gallery: str | os.PathLike[str] | Gallery,
    address: str | None = None,
    actors: int | None = None,
    batch_size: int = 32,
    face: Literal["largest", "best", "error"] = "largest",
    index: IndexName = "auto",
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
        index: how a gallery given by location is opened (`Gallery`'s ``index``): a faiss
            index (``"hnsw"``, ``"ivf"``) grows with the new samples and is saved beside
            the gallery file, ready for the next search.
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
        plan = _Plan.of(ray, actors, recognizer_kwargs)
        binding, _ = _embedder_facts(ray, plan)
        location = _open(gallery, binding, create=True, index=index)
        try:
            return _enroll(ray, items, location, plan, binding, face, batch_size, progress)
        finally:
            if location is not gallery:
                location.close()


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
    index: IndexName = "auto",
    progress: bool = True,
    **recognizer_kwargs: Any,
) -> list[list[FaceMatch] | FacekitError]:
    """`FaceRecognizer.identify` of many image files on a Ray cluster: actors detect and
    embed every face, this process searches the gallery (a batch of faces per search).

    Args:
        images: image files every node can read.
        gallery: an existing gallery location or an open `Gallery`.
        address, actors, batch_size, index, progress, recognizer_kwargs: as for `enroll`.
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
        searched = _open(gallery, binding, create=False, index=index)
        try:
            found: list[list[FaceMatch] | FacekitError] = []
            for batch in _results(ray, items, plan, _FacesActor, {}, batch_size, progress):
                found.extend(_match(batch, searched, top_k, limit, aggregate))
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
    gallery: Gallery,
    plan: _Plan,
    binding: EmbedderInfo,
    face: str,
    batch_size: int,
    progress: bool,
) -> EnrollReport:
    """The actors' `FaceRecognizer.enrollables` of every file, written by one
    `EnrollWriter` here, a batch per transaction, in input order."""
    options = {"known": enrolled_contents(gallery), "face": face}
    writer = EnrollWriter(gallery, binding)
    for batch in _results(ray, items, plan, _EnrollActor, options, batch_size, progress):
        writer.write([pickle.loads(bytes(blob)) for blob in batch["outcome"]])
    return writer.report()


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
    location: str | os.PathLike[str] | Gallery,
    binding: EmbedderInfo,
    *,
    create: bool,
    index: IndexName,
) -> Gallery:
    """The gallery at ``location``, bound to ``binding`` (created when new and ``create``)."""
    if not isinstance(location, Gallery):
        return Gallery(location, embedder=binding, create=create, index=index)
    if location.embedder is not None and location.embedder.differences(binding):
        raise GalleryError(
            "the gallery was made by another embedder "
            f"({'; '.join(location.embedder.differences(binding))})"
        )
    return location


def _results(
    ray: ModuleType,
    items: list[tuple[str, str]],
    plan: _Plan,
    actor: type,
    options: dict[str, Any],
    batch_size: int,
    progress: bool,
) -> Iterator[Mapping[str, np.ndarray]]:
    """``actor``'s per-file results in input order, `_WRITE_BATCH` files at a time: each
    actor of the pool is built as ``actor(recognizer_kwargs, **options)`` and called with
    batches of ``identity`` and ``path`` (B,) bytes columns (text as UTF-8 with undecodable
    file-name bytes kept, which Arrow strings could not hold). Without ``progress``, Ray
    Data neither shows bars nor logs the run's start and end (nor that bars are off)."""
    rows = [{"identity": _bytes(identity), "path": _bytes(path)} for identity, path in items]
    dataset = ray.data.from_items(rows)
    context = dataset.context
    context.execution_options.preserve_order = True
    context.enable_progress_bars = progress
    context.print_on_execution_start = progress
    mapped = dataset.map_batches(
        actor,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=min(plan.actors, len(items))),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
        fn_constructor_kwargs={"recognizer_kwargs": dict(plan.recognizer_kwargs), **options},
    )
    with _quiet(_PROGRESS_LOGGERS if not progress else {}):
        yield from mapped.iter_batches(batch_size=_WRITE_BATCH, batch_format="numpy")


@contextlib.contextmanager
def _quiet(levels: Mapping[str, int]) -> Iterator[None]:
    """The loggers named in ``levels`` set to those levels meanwhile."""
    loggers = {logging.getLogger(name): level for name, level in levels.items()}
    before = {logger: logger.level for logger in loggers}
    for logger, level in loggers.items():
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, level in before.items():
            logger.setLevel(level)


class _EnrollActor:
    """One actor of `enroll`'s pool: a recogniser built once, then per batch of files their
    `FaceRecognizer.enrollables` (errors are data, never raised), as an ``outcome`` (B,)
    bytes column: each the pickled `Enrollable` or `EnrollProblem`."""

    def __init__(self, recognizer_kwargs: dict[str, Any], known: frozenset[str], face: str) -> None:
        self._recognizer = FaceRecognizer(**recognizer_kwargs)
        self._known = known
        self._face: Any = face

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = list(zip(_texts(batch["identity"]), _texts(batch["path"]), strict=True))
        outcomes = self._recognizer.enrollables(
            items, face=self._face, known=self._known, batch_size=len(items)
        )
        return {"outcome": np.asarray([pickle.dumps(o) for o in outcomes], dtype=object)}


class _FacesActor:
    """One actor of `identify`'s pool: per file its `FaceRecognizer.faces_to_identify`, as
    a ``faces`` (B,) bytes column: the pickled list of ``(Detection, (D,) embedding)``,
    largest face first, or the pickled `FacekitError` of that file."""

    def __init__(self, recognizer_kwargs: dict[str, Any]) -> None:
        self._recognizer = FaceRecognizer(**recognizer_kwargs)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = _texts(batch["path"])
        found = [
            pickle.dumps(
                faces
                if isinstance(faces, FacekitError)
                else [(face.detection, face.embedding) for face in faces]
            )
            for faces in self._recognizer.faces_to_identify(paths, batch_size=len(paths))
        ]
        return {"faces": np.asarray(found, dtype=object)}


def _match(
    batch: Mapping[str, np.ndarray],
    gallery: Gallery,
    top_k: int,
    threshold: float,
    aggregate: Aggregate,
) -> list[list[FaceMatch] | FacekitError]:
    """Who the faces of a batch of `_FacesActor` results are, in one gallery search: per
    file its matches, or its error."""
    # the pickles come from this run's own workers
    outcomes = [pickle.loads(bytes(blob)) for blob in batch["faces"]]
    faces = [face for outcome in outcomes if isinstance(outcome, list) for face in outcome]
    matches = iter(
        identify_faces(gallery, faces, threshold=threshold, top_k=top_k, aggregate=aggregate)
    )
    return [
        outcome if isinstance(outcome, FacekitError) else [next(matches) for _ in outcome]
        for outcome in outcomes
    ]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _texts(column: np.ndarray) -> list[str]:
    return [bytes(value).decode("utf-8", "surrogateescape") for value in column]
