"""Labelme import (monaifrac.data.labelme): annotated bone instead of the pseudo-label."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.conftest import FILM_H, FILM_W, draw_film, save_image, stored_for_orientation
from monaifrac.cli import main
from monaifrac.data.cases import DataError
from monaifrac.data.labelme import DEFAULT_MAPPING, merge_cases, read_labelme, read_mapping
from monaifrac.data.masks import BONE, FRACTURE
from monaifrac.data.prepare import prepare
from monaifrac.io import from_monai_frame

MAPPING = {"Bone": 1, "femur": 1, "FRACTURE": 2}

# Deliberately NOT the bright bar of draw_film (rows 12-19): a pseudo-label would find the
# bar, so bone pixels here can only come from the polygon.
#   bone     (4,22)-(40,30): rows 22-29, columns 4-39 → 8 x 36 = 288 pixels
#   fracture (10,24)-(14,28): rows 24-27, columns 10-13 → 4 x 4 = 16 pixels, inside the bone
BONE_BOX = (4, 22, 40, 30)
FRACTURE_BOX = (10, 24, 14, 28)


def corners(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def shape(label, points, shape_type="polygon"):
    return {"label": label, "points": points, "group_id": None, "shape_type": shape_type, "flags": {}}


def write_labelme(folder: Path, stem: str, shapes, image_path: str | None = None, size=(FILM_W, FILM_H),
                  film: bool = True, orientation: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if film:
        save_image(folder / f"{stem}.jpg", stored_for_orientation(draw_film(), orientation), orientation)
    doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path or f"{stem}.jpg",
           "imageData": None, "imageWidth": size[0], "imageHeight": size[1]}
    path = folder / f"{stem}.json"
    path.write_text(json.dumps(doc))
    return path


def box(x0, y0, x1, y1):
    m = np.zeros((FILM_H, FILM_W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture
def labelme_dir(tmp_path):
    folder = tmp_path / "labelme"
    # film stored with EXIF 6: Labelme draws on the displayed film, as FracAtlas does
    write_labelme(folder, "film001", [shape("bone", corners(*BONE_BOX)), shape("fracture", corners(*FRACTURE_BOX))],
                  orientation=6)
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(MAPPING))
    return folder, mapping


def label_hw(out: Path, case_id: str) -> np.ndarray:
    return from_monai_frame(np.asanyarray(nib.load(str(out / "labels" / f"{case_id}.nii.gz")).dataobj))


def test_read_mapping(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(MAPPING))
    assert read_mapping(path) == {"bone": 1, "femur": 1, "fracture": 2}  # names lower-cased
    assert read_mapping(None) == DEFAULT_MAPPING
    path.write_text(json.dumps({"bone": 3}))
    with pytest.raises(DataError, match="maps to 3"):
        read_mapping(path)
    path.write_text("[]")
    with pytest.raises(DataError, match="mapping must be a JSON object"):
        read_mapping(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="malformed JSON"):
        read_mapping(path)
    with pytest.raises(DataError, match="mapping file not found"):
        read_mapping(tmp_path / "none.json")


def test_bone_comes_from_the_polygon_and_fracture_on_top(labelme_dir, tmp_path):
    folder, mapping = labelme_dir
    cases, problems = read_labelme(folder, read_mapping(mapping))
    assert problems == [] and len(cases) == 1
    case = cases[0]
    assert case.id == "film001" and case.bone_annotated and case.fractured
    assert case.polygons[BONE] == [[4.0, 22.0, 40.0, 22.0, 40.0, 30.0, 4.0, 30.0]]
    assert case.expected_size == (FILM_W, FILM_H)

    out = tmp_path / "out"
    report = prepare(None, out, labelme=folder, labelme_map=mapping, workers=1, progress=False)
    label = label_hw(out, "film001")
    assert label.shape == (FILM_H, FILM_W) and label.dtype == np.uint8
    np.testing.assert_array_equal(label == 2, box(*FRACTURE_BOX))
    np.testing.assert_array_equal(label == 1, box(*BONE_BOX) & ~box(*FRACTURE_BOX))
    assert (label == 1).sum() == 288 - 16
    # the bright bar (rows 12-19) is not bone here: no pseudo-label was made
    assert not label[12:20].any()
    assert report["polygons"] == {"total": 2, "nonempty": 2, "clipped": 0, "enlarged": 0}
    assert report["exif_rotated"] == ["film001"]
    assert report["source"].startswith("labelme:")
    # no official split: one film goes to training (70 / 15 / 15 of 1 → 1 / 0 / 0)
    assert report["sections"] == {"training": 1, "validation": 0, "test": 0}


def test_unknown_labels_and_non_polygons_are_warnings(tmp_path):
    folder = tmp_path / "lm"
    write_labelme(folder, "a", [shape("bone", corners(*BONE_BOX)), shape("tendon", corners(1, 1, 5, 5)),
                                shape("fracture", [[3, 3]], "point"),
                                shape("fracture", [[10, 24], [14, 28]], "rectangle")])
    cases, _ = read_labelme(folder, DEFAULT_MAPPING)
    case = cases[0]
    warnings = [p for p in case.problems if not p.fatal]
    assert [p for p in case.problems if p.fatal] == []
    assert len(warnings) == 2
    assert "'tendon' is not in the mapping" in warnings[0].message
    assert "point is not a polygon" in warnings[1].message
    # the rectangle (two corners) became its four corners
    assert case.polygons[FRACTURE] == [[10.0, 24.0, 14.0, 24.0, 14.0, 28.0, 10.0, 28.0]]
    out = tmp_path / "out"
    report = prepare(None, out, labelme=folder, workers=1, progress=False, on_error="fail")
    assert report["cases_written"] == 1
    assert sum("tendon" in w["problem"] for w in report["warnings"]) == 1
    np.testing.assert_array_equal(label_hw(out, "a") == 2, box(*FRACTURE_BOX))


@pytest.mark.parametrize("content, words", [
    ("{\"shapes\": [", "malformed JSON"),
    ("", "empty file"),
    ("{\"version\": \"5\"}", "no 'shapes' list"),
    (json.dumps({"shapes": [{"label": "bone", "points": [1, 2, 3]}], "imagePath": "good.jpg"}), "malformed points"),
    (json.dumps({"shapes": ["bone"], "imagePath": "good.jpg"}), "not a Labelme shape"),
    (json.dumps({"shapes": [shape("bone", [[1, 1], [2, 2]])], "imagePath": "good.jpg"}), "at least 3 points"),
    (json.dumps({"shapes": [], "imagePath": "nowhere.jpg"}), "not found"),
], ids=["malformed", "empty", "no-shapes", "bad-points", "bad-shape", "two-points", "no-film"])
def test_bad_labelme_file_is_a_problem_of_its_case(tmp_path, content, words):
    folder = tmp_path / "lm"
    write_labelme(folder, "good", [shape("bone", corners(*BONE_BOX))])
    bad = folder / "bad.json"
    bad.write_text(content)
    cases, _ = read_labelme(folder, DEFAULT_MAPPING)
    by_id = {c.id: c for c in cases}
    assert by_id["good"].problems == []
    fatal = [p for p in by_id["bad"].problems if p.fatal]
    assert len(fatal) == 1 and words in fatal[0].message and fatal[0].file == str(bad)

    with pytest.raises(DataError) as err:
        prepare(None, tmp_path / "o1", labelme=folder, workers=1, progress=False, on_error="fail")
    assert str(bad) in str(err.value)
    report = prepare(None, tmp_path / "o2", labelme=folder, workers=1, progress=False, on_error="skip")
    assert report["cases_written"] == 1
    assert [(s["case"], s["file"]) for s in report["skipped"]] == [("bad", str(bad))]


def test_labelme_without_bone_uses_the_pseudo_label(tmp_path):
    folder = tmp_path / "lm"
    write_labelme(folder, "f", [shape("fracture", corners(10, 14, 14, 18))])
    out = tmp_path / "out"
    prepare(None, out, labelme=folder, labelme_map=None, workers=1, progress=False)  # default mapping has bone...
    cases, _ = read_labelme(folder, {"fracture": 2})
    assert not cases[0].bone_annotated
    out2 = tmp_path / "out2"
    mapping = tmp_path / "fracture_only.json"
    mapping.write_text(json.dumps({"fracture": 2}))
    prepare(None, out2, labelme=folder, labelme_map=mapping, workers=1, progress=False)
    label = label_hw(out2, "f")
    # the bar of draw_film (rows 12-19, columns 4-43: 320 pixels) is the pseudo-label; the
    # 16 fracture pixels are on it
    assert ((label == 1) | (label == 2)).sum() == 320 and (label == 2).sum() == 16
    # the default mapping has "bone", but this film has no bone polygon: it keeps the pseudo-label
    np.testing.assert_array_equal(label_hw(out, "f"), label)


def test_labelme_merged_into_fracatlas_by_id(mini_atlas, tmp_path):
    folder = tmp_path / "lm"
    image = mini_atlas.image_path("IMG0000003")
    write_labelme(folder, "IMG0000003", [shape("bone", corners(*BONE_BOX))], image_path=str(image), film=False)
    out = tmp_path / "out"
    report = prepare(mini_atlas.root, out, labelme=folder, workers=1, progress=False)
    assert report["cases_written"] == 12
    label = label_hw(out, "IMG0000003")
    # FracAtlas keeps its fracture (30,14)-(36,18): 6 x 4 = 24 pixels; bone is the Labelme box
    fracture = box(30, 14, 36, 18)
    np.testing.assert_array_equal(label == 2, fracture)
    np.testing.assert_array_equal(label == 1, box(*BONE_BOX) & ~fracture)
    datalist = json.loads((out / "datalist.json").read_text())
    assert "IMG0000003" in [i["id"] for i in datalist["validation"]]  # official split kept
    # a film of another id is simply added
    merged = merge_cases([], read_labelme(folder, DEFAULT_MAPPING)[0])
    assert [c.id for c in merged] == ["IMG0000003"]


def test_cli_prepare_labelme(labelme_dir, tmp_path, capsys):
    folder, mapping = labelme_dir
    out = tmp_path / "cli_out"
    code = main(["prepare", "--labelme", str(folder), "--labelme-map", str(mapping), "--out", str(out),
                 "--workers", "1", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.split("\nwrote ")[0])
    assert summary["cases_written"] == 1 and summary["skipped"] == 0
    label = label_hw(out, "film001")
    np.testing.assert_array_equal(label == 1, box(*BONE_BOX) & ~box(*FRACTURE_BOX))
    np.testing.assert_array_equal(label == 2, box(*FRACTURE_BOX))


def test_cli_labelme_missing_folder(tmp_path, capsys):
    code = main(["prepare", "--labelme", str(tmp_path / "absent"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "Labelme folder not found" in capsys.readouterr().err
