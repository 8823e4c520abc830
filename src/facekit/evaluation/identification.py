"""Identification on a folder-per-identity set: a seeded gallery/probe split, closed-set
rank-k and precision@k, and open-set identification with identities left out."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..gallery.index import ExactIndex
from ..sources import folder_sources
from .metrics import threshold_at_far
from .verification import Embeddings, embed_images

if TYPE_CHECKING:
    from ..recognizer import FaceRecognizer

__all__ = [
    "IdentificationReport",
    "Split",
    "evaluate_identification",
    "identification_metrics",
    "split_gallery",
]


@dataclass(frozen=True, slots=True)
class Split:
    """Which images enrol and which probe.

    Attributes:
        gallery: ``(identity, path)`` enrolled.
        probes: ``(identity, path)`` searched; ``mated`` says whether the identity is
            enrolled (open-set probes of left-out identities are not).
        mated: one bool per probe.
    """

    gallery: tuple[tuple[str, Path], ...]
    probes: tuple[tuple[str, Path], ...]
    mated: tuple[bool, ...]


def split_gallery(
    items: list[tuple[str, Path]], *, probe_every: int = 5, unknown: float = 0.0, seed: int = 0
) -> Split:
    """Split ``(identity, path)`` items: per identity with at least two images, one in
    every ``probe_every`` (at least one, chosen by a seeded shuffle) probes and the rest
    enrol; identities with one image only enrol. A seeded ``unknown`` share of the
    identities with two or more images is left out of the gallery entirely: all their
    images probe, unmated (open set).
    """
    if probe_every < 2:
        raise ConfigError(f"probe_every must be at least 2, got {probe_every}")
    if not 0.0 <= unknown < 1.0:
        raise ConfigError(f"unknown must be in [0, 1), got {unknown}")
    rng = np.random.default_rng(seed)
    by_identity: dict[str, list[Path]] = {}
    for identity, path in items:
        by_identity.setdefault(identity, []).append(path)
    several = sorted(name for name, paths in by_identity.items() if len(paths) > 1)
    left_out = set(rng.permutation(several)[: round(unknown * len(several))].tolist())
    gallery: list[tuple[str, Path]] = []
    probes: list[tuple[str, Path]] = []
    mated: list[bool] = []
    for identity in sorted(by_identity):
        paths = sorted(by_identity[identity])
        if identity in left_out:
            probes.extend((identity, p) for p in paths)
            mated.extend([False] * len(paths))
            continue
        if len(paths) == 1:
            gallery.append((identity, paths[0]))
            continue
        order = rng.permutation(len(paths))
        count = max(1, len(paths) // probe_every)
        chosen = set(order[:count].tolist())
        for index, path in enumerate(paths):
            if index in chosen:
                probes.append((identity, path))
                mated.append(True)
            else:
                gallery.append((identity, path))
    return Split(tuple(gallery), tuple(probes), tuple(mated))


@dataclass(frozen=True, slots=True, eq=False)
class IdentificationReport:
    """Results of `evaluate_identification`.

    Attributes:
        identities: enrolled identities.
        gallery_images: images enrolled (embedded).
        mated_probes: probes of enrolled identities that were embedded.
        unmated_probes: probes of left-out identities that were embedded.
        failed: images without an embedding, ``(path, reason)``.
        rank: rank-k accuracy over mated probes: share whose identity is among the k
            best-scoring identities (an identity scores its best sample).
        precision_at: precision@k: share of the k nearest gallery images that show the
            probe's identity, averaged over mated probes.
        open_set: FPIR → ``(threshold, DIR)``: the threshold at which at most that share of
            unmated probes score any identity at or above it, and the detection-and-
            identification rate (mated probes identified correctly at rank 1 and at or
            above it). ``None`` where there are too few unmated probes.
    """

    identities: int
    gallery_images: int
    mated_probes: int
    unmated_probes: int
    failed: tuple[tuple[Path, str], ...]
    rank: dict[int, float]
    precision_at: dict[int, float]
    open_set: dict[float, tuple[float, float] | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "identities": self.identities,
            "gallery_images": self.gallery_images,
            "mated_probes": self.mated_probes,
            "unmated_probes": self.unmated_probes,
            "failed": [{"image": str(p), "reason": r} for p, r in self.failed],
            "rank": {str(k): v for k, v in self.rank.items()},
            "precision_at": {str(k): v for k, v in self.precision_at.items()},
            "open_set": {
                f"{fpir:g}": None if v is None else {"threshold": v[0], "dir": v[1]}
                for fpir, v in self.open_set.items()
            },
        }

    def markdown(self) -> str:
        """A short human-readable report."""
        lines = [
            "# Identification",
            "",
            f"- gallery: {self.identities} identities, {self.gallery_images} images",
            f"- probes: {self.mated_probes} mated, {self.unmated_probes} unmated; "
            f"{len(self.failed)} images failed",
        ]
        lines += [f"- rank-{k}: {v:.4f}" for k, v in self.rank.items()]
        lines += [f"- precision@{k}: {v:.4f}" for k, v in self.precision_at.items()]
        for fpir, value in self.open_set.items():
            lines.append(
                f"- DIR at FPIR {fpir:g}: "
                + (
                    "too few unmated probes"
                    if value is None
                    else f"{value[1]:.4f} (threshold {value[0]:.4f})"
                )
            )
        lines += [f"- failed: {p}: {r}" for p, r in self.failed]
        return "\n".join(lines) + "\n"


def identification_metrics(
    gallery: np.ndarray,
    owners: np.ndarray,
    mated: np.ndarray,
    truth: np.ndarray,
    unmated: np.ndarray,
    *,
    ranks: tuple[int, ...] = (1, 5),
    fpirs: tuple[float, ...] = (1e-1, 1e-2),
) -> tuple[dict[int, float], dict[int, float], dict[float, tuple[float, float] | None]]:
    """Rank-k, precision@k and open-set DIR at FPIR from embeddings.

    Args:
        gallery: ``(G, D)`` unit vectors, grouped by identity.
        owners: ``(G,)`` identity index of each, non-decreasing.
        mated: ``(M, D)`` probes of enrolled identities; ``truth`` ``(M,)`` their identity.
        unmated: ``(U, D)`` probes of identities not enrolled (``U`` may be 0).

    Returns:
        ``(rank, precision_at, open_set)`` as in `IdentificationReport`.
    """
    index = ExactIndex(gallery, owners, int(owners.max()) + 1)
    found = index.search(mated, top_k=max(ranks))
    rank = {
        k: float(np.mean((found.identities[:, :k] == truth[:, None]).any(axis=1))) for k in ranks
    }
    similarities = mated @ gallery.T  # probes x gallery images
    precision_at = {}
    for k in ranks:
        count = min(k, gallery.shape[0])
        nearest = np.argpartition(-similarities, count - 1, axis=1)[:, :count]
        precision_at[k] = float(np.mean(owners[nearest] == truth[:, None]))
    open_set: dict[float, tuple[float, float] | None] = {}
    if unmated.shape[0]:
        unmated_best = index.search(unmated).similarities[:, 0]
        for fpir in fpirs:
            if fpir * unmated.shape[0] < 1:
                open_set[fpir] = None
                continue
            threshold = threshold_at_far(unmated_best, fpir)
            hits = (found.identities[:, 0] == truth) & (found.similarities[:, 0] >= threshold)
            open_set[fpir] = (threshold, float(hits.mean()))
    return rank, precision_at, open_set


def evaluate_identification(
    fr: FaceRecognizer,
    root: str | os.PathLike[str],
    *,
    probe_every: int = 5,
    unknown: float = 0.0,
    ranks: tuple[int, ...] = (1, 5),
    fpirs: tuple[float, ...] = (1e-1, 1e-2),
    seed: int = 0,
    batch_size: int = 16,
    progress: bool = True,
) -> tuple[IdentificationReport, Embeddings, Split]:
    """Split ``root`` (folder per identity), embed every image once, and measure.

    Raises:
        ConfigError: nothing to enrol or no mated probe.
    """
    split = split_gallery(folder_sources(root), probe_every=probe_every, unknown=unknown, seed=seed)
    paths = [p for _, p in split.gallery] + [p for _, p in split.probes]
    embeddings = embed_images(fr, paths, batch_size=batch_size, progress=progress)
    rows = {path: index for index, path in enumerate(embeddings.paths)}
    failed = embeddings.failures
    gallery = sorted((identity, path) for identity, path in split.gallery if path not in failed)
    if not gallery:
        raise ConfigError("no gallery image could be embedded")
    names = sorted({identity for identity, _ in gallery})
    owner_of = {name: index for index, name in enumerate(names)}
    owners = np.array([owner_of[identity] for identity, _ in gallery])
    vectors = embeddings.vectors[[rows[p] for _, p in gallery]]
    probes = [
        (i, p, m) for (i, p), m in zip(split.probes, split.mated, strict=True) if p not in failed
    ]
    mated = [(i, p) for i, p, m in probes if m]
    unmated = [p for _, p, m in probes if not m]
    if not mated:
        raise ConfigError("no mated probe could be embedded")
    mated_vectors = embeddings.vectors[[rows[p] for _, p in mated]]
    truth = np.array([owner_of[i] for i, _ in mated])
    unmated_vectors = embeddings.vectors[[rows[p] for p in unmated]].reshape(-1, vectors.shape[1])
    rank, precision_at, open_set = identification_metrics(
        vectors, owners, mated_vectors, truth, unmated_vectors, ranks=ranks, fpirs=fpirs
    )
    report = IdentificationReport(
        identities=len(names),
        gallery_images=len(gallery),
        mated_probes=len(mated),
        unmated_probes=len(unmated),
        failed=tuple(embeddings.failures.items()),
        rank=rank,
        precision_at=precision_at,
        open_set=open_set,
    )
    return report, embeddings, split
