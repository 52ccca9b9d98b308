"""``prepare`` end to end on the mini FracAtlas of conftest: frames, labels, datalist, report,
and every bad input under both error policies."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.transforms import LoadImage
from PIL import Image

from tests.conftest import (
    ALL_IDS,
    FILM_H,
    FILM_W,
    FRACTURE_BOXES,
    FRACTURED_IDS,
    NON_FRACTURED_IDS,
    hidden_or_temp_files,
)
from monaifrac.data.cases import DataError
from monaifrac.data.prepare import prepare
from monaifrac.io import from_monai_frame, to_monai_frame

# The bright bar of conftest.draw_film: rows 12-19, columns 4-43 of the 32 x 48 displayed film,
# 8 x 40 = 320 pixels. The pseudo-label finds it; fracture pixels replace bone pixels in it.
BAR = (slice(12, 20), slice(4, 44))
BAR_PIXELS = 8 * 40


def run(root, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return prepare(root, out, **kw)


def load_hw(path: Path) -> np.ndarray:
    """A prepared NIfTI as its (H, W) array, read with plain nibabel."""
    return from_monai_frame(np.asanyarray(nib.load(str(path)).dataobj))


def box_mask(x0, y0, x1, y1, h=FILM_H, w=FILM_W):
    m = np.zeros((h, w), bool)
    m[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)] = True
    return m


@pytest.fixture
def prepared(mini_atlas, tmp_path):
    out = tmp_path / "out"
    report = run(mini_atlas.root, out)
    return mini_atlas, out, report


def test_exif_rotated_case_has_its_fracture_where_the_polygon_is_displayed(prepared):
    atlas, out, report = prepared
    # IMG0000001 is stored 48 high x 32 wide with EXIF 8; displayed 32 x 48. Its polygon
    # (10,12)-(18,16) in the displayed frame covers rows 12-15, columns 10-17: 4 x 8 = 32 pixels.
    label_wh = np.asanyarray(nib.load(str(out / "labels" / "IMG0000001.nii.gz")).dataobj)
    assert label_wh.shape == (FILM_W, FILM_H)  # MONAI frame (W, H)
    assert label_wh.dtype == np.uint8
    label = from_monai_frame(label_wh)
    rows, cols = np.nonzero(label == 2)
    assert rows.size == 32
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (12, 15, 10, 17)
    # Bone is the bar of the displayed film; fracture took 32 of its 320 pixels.
    assert (label == 1).sum() == BAR_PIXELS - 32
    bar = np.zeros(label.shape, bool)
    bar[BAR] = True
    np.testing.assert_array_equal(label > 0, bar)
    # The image is the stored pixels turned 90° counter-clockwise (EXIF 8), as nibabel reads them,
    raw = np.asarray(Image.open(atlas.image_path("IMG0000001")).convert("L"))
    assert raw.shape == (FILM_W, FILM_H)  # stored 48 x 32
    image = load_hw(out / "images" / "IMG0000001.nii.gz")
    np.testing.assert_array_equal(image, np.rot90(raw, 1))
    # ... and what the training reader gives for the original JPG.
    from_jpg = LoadImage(reader="monaifrac.io.RadiographReader", image_only=True)(str(atlas.image_path("IMG0000001")))
    np.testing.assert_array_equal(to_monai_frame(image).astype(np.float32), from_jpg.numpy())
    assert report["exif_rotated"] == ["IMG0000001"]


def test_every_label_matches_its_polygons(prepared):
    atlas, out, report = prepared
    for i in ALL_IDS:
        label = load_hw(out / "labels" / f"{i}.nii.gz")
        image = load_hw(out / "images" / f"{i}.nii.gz")
        assert label.shape == image.shape == (FILM_H, FILM_W)
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2}
        if i in FRACTURE_BOXES:
            np.testing.assert_array_equal(label == 2, box_mask(*FRACTURE_BOXES[i]))
        else:
            assert not (label == 2).any()
        assert ((label == 1) | (label == 2)).sum() == BAR_PIXELS
    # IMG0000002 is an RGB JPG (R = G = B): one grey channel like the others
    assert load_hw(out / "images" / "IMG0000002.nii.gz").ndim == 2
    # 4 polygons, each non-empty, none clipped; 12 films
    assert report["cases_written"] == 12 and report["fractured"] == 4 and report["non_fractured"] == 8
    assert report["polygons"] == {"total": 4, "nonempty": 4, "clipped": 0, "enlarged": 0}
    assert report["label_values"] == [0, 1, 2]
    assert report["skipped"] == [] and report["warnings"] == []
    assert report["fractured_without_fracture_pixels"] == report["non_fractured_with_fracture_pixels"] == []


def test_datalist_sections_folds_and_paths(prepared):
    atlas, out, report = prepared
    datalist = json.loads((out / "datalist.json").read_text())
    on_disk = json.loads((out / "prepare_report.json").read_text())
    assert on_disk["cases_written"] == report["cases_written"]
    # Official split of the fractured films: train 2, valid 1, test 1 (2 : 1 : 1), so the 8
    # non-fractured films go 4 / 2 / 2 and the sections hold 6 / 3 / 3.
    assert {s: len(v) for s, v in datalist.items()} == {"training": 6, "validation": 3, "test": 3}
    assert report["sections"] == {"training": 6, "validation": 3, "test": 3}
    section = {item["id"]: s for s, items in datalist.items() for item in items}
    assert section["IMG0000001"] == section["IMG0000002"] == "training"
    assert section["IMG0000003"] == "validation" and section["IMG0000004"] == "test"
    assert sorted(section) == ALL_IDS
    for s, items in datalist.items():
        for item in items:
            assert (item["fold"] >= 0) == (s == "training")
            if s != "training":
                assert item["fold"] == -1
            assert item["fractured"] == (item["id"] in FRACTURED_IDS)
            # the fracture's share of the film, from the label written (what the sampler reads)
            label = nib.load(out / item["label"]).get_fdata()
            assert item["fracture_fraction"] == pytest.approx(float((label == 2).mean()), abs=1e-6)
            assert (item["fracture_fraction"] > 0) == item["fractured"]
            for key in ("image", "label"):
                assert not Path(item[key]).is_absolute()
                assert (out / item[key]).is_file()
    # 6 training items, 5 folds: every fold used, none has more than 2
    folds = [item["fold"] for item in datalist["training"]]
    assert set(folds) == set(range(5))
    # the two fractured training films land in different folds (stratified)
    fractured_folds = [item["fold"] for item in datalist["training"] if item["fractured"]]
    assert len(set(fractured_folds)) == 2
    assert hidden_or_temp_files(out) == []


def test_rerun_over_the_same_out_dir_gives_the_same_datalist(prepared):
    atlas, out, report = prepared
    first = (out / "datalist.json").read_text()
    label_before = load_hw(out / "labels" / "IMG0000003.nii.gz")
    again = run(atlas.root, out)
    assert (out / "datalist.json").read_text() == first
    assert again["cases_written"] == report["cases_written"]
    np.testing.assert_array_equal(load_hw(out / "labels" / "IMG0000003.nii.gz"), label_before)
    assert hidden_or_temp_files(out) == []
    # another seed moves non-fractured films but never the official ones
    other = run(atlas.root, out.parent / "seed7", seed=7)
    assert other["sections"] == report["sections"]


def test_parallel_workers_give_the_same_output(prepared, tmp_path):
    atlas, out, report = prepared
    par = tmp_path / "parallel"
    run(atlas.root, par, workers=2)
    assert (par / "datalist.json").read_text() == (out / "datalist.json").read_text()
    for i in ALL_IDS:
        np.testing.assert_array_equal(load_hw(par / "labels" / f"{i}.nii.gz"), load_hw(out / "labels" / f"{i}.nii.gz"))


def test_size_disagreeing_with_the_annotation_is_an_error(mini_atlas, tmp_path):
    # Claim IMG0000001 is 32 x 48 (its stored size, as a reader ignoring EXIF would see it).
    coco = json.loads(mini_atlas.coco.read_text())
    coco["images"][0].update(width=FILM_H, height=FILM_W)
    mini_atlas.coco.write_text(json.dumps(coco))
    with pytest.raises(DataError) as err:
        run(mini_atlas.root, tmp_path / "out")
    assert str(mini_atlas.coco) in str(err.value)
    assert "32x48" in str(err.value) and "48x32" in str(err.value)
    report = run(mini_atlas.root, tmp_path / "out2", on_error="skip")
    assert [s["case"] for s in report["skipped"]] == ["IMG0000001"]


def test_bad_on_error_value(mini_atlas, tmp_path):
    with pytest.raises(ValueError):
        run(mini_atlas.root, tmp_path / "o", on_error="ignore")


# ----------------------------------------------------------------------------- bad inputs

# Defects that make one case unusable: under fail → DataError naming the file, under skip →
# that case left out and listed with the file.
CASE_DEFECTS = ["zero_byte", "not_image", "short_polygon", "missing_image", "not_in_csv"]


@pytest.mark.parametrize("defect", CASE_DEFECTS)
def test_bad_case_under_fail(atlas_factory, tmp_path, defect):
    atlas = atlas_factory(defect)
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        run(atlas.root, out, on_error="fail")
    assert str(atlas.bad_file) in str(err.value)
    assert atlas.bad_id in str(err.value)
    assert not (out / "images" / f"{atlas.bad_id}.nii.gz").exists()
    assert not (out / "labels" / f"{atlas.bad_id}.nii.gz").exists()
    assert not (out / "datalist.json").exists()  # a failed run leaves no datalist to train on
    if out.exists():
        assert hidden_or_temp_files(out) == []


@pytest.mark.parametrize("defect", CASE_DEFECTS)
def test_bad_case_under_skip(atlas_factory, tmp_path, defect):
    atlas = atlas_factory(defect)
    out = tmp_path / "out"
    report = run(atlas.root, out, on_error="skip")
    assert report["cases_written"] == 11
    skipped = report["skipped"]
    assert len(skipped) == 1
    assert skipped[0]["case"] == atlas.bad_id
    assert skipped[0]["file"] == str(atlas.bad_file)
    assert skipped[0]["problem"]
    saved = json.loads((out / "prepare_report.json").read_text())
    assert saved["skipped"] == skipped
    datalist = json.loads((out / "datalist.json").read_text())
    ids = [item["id"] for items in datalist.values() for item in items]
    assert atlas.bad_id not in ids and len(ids) == 11
    assert not (out / "images" / f"{atlas.bad_id}.nii.gz").exists()
    assert hidden_or_temp_files(out) == []


def test_truncated_jpg_is_recovered_by_default(atlas_factory, tmp_path):
    atlas = atlas_factory("truncated")
    out = tmp_path / "out"
    report = run(atlas.root, out)  # on_error="fail"
    assert report["cases_written"] == 12 and report["skipped"] == []
    warned = [w for w in report["warnings"] if w["case"] == atlas.bad_id]
    assert len(warned) == 1
    assert warned[0]["file"] == str(atlas.bad_file) and "truncated" in warned[0]["problem"]
    image = load_hw(out / "images" / f"{atlas.bad_id}.nii.gz")
    assert image.shape == (FILM_H, FILM_W)
    assert not (load_hw(out / "labels" / f"{atlas.bad_id}.nii.gz") == 2).any()


def test_truncated_jpg_is_skipped_under_skip(atlas_factory, tmp_path):
    atlas = atlas_factory("truncated")
    out = tmp_path / "out"
    report = run(atlas.root, out, on_error="skip")
    assert report["cases_written"] == 11
    assert report["skipped"] == [{"case": atlas.bad_id, "file": str(atlas.bad_file),
                                  "problem": report["skipped"][0]["problem"]}]
    assert "truncated" in report["skipped"][0]["problem"]
    assert not (out / "images" / f"{atlas.bad_id}.nii.gz").exists()
    assert hidden_or_temp_files(out) == []


@pytest.mark.parametrize("on_error", ["fail", "skip"])
def test_polygon_partly_outside_is_clipped_not_an_error(atlas_factory, tmp_path, on_error):
    atlas = atlas_factory("clipped_polygon")
    out = tmp_path / "out"
    report = run(atlas.root, out, on_error=on_error)
    assert report["cases_written"] == 12 and report["skipped"] == []
    assert report["polygons"]["clipped"] == 1 and report["polygons"]["nonempty"] == 4
    # (40,13)-(52,17) on a 48-wide film keeps columns 40-47, rows 13-16: 8 x 4 = 32 pixels.
    label = load_hw(out / "labels" / f"{atlas.bad_id}.nii.gz")
    assert (label == 2).sum() == 32
    np.testing.assert_array_equal(label == 2, box_mask(40, 13, 48, 17))
    assert any(w["case"] == atlas.bad_id and "clipped" in w["problem"] for w in report["warnings"])


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("defect", ["empty_coco", "malformed_coco"])
def test_empty_or_malformed_coco_is_fatal_under_any_policy(atlas_factory, tmp_path, defect, on_error):
    atlas = atlas_factory(defect)
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        run(atlas.root, out, on_error=on_error)
    assert str(atlas.coco) in str(err.value)
    assert not out.exists() or not any(out.rglob("*"))


def test_non_fractured_in_report_and_datalist_flags(prepared):
    atlas, out, report = prepared
    datalist = json.loads((out / "datalist.json").read_text())
    flags = {item["id"]: item["fractured"] for items in datalist.values() for item in items}
    assert sorted(i for i, f in flags.items() if not f) == NON_FRACTURED_IDS


def normals_folder(src, dst, offset: int = 5000):
    """A folder of extra normal films in the FracAtlas layout (as ../shared/data/fracatlas-normals):
    the non-fractured films of ``src`` under new ids, an emptied COCO JSON, no split lists."""
    import shutil

    (dst / "images" / "Non_fractured").mkdir(parents=True)
    rows = ["image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,fracture_count,frontal,lateral,oblique"]
    ids = []
    for i, film in enumerate(sorted((src / "images" / "Non_fractured").glob("*.jpg"))):
        new = f"IMG{offset + i:07d}"
        shutil.copy(film, dst / "images" / "Non_fractured" / f"{new}.jpg")
        rows.append(f"{new}.jpg,0,1,0,0,0,0,0,0,0,1,0,0")
        ids.append(new)
    (dst / "dataset.csv").write_text("\n".join(rows) + "\n")
    coco = dst / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json"
    coco.parent.mkdir(parents=True)
    coco.write_text(json.dumps({"info": {}, "images": [], "annotations": [],
                                "categories": [{"id": 0, "name": "fractured"}]}))
    return ids


def test_two_sources_are_prepared_together(mini_atlas, tmp_path):
    from monaifrac.cli import main

    extra_ids = normals_folder(mini_atlas.root, tmp_path / "normals")
    out = tmp_path / "both"
    assert main(["prepare", str(mini_atlas.root), str(tmp_path / "normals"), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    datalist = json.loads((out / "datalist.json").read_text())
    items = {d["id"]: d for section in datalist.values() for d in section}
    single = prepare(mini_atlas.root, tmp_path / "one", workers=1, progress=False)
    assert len(items) == single["cases_written"] + len(extra_ids)
    for i in extra_ids:
        assert not items[i]["fractured"] and items[i]["body_part"] == "leg"
        label = nib.load(out / items[i]["label"]).get_fdata()
        assert 2 not in np.unique(label)
    report = json.loads((out / "prepare_report.json").read_text())
    assert str(tmp_path / "normals") in report["source"]


def test_a_film_id_in_two_sources_is_refused(mini_atlas, tmp_path):
    from monaifrac.data.cases import DataError

    with pytest.raises(DataError, match="film id .* is in two sources"):
        prepare([mini_atlas.root, mini_atlas.root], tmp_path / "dup", workers=1, progress=False)
