"""Deterministic sections and stratified folds (monaifrac.data.splits, prepare.build_datalist)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from monaifrac.data.cases import Case
from monaifrac.data.prepare import build_datalist
from monaifrac.data.splits import NO_FOLD, _apportion, assign_folds, assign_sections, stable_hash


def make_cases(n_train=20, n_valid=5, n_test=5, n_non=60, n_unlisted_fractured=0) -> dict[str, Case]:
    """Fractured films with an official split (F...), fractured films in no list (U...) and
    non-fractured films (N...), with body parts alternating hand/leg."""
    cases = {}
    k = 0
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        for _ in range(n):
            cases[f"F{k:04d}"] = Case(id=f"F{k:04d}", image=Path("x"), fractured=True, official_split=split,
                                      body_part=("hand", "leg")[k % 2])
            k += 1
    for j in range(n_unlisted_fractured):
        cases[f"U{j:04d}"] = Case(id=f"U{j:04d}", image=Path("x"), fractured=True, body_part="hip")
    for j in range(n_non):
        cases[f"N{j:04d}"] = Case(id=f"N{j:04d}", image=Path("x"), fractured=False,
                                  body_part=("hand", "leg", "hip")[j % 3])
    return cases


def sections_of(datalist) -> dict[str, str]:
    return {item["id"]: s for s, items in datalist.items() for item in items}


_HASHES_AND_SECTIONS = """
import json, sys
from monaifrac.data.splits import assign_sections, stable_hash
official = {f"F{i}": ("train", "valid", "test")[i % 3] for i in range(6)}
official.update({f"N{i}": None for i in range(40)})
print(json.dumps({"hashes": [stable_hash(0, "IMG1"), stable_hash(1, "IMG1"), stable_hash(7, "IMG0000003")],
                  "sections": assign_sections(official, seed=3)}))
"""


def test_stable_hash_is_fixed_across_runs():
    """Two Python processes with different string-hash salts place every film alike; the hash is a value
    fixed once (computed when the splits were made), not whatever Python's salted hash() gives."""
    import json
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[2])
    runs = [json.loads(subprocess.run([sys.executable, "-c", _HASHES_AND_SECTIONS], capture_output=True, text=True,
                                      check=True, env={**os.environ, "PYTHONHASHSEED": salt, "PYTHONPATH": root}
                                      ).stdout) for salt in ("1", "2")]
    assert runs[0] == runs[1]
    assert runs[0]["hashes"] == [3078130060657523734, 12618097329116177784, 3049089754118750391]
    assert stable_hash(0, "IMG1") == 3078130060657523734  # and in this process too
    assert set(runs[0]["sections"].values()) == {"training", "validation", "test"}


@pytest.mark.parametrize(
    "n, proportions, expected",
    [
        (20, {"a": 6, "b": 2, "c": 2}, {"a": 12, "b": 4, "c": 4}),  # 20 * 6/10, 20 * 2/10, 20 * 2/10
        (7, {"a": 1, "b": 1}, {"a": 4, "b": 3}),  # 3.5 each; the tie goes to the first
        (10, {"a": 0.7, "b": 0.15, "c": 0.15}, {"a": 7, "b": 2, "c": 1}),  # 7, 1.5, 1.5 → one extra
        (0, {"a": 1, "b": 3}, {"a": 0, "b": 0}),
    ],
)
def test_apportion_by_largest_remainder(n, proportions, expected):
    counts = _apportion(n, proportions)
    assert counts == expected
    assert sum(counts.values()) == n


def test_official_splits_are_kept_and_the_rest_follows_their_proportions():
    # Official: 20 train, 5 valid, 5 test (4 : 1 : 1). 60 non-fractured films → 40 / 10 / 10.
    cases = make_cases()
    datalist = build_datalist(cases, folds=5, seed=0)
    section = sections_of(datalist)
    assert len(section) == 90
    for i, c in cases.items():
        if c.official_split:
            assert section[i] == {"train": "training", "valid": "validation", "test": "test"}[c.official_split]
    non = Counter(section[i] for i, c in cases.items() if not c.fractured)
    assert non == {"training": 40, "validation": 10, "test": 10}
    assert {s: len(v) for s, v in datalist.items()} == {"training": 60, "validation": 15, "test": 15}


def test_fractured_films_in_no_list_are_placed_too():
    # 20/5/5 official; 6 unlisted fractured + 24 non-fractured = 30 placed → 20 / 5 / 5.
    cases = make_cases(n_non=24, n_unlisted_fractured=6)
    section = assign_sections({i: c.official_split for i, c in cases.items()}, seed=3)
    placed = Counter(section[i] for i, c in cases.items() if not c.official_split)
    assert placed == {"training": 20, "validation": 5, "test": 5}


def test_default_proportions_without_any_official_split():
    # No official split (a Labelme folder): 70 / 15 / 15 % of 20 films = 14 / 3 / 3.
    section = assign_sections({f"L{i}": None for i in range(20)}, seed=0)
    assert Counter(section.values()) == {"training": 14, "validation": 3, "test": 3}


def test_same_seed_same_datalist_and_different_seed_moves_non_fractured():
    cases = make_cases()
    a = build_datalist(cases, folds=5, seed=0)
    b = build_datalist(make_cases(), folds=5, seed=0)
    assert a == b
    c = build_datalist(cases, folds=5, seed=1)
    sa, sc = sections_of(a), sections_of(c)
    # fractured films keep their official section whatever the seed ...
    assert all(sa[i] == sc[i] for i in cases if i.startswith("F"))
    # ... non-fractured are placed by the seed: some move, the counts stay 40/10/10.
    moved = [i for i in cases if i.startswith("N") and sa[i] != sc[i]]
    assert moved
    assert Counter(sc[i] for i in cases if i.startswith("N")) == {"training": 40, "validation": 10, "test": 10}


def test_adding_a_film_moves_few_others():
    # Placement is by hash order: one new non-fractured film shifts at most a boundary or two.
    base = {f"N{i:03d}": None for i in range(60)} | {f"F{i:03d}": "train" for i in range(4)} | \
        {"V": "valid", "T": "test"}
    before = assign_sections(base, seed=0)
    after = assign_sections(base | {"N999": None}, seed=0)
    moved = [i for i in before if before[i] != after[i]]
    assert len(moved) <= 2


def test_folds_are_stratified_and_only_training_has_folds():
    # Training: 20 fractured + 40 non-fractured; 5 folds → 4 fractured and 8 non-fractured each.
    datalist = build_datalist(make_cases(), folds=5, seed=0)
    training = datalist["training"]
    per_fold = Counter(item["fold"] for item in training)
    fractured = Counter(item["fold"] for item in training if item["fractured"])
    assert per_fold == {f: 12 for f in range(5)}
    assert fractured == {f: 4 for f in range(5)}
    for section in ("validation", "test"):
        assert all(item["fold"] == NO_FOLD == -1 for item in datalist[section])


def test_folds_uneven_counts_differ_by_at_most_one():
    # 20 fractured training films in 3 folds: 7 / 7 / 6; 40 non-fractured: 14 / 13 / 13; total 20 each.
    datalist = build_datalist(make_cases(), folds=3, seed=4)
    training = datalist["training"]
    fractured = Counter(item["fold"] for item in training if item["fractured"])
    non = Counter(item["fold"] for item in training if not item["fractured"])
    assert sorted(fractured.values()) == [6, 7, 7]
    assert sorted(non.values()) == [13, 13, 14]
    assert sorted(Counter(item["fold"] for item in training).values()) == [20, 20, 20]


def test_assign_folds_body_parts_are_spread():
    # 30 ids, one stratum, 10 per body part, 5 folds: ordered by body part then dealt
    # round-robin, so each fold gets exactly 2 of each body part.
    ids = [f"X{i:02d}" for i in range(30)]
    part = {i: ("hand", "leg", "hip")[n % 3] for n, i in enumerate(ids)}
    fold = assign_folds(ids, {i: "True" for i in ids}, part, k=5, seed=7)
    for f in range(5):
        assert Counter(part[i] for i in ids if fold[i] == f) == {"hand": 2, "leg": 2, "hip": 2}


def test_assign_folds_rejects_fewer_than_two():
    with pytest.raises(ValueError):
        assign_folds(["a", "b"], {"a": "x", "b": "x"}, {}, k=1, seed=0)


def test_datalist_items_and_relative_paths():
    datalist = build_datalist(make_cases(n_train=3, n_valid=1, n_test=1, n_non=5), folds=5, seed=0)
    for section, items in datalist.items():
        ids = [item["id"] for item in items]
        assert ids == sorted(ids)
        for item in items:
            assert item["image"] == f"images/{item['id']}.nii.gz"
            assert item["label"] == f"labels/{item['id']}.nii.gz"
            assert isinstance(item["fold"], int)
    # 2 training items for 5 folds: too few to stratify, they are numbered 0, 1 in id order
    small = build_datalist(make_cases(n_train=2, n_valid=1, n_test=1, n_non=0), folds=5, seed=0)
    assert [item["fold"] for item in small["training"]] == [0, 1]
