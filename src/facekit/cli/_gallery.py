"""``facekit gallery list|info|remove|rename|migrate``."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from ._common import command, existing_gallery, print_json

if TYPE_CHECKING:
    from ..gallery import Gallery
    from ..gallery.protocols import GalleryStore
    from ..gallery.store import SampleRecord, Snapshot

_LOCATION = "gallery file, or milvus-lite:///abs/path/faces.db, or milvus://host:19530/collection"
_BATCH_ROWS = 1000  # samples per Gallery.add_many while migrating


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gallery = command(commands, "gallery", "inspect, edit or copy a gallery")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "identities and sample counts"), ("info", "binding and size")):
        action = command(actions, name, text)
        action.add_argument("gallery", help=_LOCATION)
        action.add_argument("--json", action="store_true", help="print JSON instead of text")
    remove = command(actions, "remove", "remove an identity and its samples")
    remove.add_argument("gallery", help=_LOCATION)
    remove.add_argument("identity")
    rename = command(actions, "rename", "rename an identity")
    rename.add_argument("gallery", help=_LOCATION)
    rename.add_argument("old")
    rename.add_argument("new")
    migrate = command(
        actions,
        "migrate",
        "copy every identity and sample to another gallery (SQLite, Milvus Lite, Milvus)",
        description=(
            "Copy every identity and sample of SRC, with its metadata and the binding, into "
            "DST (created if missing; one already bound to another embedder is refused). "
            "Samples DST already holds (same content hash) are skipped, so an interrupted "
            "migration is resumed by running it again. Counts are checked at the end."
        ),
    )
    migrate.add_argument("source", metavar="SRC", help=_LOCATION)
    migrate.add_argument("target", metavar="DST", help=_LOCATION)
    gallery.set_defaults(run=run)


def _existing(location: str) -> str:
    """A URI as it is (its store says when it is missing), a path only if it is a file."""
    return location if "://" in location else existing_gallery(location)


def run(args: argparse.Namespace) -> int:
    from ..gallery import Gallery

    if args.action == "migrate":
        copied, already, identities = migrate(args.source, args.target)
        print(
            f"migrated {copied} samples of {identities} identities from {args.source} to "
            f"{args.target} ({already} were there already)"
        )
        return 0
    with Gallery(_existing(args.gallery), create=False) as gallery:
        if args.action == "list":
            counts = gallery.counts()
            if args.json:
                print_json(counts)
            else:
                for name, count in counts.items():
                    print(f"{name}\t{count}")
        elif args.action == "info":
            info = {
                "path": str(gallery.path) if gallery.path is not None else args.gallery,
                "identities": len(gallery),
                "samples": gallery.num_samples,
                "embedder": json.loads(gallery.embedder.to_json()) if gallery.embedder else None,
            }
            if args.json:
                print_json(info)
            else:
                for key, value in info.items():
                    print(f"{key}: {value}")
        elif args.action == "remove":
            removed = gallery.remove(args.identity)
            print(f"removed {args.identity} ({removed} samples)")
        else:
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} -> {args.new}")
    return 0


def migrate(source: str, target: str) -> tuple[int, int, int]:
    """Copy every sample of ``source`` into ``target`` (created when missing, bound to the
    source's embedder), skipping what ``target`` holds already: samples with a content hash
    by that hash; samples without one by the number of such samples the identity has there
    (they are copied oldest first, so a resumed run continues where it stopped).

    Returns:
        ``(copied, already there, identities)``.

    Raises:
        GalleryError: a missing or unbound source, the same location twice, a target bound
            to another embedder, or counts that do not add up at the end.
    """
    from ..errors import GalleryError
    from ..gallery import Gallery
    from ..gallery.backends import open_store

    if source == target:
        raise GalleryError(f"{source}: source and destination are the same gallery")
    store = open_store(_existing(source), create=False)
    try:
        info = store.embedder()
        if info is None:
            raise GalleryError(f"{source}: the gallery is empty (bound to no embedder)")
        snapshot = store.load(info.dim)
        with Gallery(target, embedder=info) as gallery:
            before = gallery.counts()
            copied, planned = _copy(store, snapshot, gallery, before)
            after = gallery.counts()
        wrong = [
            f"{name}: {after.get(name, 0)} samples, expected {before.get(name, 0) + added}"
            for name, added in planned.items()
            if after.get(name, 0) != before.get(name, 0) + added
        ]
        wrong += [
            f"{name}: {after.get(name, 0)} samples, the source has {count}"
            for name, count in store.identities()
            if after.get(name, 0) < count
        ]
        if wrong:
            raise GalleryError(
                f"migrating {source} to {target}: counts do not match ({'; '.join(wrong[:5])}"
                f"{'; ...' if len(wrong) > 5 else ''})"
            )
    finally:
        store.close()
    return copied, int(snapshot.owners.size) - copied, len(snapshot.names)


def _copy(
    store: GalleryStore, snapshot: Snapshot, gallery: Gallery, before: dict[str, int]
) -> tuple[int, Counter[str]]:
    """Add what ``gallery`` lacks of each identity of ``snapshot``, about `_BATCH_ROWS`
    samples at a time (one content-hash lookup and one `Gallery.add_many` per batch);
    returns how many samples were added and how many were planned per identity."""
    from ..errors import GalleryError

    names = snapshot.names
    starts = np.searchsorted(snapshot.owners, np.arange(len(names) + 1))
    planned: Counter[str] = Counter()
    pending: list[tuple[str, np.ndarray, list[SampleRecord]]] = []
    copied = waiting = 0
    for number, name in enumerate(names):
        vectors = snapshot.embeddings[starts[number] : starts[number + 1]]
        records = store.samples(name)
        if len(records) != len(vectors):
            raise GalleryError(f"{store.where}: {name!r} changed while it was being copied")
        pending.append((name, vectors, records))
        waiting += len(records)
        if waiting >= _BATCH_ROWS:
            copied += _copy_batch(gallery, pending, before, planned)
            pending.clear()
            waiting = 0
    copied += _copy_batch(gallery, pending, before, planned)
    return copied, planned


def _copy_batch(
    gallery: Gallery,
    pending: list[tuple[str, np.ndarray, list[SampleRecord]]],
    before: dict[str, int],
    planned: Counter[str],
) -> int:
    """Add the samples of ``pending`` identities that ``gallery`` lacks; counts them into
    ``planned``."""
    if not pending:
        return 0
    hashes = [r.content_sha256 for _, _, rs in pending for r in rs if r.content_sha256]
    present = gallery.known_content(hashes) if hashes else set()
    rows: list[tuple[str, np.ndarray, SampleRecord]] = []
    for name, vectors, records in pending:
        there = sum(r.content_sha256 in present for r in records if r.content_sha256)
        unhashed_there = max(0, before.get(name, 0) - there)
        for vector, record in zip(vectors, records, strict=True):
            if record.content_sha256 is not None:
                if record.content_sha256 in present:
                    continue
            elif unhashed_there:
                unhashed_there -= 1
                continue
            rows.append((name, vector, record))
            planned[name] += 1
    if not rows:
        return 0
    records = [record for _, _, record in rows]
    return gallery.add_many(
        [name for name, _, _ in rows],
        np.stack([vector for _, vector, _ in rows]),
        sources=[r.source for r in records],
        content_sha256=[r.content_sha256 for r in records],
        boxes=[r.box for r in records],
        scores=[r.score for r in records],
    )
