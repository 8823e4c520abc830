"""Verification pair lists: LFW's ``pairs.txt`` and simple CSV/TSV files.

LFW ``pairs.txt``: a header ``FOLDS N`` (``10 300``), then per fold N matched lines
``name i j`` and N mismatched lines ``name1 i name2 j``; images are
``ROOT/name/name_000i.jpg``. ``pairsDevTrain.txt``/``pairsDevTest.txt`` have a one-number
header and no folds. CSV/TSV: ``img_a,img_b,same[,fold]`` with paths relative to the root,
``same`` one of 1/0, true/false, yes/no, same/different; a header row is recognised and
skipped. Files without folds get 10 folds, assigned by a seeded shuffle within each class.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["Pair", "read_pairs"]

_TRUE = {"1", "true", "yes", "same", "y", "t"}
_FALSE = {"0", "false", "no", "different", "diff", "n", "f"}
_BOOLEAN = {"1", "0", "true", "false", "yes", "no", "y", "n", "t", "f"}  # never a header


@dataclass(frozen=True, slots=True)
class Pair:
    """Two images and whether they show the same person.

    Attributes:
        a: first image path.
        b: second image path.
        same: True for a same-person (matched) pair.
        fold: cross-validation fold.
    """

    a: Path
    b: Path
    same: bool
    fold: int


def read_pairs(
    path: str | os.PathLike[str], root: str | os.PathLike[str], *, folds: int = 10, seed: int = 0
) -> list[Pair]:
    """Read a pair list (format recognised from its content).

    Args:
        path: LFW ``pairs.txt`` or a CSV/TSV file.
        root: folder the image names are relative to.
        folds: folds to assign where the file has none.
        seed: seed of that assignment.

    Raises:
        ConfigError: unreadable, empty or malformed file (the message names the line).
    """
    source = Path(path)
    base = Path(root)
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read pairs file {source}: {exc}") from None
    rows = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not rows:
        raise ConfigError(f"pairs file {source} is empty")
    first = rows[0][1].split()
    if all(part.isdigit() for part in first) and len(first) in (1, 2) and "," not in rows[0][1]:
        pairs = _lfw(source, base, rows, first)
    else:
        pairs = _table(source, base, rows)
    if not pairs:
        raise ConfigError(f"pairs file {source} lists no pairs")
    if all(p.fold < 0 for p in pairs):
        pairs = _assign_folds(pairs, folds, seed)
    return pairs


def _lfw_image(base: Path, name: str, number: str) -> Path:
    return base / name / f"{name}_{int(number):04d}.jpg"


def _lfw(source: Path, base: Path, rows: list[tuple[int, str]], header: list[str]) -> list[Pair]:
    per_fold = 2 * int(header[1]) if len(header) == 2 else None
    pairs = []
    for index, (number, line) in enumerate(rows[1:]):
        parts = line.split()
        fold = index // per_fold if per_fold else -1
        if len(parts) in (3, 4) and not (parts[1].isdigit() and parts[-1].isdigit()):
            raise ConfigError(f"{source}:{number}: image numbers must be integers: {line!r}")
        if len(parts) == 3:
            name, i, j = parts
            pairs.append(Pair(_lfw_image(base, name, i), _lfw_image(base, name, j), True, fold))
        elif len(parts) == 4:
            name_a, i, name_b, j = parts
            pairs.append(
                Pair(_lfw_image(base, name_a, i), _lfw_image(base, name_b, j), False, fold)
            )
        else:
            raise ConfigError(
                f"{source}:{number}: expected 'name i j' or 'name1 i name2 j', got {line!r}"
            )
    return pairs


def _table(source: Path, base: Path, rows: list[tuple[int, str]]) -> list[Pair]:
    delimiter = "\t" if "\t" in rows[0][1] else ","
    pairs = []
    for number, line in rows:
        cells = [c.strip() for c in next(csv.reader([line], delimiter=delimiter))]
        if len(cells) not in (3, 4):
            raise ConfigError(f"{source}:{number}: expected img_a,img_b,same[,fold], got {line!r}")
        label = cells[2].lower()
        if number == rows[0][0] and label not in _BOOLEAN:
            continue  # a header row such as img_a,img_b,same
        if label not in _TRUE | _FALSE:
            raise ConfigError(
                f"{source}:{number}: 'same' must be 1/0, true/false, got {cells[2]!r}"
            )
        fold = -1
        if len(cells) == 4:
            if not cells[3].lstrip("-").isdigit():
                raise ConfigError(f"{source}:{number}: fold must be an integer, got {cells[3]!r}")
            fold = int(cells[3])
        pairs.append(Pair(base / cells[0], base / cells[1], label in _TRUE, fold))
    if any(p.fold < 0 for p in pairs) and any(p.fold >= 0 for p in pairs):
        raise ConfigError(f"{source}: either every row has a fold or none does")
    return pairs


def _assign_folds(pairs: list[Pair], folds: int, seed: int) -> list[Pair]:
    """Deal each class's pairs, shuffled, round-robin into ``folds`` folds."""
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    rng = np.random.default_rng(seed)
    assigned = list(pairs)
    for label in (True, False):
        members = [i for i, p in enumerate(pairs) if p.same is label]
        for position, index in enumerate(rng.permutation(members)):
            old = pairs[index]
            assigned[index] = Pair(old.a, old.b, old.same, position % folds)
    return assigned
