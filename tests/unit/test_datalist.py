"""monaifrac.datalist.load_split on a hand-written datalist.json (the layout `monaifrac prepare` writes)."""

from __future__ import annotations

import json

import pytest

from monaifrac.datalist import load_split

# training: 6 fractured (F*) then 4 non-fractured (N*), spread over folds 0-2
TRAINING = [("F1", True, 0), ("F2", True, 1), ("F3", True, 2), ("F4", True, 0), ("F5", True, 1), ("F6", True, 2),
            ("N1", False, 0), ("N2", False, 1), ("N3", False, 2), ("N4", False, 0)]
VALIDATION = [("V1", True, -1), ("V2", False, -1)]
TEST = [("T1", True, -1)]


def item(case_id: str, fractured: bool, fold: int) -> dict:
    return {"id": case_id, "image": f"images/{case_id}.nii.gz", "label": f"labels/{case_id}.nii.gz",
            "fractured": fractured, "fold": fold}


@pytest.fixture
def dataset(tmp_path):
    datalist = {"training": [item(*t) for t in TRAINING], "validation": [item(*t) for t in VALIDATION],
                "test": [item(*t) for t in TEST]}
    (tmp_path / "datalist.json").write_text(json.dumps(datalist))
    return tmp_path


def ids(items: list[dict]) -> list[str]:
    return [d["id"] for d in items]


def test_official_split(dataset):
    assert ids(load_split(dataset, "train")) == [t[0] for t in TRAINING]
    assert ids(load_split(dataset, "val")) == ["V1", "V2"]
    assert ids(load_split(dataset, "validation")) == ["V1", "V2"]
    assert ids(load_split(dataset, "test")) == ["T1"]


def test_paths_are_absolute_under_the_dataset(dataset):
    first = load_split(dataset, "val")[0]
    assert first["image"] == str(dataset / "images" / "V1.nii.gz")
    assert first["label"] == str(dataset / "labels" / "V1.nii.gz")
    assert first["fractured"] is True  # the other keys are kept


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_fold_partitions_the_training_section(dataset, fold):
    train, val = ids(load_split(dataset, "train", fold)), ids(load_split(dataset, "val", fold))
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(t[0] for t in TRAINING)
    assert val == [t[0] for t in TRAINING if t[2] == fold]
    # the datalist's validation and test sections are left untouched for a final test
    assert ids(load_split(dataset, "validation", fold)) == ["V1", "V2"]
    assert ids(load_split(dataset, "test", fold)) == ["T1"]


def test_fold_without_items_is_an_error(dataset):
    with pytest.raises(ValueError, match="fold 7 leaves no val items"):
        load_split(dataset, "val", 7)


def test_limit_interleaves_fractured_and_non_fractured(dataset):
    assert ids(load_split(dataset, "train", limit=4)) == ["F1", "N1", "F2", "N2"]
    assert ids(load_split(dataset, "train", limit=9)) == ["F1", "N1", "F2", "N2", "F3", "N3", "F4", "N4", "F5"]
    assert ids(load_split(dataset, "train", limit=1)) == ["F1"]
    assert len(load_split(dataset, "train", limit=100)) == len(TRAINING)
    assert ids(load_split(dataset, "train", limit=-1)) == [t[0] for t in TRAINING]  # -1: no limit, order kept
    assert load_split(dataset, "train", limit=0) == []
    assert ids(load_split(dataset, "val", 1, limit=2)) == ["F2", "N2"]


def test_empty_section_gives_no_items(tmp_path):
    (tmp_path / "datalist.json").write_text(json.dumps({"training": [item("F1", True, 0)], "validation": [],
                                                        "test": []}))
    assert load_split(tmp_path, "test") == []
    assert load_split(tmp_path, "val") == []


def test_missing_datalist_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_split(tmp_path / "not_prepared", "train")
    assert str(tmp_path / "not_prepared" / "datalist.json") in str(err.value)
    assert "monaifrac prepare" in str(err.value)


def test_unknown_part(dataset):
    with pytest.raises(ValueError, match="part must be one of"):
        load_split(dataset, "training")
