"""Deterministic train/validation/test split and cross-validation folds.

FracAtlas publishes an official split for its fractured films only. Those films keep it.
Every other film (non-fractured, or fractured but in no list) is placed by a hash of the
seed and its id, in the proportions of the official split, so the same seed always gives
the same datalist and adding a film never moves more than a few others.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable, Mapping, Sequence

DATALIST_SECTIONS = ("training", "validation", "test")
OFFICIAL_TO_SECTION = {"train": "training", "valid": "validation", "test": "test"}
# Used only when no film has an official split (a Labelme folder, say).
DEFAULT_PROPORTIONS = {"training": 0.7, "validation": 0.15, "test": 0.15}
NO_FOLD = -1  # fold of validation/test items: an int, so MONAI's collate handles it


def stable_hash(seed: int, key: str) -> int:
    """A hash of (seed, key) that is the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def _apportion(n: int, proportions: Mapping[str, float]) -> dict[str, int]:
    """Split n items into counts that follow ``proportions`` exactly (largest remainder)."""
    total = sum(proportions.values())
    raw = {k: n * v / total for k, v in proportions.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def assign_sections(official: Mapping[str, str | None], seed: int) -> dict[str, str]:
    """Datalist section of every id.

    Args:
        official: id → official split (``train``/``valid``/``test``) or None.
        seed: the seed of the hash that places ids without an official split.

    Returns:
        id → ``training`` / ``validation`` / ``test``.
    """
    section = {i: OFFICIAL_TO_SECTION[s] for i, s in official.items() if s}
    counts = defaultdict(int)
    for s in section.values():
        counts[s] += 1
    proportions = {s: counts[s] for s in DATALIST_SECTIONS} if section else DEFAULT_PROPORTIONS
    rest = sorted((i for i, s in official.items() if not s), key=lambda i: (stable_hash(seed, i), i))
    quota = _apportion(len(rest), proportions)
    start = 0
    for s in DATALIST_SECTIONS:
        for i in rest[start : start + quota[s]]:
            section[i] = s
        start += quota[s]
    return section


def assign_folds(ids: Iterable[str], strata: Mapping[str, str], secondary: Mapping[str, str], k: int,
                 seed: int) -> dict[str, int]:
    """Stratified k-fold index of every id.

    Ids are grouped by ``strata`` (fractured or not); within a group they are ordered by
    ``secondary`` (body part) and then by hash, and dealt round-robin, so each fold gets the
    same share of every stratum and nearly the same share of every body part.
    """
    if k < 2:
        raise ValueError(f"folds must be at least 2, got {k}")
    groups: dict[str, list[str]] = defaultdict(list)
    for i in ids:
        groups[strata[i]].append(i)
    fold: dict[str, int] = {}
    offset = 0
    for key in sorted(groups):
        members: Sequence[str] = sorted(groups[key], key=lambda i: (secondary.get(i, ""), stable_hash(seed, i), i))
        for pos, i in enumerate(members):
            fold[i] = (pos + offset) % k
        offset += len(members)  # the next stratum starts where this one stopped, so folds stay level
    return fold
