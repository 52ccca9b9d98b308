"""The bad-input corpus (tests/bad_inputs.py, issue 8 item 7) through every stage but the bundle runs
(those are in tests/integration/test_bad_inputs_bundle.py): the reader, ``prepare``, training's data
check and loading, ``score`` and inference's choice of films.

Each case is either handled correctly (the test says what correct is) or refused with one line that
names the file and the reason; a run over a folder keeps the results of the other files.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.bad_inputs import (
    COCO_CASES,
    DISPLAY,
    RASTER_FILMS,
    deep16_film,
    exif_displayed,
    line_film,
    make_bad_inputs,
    make_huge_film,
    mono1_stored,
    reference_label_hw,
    rgb_film,
    tiny_film,
)
from tests.conftest import FILM_H, FILM_W, FRACTURE_BOXES, draw_film
from monaifrac.cli import main
from monaifrac.data.cases import DataError
from monaifrac.data.check import check_dataset, check_item
from monaifrac.data.prepare import prepare
from monaifrac.evaluation.score import score_predictions
from monaifrac.inference import REPORT_NAME, collect_films
from monaifrac.io import InputError, from_monai_frame, read_nifti, read_radiograph, to_monai_frame, write_png


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad"))


def assert_one_line_naming(text: str, path) -> None:
    assert "\n" not in text.strip(), text
    assert str(path) in text, (str(path), text)


# ----------------------------------------------------------------------------- the reader


def _shape(shape, dtype=np.uint8):
    def check(array, info):
        assert array.shape == shape and array.dtype == dtype, (array.shape, array.dtype)
    return check


def _near(expected, tolerance=0):
    def check(array, info):
        assert array.shape == expected.shape and array.dtype == expected.dtype, (array.shape, array.dtype)
        assert np.abs(array.astype(int) - expected.astype(int)).max() <= tolerance
    return check


def _truncated(array, info):
    assert array.shape == (64, 96) and info.truncated
    assert any("truncated" in w for w in info.warnings)


def _deep16(array, info):
    _near(deep16_film())(array, info)  # uint16, exactly: 0, 65535 and the 1 beside 0 are all there
    assert array.min() == 0 and array.max() == 65535 and array[0, 2] == 1


def _rgb(array, info):
    r, g, b = (rgb_film()[..., c].astype(float) for c in range(3))
    assert array.shape == (FILM_H, FILM_W) and array.dtype == np.uint8 and info.source_mode == "RGB"
    assert np.abs(array - (0.299 * r + 0.587 * g + 0.114 * b)).max() <= 1  # ITU-R 601 luma, one channel


def _rgba(array, info):
    _near(draw_film())(array, info)  # the grey RGB; the alpha ramp plays no part
    assert info.source_mode == "RGBA"


def _mono1(array, info):
    bone = mono1_stored() == 200  # stored dark, displayed white
    assert array.shape == (FILM_H, FILM_W)
    assert array[bone].min() > array[~bone].max()
    assert any("MONOCHROME1" in w for w in info.warnings)


def _exif(k):
    def check(array, info):
        assert info.exif_orientation == k
        _near(exif_displayed(), tolerance=2)(array, info)  # the displayed pattern, 24 x 40, whatever k is
    return check


READER = {  # case → a check of (array, info), or the words of the InputError
    "good_jpg": _near(draw_film(), tolerance=4),
    "truncated_jpg": _truncated,
    "zero_byte_jpg": "file is empty (0 bytes)",
    "text_as_jpg": "not an image file",
    "png_as_jpg": _near(draw_film()),  # the bytes decide the format, not the name: read exactly
    "png_16bit": _deep16,
    "png_rgb": _rgb,
    "png_rgba": _rgba,
    "tiny_8x8": _near(tiny_film()),
    "line_1x4000": _near(line_film()),
    **{f"exif_{k}": _exif(k) for k in range(1, 9)},
    "name_spaces": _shape((FILM_H, FILM_W)),
    "name_non_ascii": _shape((FILM_H, FILM_W)),
    "dicom_monochrome1": _mono1,
}


@pytest.mark.parametrize("case", sorted(READER))
def test_reader(corpus, case):
    expect = READER[case]
    path = corpus[case]
    if isinstance(expect, str):
        with pytest.raises(InputError) as err:
            read_radiograph(path)
        assert err.value.path == str(path) and expect in err.value.problem
        assert_one_line_naming(str(err.value), path)
    else:
        expect(*read_radiograph(path))


@pytest.mark.parametrize("k", range(1, 9))
def test_exif_orientation_is_the_numpy_turn_of_the_stored_pixels(corpus, k):
    """Beside the pattern test above: exactly the stored pixels turned as EXIF 2.3 says, written with numpy."""
    raw = np.asarray(Image.open(corpus[f"exif_{k}"]).convert("L"))  # decoded, no EXIF applied
    np.testing.assert_array_equal(read_radiograph(corpus[f"exif_{k}"])[0], DISPLAY[k](raw))


def test_6000_film_is_read_at_full_size(tmp_path):
    """Only the reader here, and no timing: its time and memory, and full inference on it, are measured by
    `monaifrac benchmark big-film`."""
    path = make_huge_film(tmp_path / "huge.jpg")
    array, info = read_radiograph(path)
    assert array.shape == (6000, 6000) and array.dtype == np.uint8 and not info.warnings
    assert array[3000, 3000] > array[2000, 3000] > array[100, 3000]  # bone > soft tissue > air


# ----------------------------------------------------------------------------- prepare


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    report = prepare(corpus["_atlas"]["root"], out, on_error="skip", workers=1, progress=False)
    return out, report


PREPARE_SKIPPED = {"zero_byte_jpg": "file is empty", "text_as_jpg": "not an image file",
                   "truncated_jpg": "truncated file"}  # --on-error skip leaves truncated films out too


def test_prepare_skip_keeps_every_good_film(corpus, prepared):
    out, report = prepared
    atlas = corpus["_atlas"]
    skipped = {s["case"]: s for s in report["skipped"]}
    assert set(skipped) == {atlas["ids"][c] for c in PREPARE_SKIPPED}
    for case, words in PREPARE_SKIPPED.items():
        s = skipped[atlas["ids"][case]]
        assert s["file"] == str(atlas["files"][case]) and words in s["problem"]
    written = {d["id"] for items in json.loads((out / "datalist.json").read_text()).values() for d in items}
    good = {atlas["ids"][c] for c in RASTER_FILMS if c not in PREPARE_SKIPPED}
    assert good <= written and len(written) == 12 + len(good)  # the mini atlas's 12 films too
    for case in RASTER_FILMS:
        if case in PREPARE_SKIPPED:
            continue
        case_id = atlas["ids"][case]
        image = read_nifti(out / "images" / f"{case_id}.nii.gz")
        label = read_nifti(out / "labels" / f"{case_id}.nii.gz")
        film, _ = read_radiograph(corpus[case])
        np.testing.assert_array_equal(image, to_monai_frame(film))  # the film as read, in the MONAI frame
        assert label.shape == image.shape and set(np.unique(label)) <= {0, 1}, case  # Non_fractured: no 2
    assert read_nifti(out / "images" / "deep16.nii.gz").dtype == np.uint16
    assert check_dataset(out)["problems"] == []  # and training's check accepts all of it


def test_prepare_fail_stops_at_the_first_bad_film_in_one_line(corpus, tmp_path, capsys):
    root = corpus["_atlas"]["root"]
    assert main(["prepare", str(root), "--out", str(tmp_path / "out"), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("monaifrac prepare: error: ")
    assert_one_line_naming(err, corpus["_atlas"]["files"]["text_as_jpg"])  # ids sorted: 'text' comes first
    assert "not an image file" in err
    assert not (tmp_path / "out" / "datalist.json").exists()


# COCO cases: "layout" = the whole source is refused under either policy; "case" = that film is
# refused under fail and left out (listed) under skip; "ok" = prepared as FracAtlas's id 0 would be.
COCO = {
    "coco_empty": ("layout", "empty file"),
    "coco_invalid": ("layout", "malformed JSON"),
    "coco_no_annotations": ("layout", "needs 'images' and 'annotations' lists"),
    "coco_two_point_polygon": ("case", "a polygon needs at least 3 points, got 2"),
    "coco_polygon_outside": ("case", "polygon(s) cover no pixel of the 48x32 film"),
    "coco_category_1": ("ok", ""),
}
assert set(COCO) == set(COCO_CASES)


@pytest.mark.parametrize("on_error", ["fail", "skip"])
@pytest.mark.parametrize("case", COCO_CASES)
def test_prepare_coco(corpus, tmp_path, case, on_error):
    kind, words = COCO[case]
    c = corpus[case]
    out = tmp_path / "out"
    if kind == "layout" or (kind == "case" and on_error == "fail"):
        with pytest.raises(DataError) as err:
            prepare(c["root"], out, on_error=on_error, workers=1, progress=False)
        assert_one_line_naming(str(err.value), c["coco"])
        assert words in str(err.value) and (c["case"] is None or c["case"] in str(err.value))
        assert not (out / "datalist.json").exists()
        return
    report = prepare(c["root"], out, on_error=on_error, workers=1, progress=False)
    if kind == "case":
        assert report["cases_written"] == 11
        assert [(s["case"], s["file"]) for s in report["skipped"]] == [(c["case"], str(c["coco"]))]
        assert words in report["skipped"][0]["problem"]
    else:
        assert report["cases_written"] == 12 and report["skipped"] == []
        for case_id, (x0, y0, x1, y1) in FRACTURE_BOXES.items():  # each box, exactly, as label 2
            label = from_monai_frame(read_nifti(out / "labels" / f"{case_id}.nii.gz"))
            assert (label == 2).sum() == (x1 - x0) * (y1 - y0) and (label[y0:y1, x0:x1] == 2).all(), case_id
    assert check_dataset(out)["problems"] == []  # what prepare writes, training accepts


def test_prepare_labelme_unknown_label_is_a_warning(corpus, tmp_path):
    lm = corpus["labelme_unknown_label"]
    report = prepare(None, tmp_path / "out", labelme=lm["folder"], workers=1, progress=False)
    assert report["cases_written"] == 1 and report["skipped"] == []
    warning = [w for w in report["warnings"] if "tumour" in w["problem"]]
    assert [(w["file"], w["case"]) for w in warning] == [(str(lm["json"]), lm["id"])]
    label = from_monai_frame(read_nifti(tmp_path / "out" / "labels" / f"{lm['id']}.nii.gz"))
    assert (label == 2).sum() == 16 and (label == 1).sum() == 288 - 16  # bone and fracture polygons only
    assert not label[2:6, 2:6].any()  # nothing where the unknown shape was


# ----------------------------------------------------------------------------- training data


DATASET_PROBLEMS = {  # item → (file key, words) of each problem check names
    "good_pair_fractured": [],
    "good_pair_normal": [],
    "nifti_singleton_3d": [("image", "not a 2D film (array of shape (48, 32, 1))"),
                           ("label", "not a 2D film (array of shape (48, 32, 1))")],
    "nifti_nan": [("image", "16 non-finite pixel(s) (NaN or inf)")],
    "label_value_7": [("label", "label values [7] outside {0, 1, 2}")],
    "pair_shape_mismatch": [("label", "label shape (52, 32) differs from image shape (48, 32)")],
    "missing_image": [("image", "file not found")],
    "missing_label": [("label", "file not found")],
}


def test_training_check_names_each_bad_file_once(corpus):
    root = corpus["_dataset"]
    problems = check_dataset(root)["problems"]
    expected = []
    for item_id, found in DATASET_PROBLEMS.items():
        for key, words in found:
            expected.append(f"{root / key}s/{item_id}.nii.gz: {words}")
    assert len(problems) == len(expected), problems
    for line, want in zip(sorted(problems), sorted(expected)):
        assert line.startswith(want), (line, want)
        assert "\n" not in line


def test_cli_check_exits_1_listing_every_problem(corpus, capsys):
    assert main(["check", str(corpus["_dataset"])]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 + sum(len(v) for v in DATASET_PROBLEMS.values())
    assert out[-1].endswith("8 item(s), 7 problem(s)")


@pytest.fixture(scope="module")
def train_transforms():
    """``train.json``'s own transform chains (training with its whole films scaled and padded to 64 x 64, and
    validation)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[2] / "bundle" / "configs" / "train.json"))
    parser["film_max_side"] = parser["film_long_side"] = 64
    train, val = parser.get_parsed_content("train#preprocessing"), parser.get_parsed_content("validate#preprocessing")
    train.set_random_state(seed=0)
    return train, val


def _raster_items(corpus, folder: Path) -> list[dict]:
    """The film cases as MONAI Label hands them to training: the film itself and a PNG label of its size."""
    items = []
    for case in RASTER_FILMS:
        try:
            h, w = read_radiograph(corpus[case])[0].shape
        except InputError:
            h, w = FILM_H, FILM_W
        label = np.zeros((h, w), np.uint8)
        label[h // 2:, :] = 1
        write_png(folder / f"{case}_label.png", label)
        items.append({"id": case, "image": str(corpus[case]), "label": str(folder / f"{case}_label.png")})
    return items


def test_what_the_check_passes_training_loads(corpus, train_transforms, tmp_path):
    """The check is the contract of training's loader: every item it passes loads through train.json's
    transforms at the right shape, and every item it refuses is named in one line per problem."""
    train, val = train_transforms
    root = corpus["_dataset"]
    nifti = [{**d, "image": str(root / d["image"]), "label": str(root / d["label"])}
             for d in json.loads((root / "datalist.json").read_text())["validation"]]
    refused = set()
    for item in nifti + _raster_items(corpus, tmp_path):
        problems = check_item(item)
        if problems:
            refused.add(item["id"])
            for p in problems:
                assert "\n" not in p and (p.startswith(item["image"] + ": ") or p.startswith(item["label"] + ": "))
            continue
        shape = np.asarray(Image.open(item["label"])).shape[::-1] if item["label"].endswith(".png") else \
            read_nifti(item["label"]).shape
        v = val(dict(item))
        assert tuple(v["image"].shape) == tuple(v["label"].shape) == (1, *shape), item["id"]
        trained = train(dict(item))
        for t in trained if isinstance(trained, list) else [trained]:
            assert tuple(t["image"].shape) == tuple(t["label"].shape) == (1, 64, 64), item["id"]
            assert bool(t["image"].isfinite().all()) and set(t["label"].unique().tolist()) <= {0, 1, 2}
    assert refused == {"nifti_singleton_3d", "nifti_nan", "label_value_7", "pair_shape_mismatch", "missing_image",
                       "missing_label", "zero_byte_jpg", "text_as_jpg"}


# ----------------------------------------------------------------------------- score


def _score(pred_dir: Path, truth, out: Path, **kw) -> dict:
    return score_predictions(pred_dir, truth, out, pred_kind="labels", n_boot=10, **kw)


def _bone_only(h, w) -> np.ndarray:
    label = np.zeros((h, w), np.uint8)
    label[h // 2:, :] = 1
    return label


SCORE_REFUSED = {"zero_byte_jpg": "file is empty", "text_as_jpg": "not an image file"}


@pytest.mark.parametrize("case", sorted(RASTER_FILMS))
def test_score_against_a_fracatlas_folder_with_every_film_case(corpus, tmp_path, case):
    """One prediction, for this film, of its displayed size: scored, or refused naming the film."""
    atlas = corpus["_atlas"]
    case_id, film = atlas["ids"][case], atlas["files"][case]
    h, w = (FILM_H, FILM_W) if case in SCORE_REFUSED else read_radiograph(film)[0].shape
    write_png(tmp_path / "pred" / f"{case_id}.png", _bone_only(h, w))
    if case in SCORE_REFUSED:
        with pytest.raises(InputError) as err:
            _score(tmp_path / "pred", atlas["root"], tmp_path / "score")
        assert err.value.path == str(film) and SCORE_REFUSED[case] in err.value.problem
        assert_one_line_naming(str(err.value), film)
        return
    result = _score(tmp_path / "pred", atlas["root"], tmp_path / "score")
    with (tmp_path / "score" / "per_film.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert result["films"] == 1 and [r["film"] for r in rows] == [case_id]
    assert (int(rows[0]["height"]), int(rows[0]["width"])) == (h, w)


@pytest.mark.parametrize("k", [5, 6, 7, 8])
def test_score_refuses_a_prediction_in_the_stored_frame(corpus, tmp_path, k):
    atlas = corpus["_atlas"]
    write_png(tmp_path / "pred" / f"exif_{k}.png", _bone_only(40, 24))  # stored 40 x 24, displayed 24 x 40
    with pytest.raises(InputError, match="never resized") as err:
        _score(tmp_path / "pred", atlas["root"], tmp_path / "score")
    assert_one_line_naming(str(err.value), tmp_path / "pred" / f"exif_{k}.png")


PREPARED_TRUTH = {  # item → None (scored) or (file key, words)
    "good_pair_fractured": None,
    "good_pair_normal": None,
    "nifti_singleton_3d": None,  # no MONAI here: the trailing singleton axis is dropped
    "nifti_nan": None,  # the image's NaNs play no part in scoring its (sound) label
    "label_value_7": ("label", "label values [7] outside {0, 1, 2}"),
    "pair_shape_mismatch": ("label", "differ in shape"),
    "missing_image": ("image", "file not found"),
    "missing_label": ("label", "file not found"),
}


@pytest.mark.parametrize("item_id", sorted(PREPARED_TRUTH))
def test_score_against_the_prepared_corpus(corpus, tmp_path, item_id):
    root = corpus["_dataset"]
    truth = reference_label_hw()
    if item_id in ("good_pair_normal", "nifti_singleton_3d"):
        truth = np.where(truth == 2, 1, truth).astype(np.uint8)
    write_png(tmp_path / "pred" / f"{item_id}.png", truth)
    expect = PREPARED_TRUTH[item_id]
    if expect is None:
        result = _score(tmp_path / "pred", root, tmp_path / "score")
        assert result["films"] == 1 and result["fracture"]["dice_mean"] == 1.0
        return
    key, words = expect
    with pytest.raises(InputError) as err:
        _score(tmp_path / "pred", root, tmp_path / "score")
    path = root / f"{key}s" / f"{item_id}.nii.gz"
    assert err.value.path == str(path) and words in err.value.problem
    assert_one_line_naming(str(err.value), path)
    assert not (tmp_path / "score").exists()


@pytest.mark.parametrize("case", COCO_CASES)
def test_score_against_each_coco_case(corpus, tmp_path, case):
    """Predictions of the four fracture boxes, exact: only the broken annotation stops the scoring."""
    kind, words = COCO[case]
    c = corpus[case]
    for case_id, (x0, y0, x1, y1) in FRACTURE_BOXES.items():
        pred = np.zeros((FILM_H, FILM_W), np.uint8)
        pred[y0:y1, x0:x1] = 2
        write_png(tmp_path / "pred" / f"{case_id}.png", pred)
    if kind == "ok":
        result = _score(tmp_path / "pred", c["root"], tmp_path / "score")
        assert result["fractured"] == 4 and result["fracture"]["dice_pos"]["value"] == 1.0
        return
    with pytest.raises((DataError, InputError)) as err:
        _score(tmp_path / "pred", c["root"], tmp_path / "score")
    assert_one_line_naming(str(err.value), c["coco"])
    assert words in str(err.value) and (c["case"] is None or f"film {c['case']}" in str(err.value))


def _png(array, mode=None) -> bytes:
    import io

    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def _bad_predictions() -> dict[str, tuple[bytes, str | None]]:
    """Prediction files for the film 'good' (32 x 48): their bytes, and the words of the refusal (None: scored)."""
    label = _bone_only(FILM_H, FILM_W)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 3, (FILM_H, FILM_W)).astype(np.uint8)  # incompressible: truncation cuts rows
    return {
        "zero_byte": (b"", "file is empty"),
        "text": (b"this is a text file\n", "not an image file"),
        "rgb": (_png(np.dstack([label] * 3), "RGB"), "must have one channel"),
        "rgba": (_png(np.dstack([label] * 4), "RGBA"), "must have one channel"),
        "truncated": (_png(noisy)[: len(_png(noisy)) * 6 // 10], "truncated"),
        "value_7": (_png(np.where(label == 1, 7, 0).astype(np.uint8)), "not within {0, 1, 2}"),
        "8x8": (_png(_bone_only(8, 8)), "never resized"),
        "deep16": (_png(label.astype(np.uint16)), None),  # a 16-bit label map of 0/1: fine
    }


@pytest.mark.parametrize("name", sorted(_bad_predictions()))
def test_score_bad_prediction_files(corpus, tmp_path, name, capsys):
    data, words = _bad_predictions()[name]
    pred = tmp_path / "pred" / "good.png"
    pred.parent.mkdir()
    pred.write_bytes(data)
    args = ["score", str(pred.parent), "--truth", str(corpus["_atlas"]["root"]), "--out", str(tmp_path / "score"),
            "--pred-kind", "labels", "--bootstrap", "10"]
    if words is None:
        assert main(args) == 0
        return
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("monaifrac score: error: ") and words in err
    assert_one_line_naming(err, pred)


# ----------------------------------------------------------------------------- inference's choice of films


INFER_REFUSED = {"zero_byte.jpg": "file is empty", "text.jpg": "not an image file",
                 "singleton3d.nii.gz": "not a 2D film (array of shape (48, 32, 1)); save it as a 2D",
                 "nan.nii.gz": "15 non-finite pixel(s)"}


def test_inference_takes_every_good_film_and_reports_the_bad(corpus, tmp_path):
    folder = corpus["_films"]
    films = collect_films(folder, tmp_path)
    report = json.loads((tmp_path / REPORT_NAME).read_text(encoding="utf-8"))
    rejected = {Path(r["file"]).name: r["problem"] for r in report["rejected"]}
    assert set(rejected) == set(INFER_REFUSED)
    for name, words in INFER_REFUSED.items():
        assert words in rejected[name] and "\n" not in rejected[name]
    taken = {Path(f["image"]).name for f in films}
    assert taken == {p.name for p in folder.iterdir()} - set(INFER_REFUSED)
    assert {"film with spaces.jpg", "röntgen_çatlak_骨.jpg", "mono1.dcm", "line_1x4000.png"} <= taken


def test_the_script_writes_the_corpus_and_its_manifest(tmp_path, capsys):
    import importlib.util

    from tests.bad_inputs import DESCRIPTION

    path = Path(__file__).resolve().parents[2] / "scripts" / "make_bad_inputs.py"
    spec = importlib.util.spec_from_file_location("make_bad_inputs", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(tmp_path / "bad"), "--no-huge"]) == 0
    manifest = json.loads((tmp_path / "bad" / "manifest.json").read_text(encoding="utf-8"))
    assert {k for k in manifest if not k.startswith("_")} == set(DESCRIPTION) - {"huge_6000"}
    assert all(manifest[k]["what"] for k in DESCRIPTION if k != "huge_6000")
    assert (tmp_path / "bad" / "films" / "röntgen_çatlak_骨.jpg").is_file()
