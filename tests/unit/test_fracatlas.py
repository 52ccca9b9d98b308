"""Reading the FracAtlas layout into cases (monaifrac.data.fracatlas), on the mini dataset of conftest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ALL_IDS, FILM_H, FILM_W, FRACTURE_BOXES, FRACTURED_IDS, SPLIT_REL, box_polygon
from monaifrac.data.cases import DataError
from monaifrac.data.fracatlas import default_fracatlas_dir, is_fracatlas_dir, read_fracatlas
from monaifrac.data.masks import FRACTURE


def test_reads_every_film_with_its_polygons_split_and_body_part(mini_atlas):
    cases, problems = read_fracatlas(mini_atlas.root)
    assert problems == []
    assert [c.id for c in cases] == ALL_IDS
    by_id = {c.id: c for c in cases}
    for i in FRACTURED_IDS:
        c = by_id[i]
        assert c.fractured
        # category id 0 is the fracture (not background), so the polygon is kept as drawn
        assert c.polygons == {FRACTURE: [box_polygon(*FRACTURE_BOXES[i])]}
        assert c.expected_size == (FILM_W, FILM_H)
        assert c.annotation_file == str(mini_atlas.coco)
        assert c.image == mini_atlas.image_path(i)
        assert not c.bone_annotated
        assert c.problems == []
    assert [by_id[i].official_split for i in FRACTURED_IDS] == ["train", "train", "valid", "test"]
    for i in ALL_IDS[4:]:
        assert not by_id[i].fractured and by_id[i].polygons == {} and by_id[i].official_split is None
    # conftest alternates hand / leg over ALL_IDS
    assert [by_id[i].body_part for i in ALL_IDS[:4]] == ["hand", "leg", "hand", "leg"]


def test_is_fracatlas_dir(mini_atlas, tmp_path):
    assert is_fracatlas_dir(mini_atlas.root)
    assert not is_fracatlas_dir(tmp_path / "nothing")


def test_default_dir_from_environment(mini_atlas, monkeypatch, tmp_path):
    monkeypatch.setenv("MONAIFRAC_FRACATLAS", str(mini_atlas.root))
    assert default_fracatlas_dir() == mini_atlas.root
    # an env var naming a folder that is not the layout is passed over (then ../shared or None)
    monkeypatch.setenv("MONAIFRAC_FRACATLAS", str(tmp_path / "empty"))
    found = default_fracatlas_dir()
    assert found is None or (found != tmp_path / "empty" and is_fracatlas_dir(found))


def test_two_categories_pick_the_one_named_fracture(mini_atlas):
    coco = json.loads(mini_atlas.coco.read_text())
    coco["categories"] = [{"id": 0, "name": "fractured"}, {"id": 1, "name": "hardware"}]
    coco["annotations"].append({"id": 99, "image_id": 1, "category_id": 1, "segmentation": [box_polygon(0, 0, 4, 4)]})
    mini_atlas.coco.write_text(json.dumps(coco))
    cases, problems = read_fracatlas(mini_atlas.root)
    assert len({c.id: c for c in cases}["IMG0000001"].polygons[FRACTURE]) == 1
    assert len(problems) == 1 and not problems[0].fatal and "category 1" in problems[0].message


def test_image_missing_from_csv_is_a_fatal_problem_of_that_case(atlas_factory):
    atlas = atlas_factory("not_in_csv")
    cases, problems = read_fracatlas(atlas.root)
    case = {c.id: c for c in cases}[atlas.bad_id]
    assert [p.fatal for p in case.problems] == [True]
    assert case.problems[0].file == str(atlas.root / "dataset.csv")
    assert "not listed in dataset.csv" in case.problems[0].message


def test_annotation_whose_image_is_missing(atlas_factory):
    atlas = atlas_factory("missing_image")
    cases, problems = read_fracatlas(atlas.root)
    assert atlas.bad_id not in {c.id for c in cases}
    fatal = [p for p in problems if p.fatal]
    assert len(fatal) == 1
    assert fatal[0].file == str(atlas.coco) and fatal[0].case_id == atlas.bad_id
    # its dataset.csv row now has no film either: a warning
    assert any(not p.fatal and p.case_id == atlas.bad_id and "no film" in p.message for p in problems)


def test_short_polygon_is_a_fatal_problem(atlas_factory):
    atlas = atlas_factory("short_polygon")
    cases, _ = read_fracatlas(atlas.root)
    case = {c.id: c for c in cases}[atlas.bad_id]
    fatal = [p for p in case.problems if p.fatal]
    assert len(fatal) == 1 and "at least 3 points" in fatal[0].message and fatal[0].file == str(atlas.coco)


@pytest.mark.parametrize("defect, words", [("empty_coco", "empty file"), ("malformed_coco", "malformed JSON")])
def test_empty_or_malformed_coco_is_fatal(atlas_factory, defect, words):
    atlas = atlas_factory(defect)
    with pytest.raises(DataError) as err:
        read_fracatlas(atlas.root)
    assert str(atlas.coco) in str(err.value) and words in str(err.value)


def test_coco_that_is_not_instance_format(mini_atlas):
    mini_atlas.coco.write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="not COCO instance format"):
        read_fracatlas(mini_atlas.root)


def test_missing_coco_with_fractured_films_is_fatal(mini_atlas):
    mini_atlas.coco.unlink()
    with pytest.raises(DataError, match="COCO_fracture_masks.json: not found"):
        read_fracatlas(mini_atlas.root)


def test_layout_errors(mini_atlas, tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        read_fracatlas(tmp_path / "absent")
    csv_path = mini_atlas.root / "dataset.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("fractured,", "broken,", 1))
    with pytest.raises(DataError, match="missing column\\(s\\) fractured"):
        read_fracatlas(mini_atlas.root)
    csv_path.write_text(text.replace("IMG0000001.jpg,1,", "IMG0000001.jpg,yes,", 1))  # hand = "yes"
    with pytest.raises(DataError, match="line 2: not a 0/1 flag"):
        read_fracatlas(mini_atlas.root)
    csv_path.unlink()
    with pytest.raises(DataError, match="dataset.csv: not found"):
        read_fracatlas(mini_atlas.root)


def test_film_listed_in_two_splits_keeps_the_first(mini_atlas):
    (mini_atlas.root / SPLIT_REL / "valid.csv").write_text("image_id\nIMG0000003.jpg\nIMG0000001.jpg\n")
    cases, problems = read_fracatlas(mini_atlas.root)
    assert {c.id: c for c in cases}["IMG0000001"].official_split == "train"
    assert any(p.case_id == "IMG0000001" and not p.fatal and "also listed in train.csv" in p.message
               for p in problems)


def test_fractured_flag_disagreeing_with_folder_is_a_warning(mini_atlas):
    # Like IMG0003298 in the full archive: in images/Fractured with a polygon, but fractured=0.
    csv_path = mini_atlas.root / "dataset.csv"
    lines = csv_path.read_text().splitlines()
    row = lines[1].split(",")  # IMG0000001
    assert row[0] == "IMG0000001.jpg"
    row[8] = "0"
    lines[1] = ",".join(row)
    csv_path.write_text("\n".join(lines) + "\n")
    cases, _ = read_fracatlas(mini_atlas.root)
    case = cases[0]
    assert case.fractured and case.polygons[FRACTURE]
    assert [p.fatal for p in case.problems] == [False]
    assert "fractured=0" in case.problems[0].message


def test_missing_split_files_leave_no_official_split(mini_atlas):
    for split in ("train", "valid", "test"):
        (mini_atlas.root / SPLIT_REL / f"{split}.csv").unlink()
    cases, problems = read_fracatlas(mini_atlas.root)
    assert all(c.official_split is None for c in cases)
    assert problems == []


def test_image_without_any_polygon_in_fractured_is_a_warning(mini_atlas):
    coco = json.loads(mini_atlas.coco.read_text())
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]  # IMG0000002
    mini_atlas.coco.write_text(json.dumps(coco))
    cases, _ = read_fracatlas(mini_atlas.root)
    case = {c.id: c for c in cases}["IMG0000002"]
    assert case.fractured and not case.polygons
    assert [p.fatal for p in case.problems] == [False] and "no polygon" in case.problems[0].message


def test_paths_are_found_case_insensitively_for_suffix(mini_atlas):
    src = mini_atlas.image_path("IMG0000005")
    src.rename(src.with_suffix(".JPG"))
    cases, _ = read_fracatlas(mini_atlas.root)
    assert {c.id: c for c in cases}["IMG0000005"].image == Path(str(src.with_suffix(".JPG")))
