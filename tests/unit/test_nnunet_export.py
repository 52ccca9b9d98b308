"""``monaifrac export-nnunet``: a prepared folder → raw nnU-Net v2 dataset.

Checked against nnU-Net's documented format (documentation/dataset_format.md of MIC-DKFZ/nnUNet):
``DatasetXXX_Name/{imagesTr,labelsTr,imagesTs}``, ``<case>_0000.png`` images and ``<case>.png``
labels of the same size, ``dataset.json`` with ``channel_names``/``labels``/``numTraining``/
``file_ending``, and a ``splits_final.json`` list of ``{"train", "val"}``; pixels against the
prepared NIfTI files and the source films; every bad input and interruption leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FILM_H, FILM_W, FRACTURE_BOXES, hidden_or_temp_files, make_mini_fracatlas
from monaifrac.cli import main
from monaifrac.data import nnunet
from monaifrac.data.cases import DataError
from monaifrac.data.nnunet import export_nnunet, film_png_array
from monaifrac.data.prepare import prepare
from monaifrac.datalist import load_split
from monaifrac.io import InputError, from_monai_frame, read_label_map, read_nifti, read_raster, to_monai_frame, \
    write_json, write_nifti

DS = "Dataset501_Fracture"
FOLDS = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The mini FracAtlas of conftest, prepared with 3 folds: 6 training, 3 validation, 3 test films."""
    root = tmp_path_factory.mktemp("nnunet")
    atlas = make_mini_fracatlas(root / "fracatlas")
    prepare(atlas.root, root / "prepared", folds=FOLDS, workers=1, progress=False)
    return atlas, root / "prepared"


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    atlas, prep = prepared
    raw = tmp_path_factory.mktemp("nnUNet_raw")
    summary = export_nnunet(prep, raw, dataset_id=501)
    return atlas, prep, raw, summary


def datalist(prep: Path) -> dict:
    return json.loads((prep / "datalist.json").read_text())


def ids(prep: Path, section: str) -> list[str]:
    return sorted(d["id"] for d in datalist(prep)[section])


def copy_prepared(prep: Path, dest: Path) -> Path:
    shutil.copytree(prep, dest)
    return dest


def nothing_left(out: Path) -> bool:
    """No dataset folder and no hidden temporary file or folder in ``out``."""
    return not out.exists() or (not list(out.glob("Dataset*")) and not hidden_or_temp_files(out))


# ----------------------------------------------------------------------------- layout


def test_layout_follows_the_nnunet_v2_dataset_format(exported):
    _atlas, prep, raw, summary = exported
    ds = raw / DS
    assert summary["dataset_dir"] == str(ds) and summary["dataset_name"] == DS
    assert sorted(p.name for p in raw.iterdir()) == [DS]  # nothing else left beside it
    assert sorted(p.name for p in ds.iterdir()) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr",
                                                    "splits_final.json"]
    train_ids = sorted(ids(prep, "training") + ids(prep, "validation"))
    assert sorted(p.name for p in (ds / "imagesTr").iterdir()) == [f"{i}_0000.png" for i in train_ids]
    assert sorted(p.name for p in (ds / "labelsTr").iterdir()) == [f"{i}.png" for i in train_ids]
    assert sorted(p.name for p in (ds / "imagesTs").iterdir()) == [f"{i}_0000.png" for i in ids(prep, "test")]

    meta = json.loads((ds / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "zscore"}
    assert meta["labels"] == {"background": 0, "bone": 1, "fracture": 2}
    assert meta["file_ending"] == ".png"
    assert meta["numTraining"] == len(list((ds / "imagesTr").iterdir())) == 9 == summary["training"]
    assert meta["overwrite_image_reader_writer"] == "NaturalImage2DIO"
    assert "dataset" not in meta  # that key would make nnU-Net ignore imagesTr/labelsTr
    assert meta["monaifrac"]["prepared_dir"] == str(prep.resolve())
    assert summary["test"] == 3 and summary["png_bits"] == {"8": 12, "16": 0} and summary["rescaled"] == []


def test_every_image_has_a_label_of_its_size_with_values_0_1_2(exported):
    _atlas, _prep, raw, _summary = exported
    for image_path in sorted((raw / DS / "imagesTr").iterdir()):
        label_path = raw / DS / "labelsTr" / image_path.name.replace("_0000.png", ".png")
        with Image.open(image_path) as img, Image.open(label_path) as lab:
            assert img.format == lab.format == "PNG"
            assert img.mode == "L" and lab.mode == "L"  # one grey channel; uint8 labels
            assert img.size == lab.size == (FILM_W, FILM_H)
        assert set(np.unique(read_label_map(label_path)).tolist()) <= {0, 1, 2}


# ----------------------------------------------------------------------------- pixels


def test_png_is_the_prepared_film_in_its_displayed_frame(exported):
    atlas, prep, raw, _summary = exported
    for section, folder in (("training", "imagesTr"), ("validation", "imagesTr"), ("test", "imagesTs")):
        for item in datalist(prep)[section]:
            png, _ = read_raster(raw / DS / folder / f"{item['id']}_0000.png")
            assert png.dtype == np.uint8 and png.shape == (FILM_H, FILM_W)  # rows = height
            np.testing.assert_array_equal(png, from_monai_frame(read_nifti(prep / item["image"])))
            # the source film as decoded and displayed (EXIF applied), and close to what was drawn
            source, _ = read_raster(atlas.image_path(item["id"]))
            np.testing.assert_array_equal(png, source)
            assert np.abs(png.astype(int) - atlas.displayed[item["id"]]).max() <= 12  # JPEG q95 noise only


def test_exif_rotated_film_and_its_fracture_are_exported_as_displayed(exported):
    atlas, _prep, raw, _summary = exported
    stored = np.asarray(Image.open(atlas.image_path("IMG0000001")).convert("L"))
    assert stored.shape == (FILM_W, FILM_H)  # stored on its side, EXIF 8
    png, _ = read_raster(raw / DS / "imagesTr" / "IMG0000001_0000.png")
    np.testing.assert_array_equal(png, np.rot90(stored, 1))
    label = read_label_map(raw / DS / "labelsTr" / "IMG0000001.png")
    x0, y0, x1, y1 = FRACTURE_BOXES["IMG0000001"]
    rows, cols = np.nonzero(label == 2)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (y0, y1, x0, x1)
    assert rows.size == (x1 - x0) * (y1 - y0)


def test_labels_equal_the_prepared_labels(exported):
    _atlas, prep, raw, _summary = exported
    for item in datalist(prep)["training"] + datalist(prep)["validation"]:
        label = read_label_map(raw / DS / "labelsTr" / f"{item['id']}.png")
        np.testing.assert_array_equal(label, from_monai_frame(read_nifti(prep / item["label"])))
        assert (2 in label) == item["fractured"]


# ----------------------------------------------------------------------------- splits


def test_fold_0_is_the_official_split_and_fold_k_plus_1_is_monaifrac_fold_k(exported):
    _atlas, prep, raw, summary = exported
    splits = json.loads((raw / DS / "splits_final.json").read_text())
    assert isinstance(splits, list) and all(set(s) == {"train", "val"} for s in splits)
    assert len(splits) == 1 + FOLDS and [f["fold"] for f in summary["folds"]] == list(range(1 + FOLDS))
    assert splits[0] == {"train": ids(prep, "training"), "val": ids(prep, "validation")}
    for k in range(FOLDS):
        assert sorted(splits[k + 1]["train"]) == sorted(d["id"] for d in load_split(prep, "train", fold=k))
        assert sorted(splits[k + 1]["val"]) == sorted(d["id"] for d in load_split(prep, "val", fold=k))
    cases = {p.name[: -len("_0000.png")] for p in (raw / DS / "imagesTr").iterdir()}
    for s in splits:
        assert not set(s["train"]) & set(s["val"]) and set(s["train"]) | set(s["val"]) <= cases
    # every imagesTr case is validated on exactly once over all folds; no test case anywhere
    val = [c for s in splits for c in s["val"]]
    assert sorted(val) == sorted(cases)
    assert not set(ids(prep, "test")) & {c for s in splits for c in s["train"] + s["val"]}


def test_no_cross_validation_folds_without_two_folds(tmp_path):
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation"}, folds={})
    export_nnunet(prep, tmp_path / "raw", dataset_id=502, name="Tiny")
    splits = json.loads((tmp_path / "raw" / "Dataset502_Tiny" / "splits_final.json").read_text())
    assert splits == [{"train": ["a", "b"], "val": ["c"]}]


# ----------------------------------------------------------------------------- intensities


def make_prepared(folder: Path, sections: dict[str, str], films: dict[str, np.ndarray] | None = None,
                  folds: dict[str, int] | None = None) -> Path:
    """A prepared folder written by hand: ``sections`` id → datalist section; films (H, W)."""
    films = films or {}
    datalist = {"training": [], "validation": [], "test": []}
    for n, (case, section) in enumerate(sections.items()):
        film = films.get(case, np.full((5, 7), 40 + n, np.uint8))
        label = np.zeros(film.shape, np.uint8)
        label[1:3, 2:5] = 1
        write_nifti(folder / "images" / f"{case}.nii.gz", to_monai_frame(film))
        write_nifti(folder / "labels" / f"{case}.nii.gz", to_monai_frame(label))
        fold = (folds if folds is not None else {}).get(case, -1)
        datalist[section].append({"id": case, "image": f"images/{case}.nii.gz", "label": f"labels/{case}.nii.gz",
                                  "fractured": False, "body_part": "hand", "fold": fold})
    write_json(folder / "datalist.json", datalist)
    return folder


def test_film_png_array_keeps_integers_exact_and_rescales_the_rest():
    u8 = np.array([[0, 255]], np.uint8)
    assert film_png_array(u8)[0] is u8 and film_png_array(u8)[1] is False
    u16 = np.array([[0, 65535]], np.uint16)
    out, rescaled = film_png_array(u16)
    assert out.dtype == np.uint16 and not rescaled and np.array_equal(out, u16)
    out, rescaled = film_png_array(np.array([[0, 1000]], np.int32))
    assert out.dtype == np.uint16 and not rescaled and out.tolist() == [[0, 1000]]
    out, rescaled = film_png_array(np.array([[3.0, 7.0]], np.float32))  # integer-valued floats stay exact
    assert not rescaled and out.tolist() == [[3, 7]]
    out, rescaled = film_png_array(np.array([[-1024, 0, 1024]], np.int16))  # CT-like: rescaled
    assert rescaled and out.dtype == np.uint16 and out.tolist() == [[0, 32768, 65535]]
    out, rescaled = film_png_array(np.array([[0.25, 0.5]], np.float32))
    assert rescaled and out.tolist() == [[0, 65535]]
    out, rescaled = film_png_array(np.full((2, 2), -5.5))
    assert rescaled and not out.any()


def test_16_bit_and_float_films_are_exported_exactly_or_listed_as_rescaled(tmp_path):
    rng = np.random.default_rng(0)
    films = {"deep": rng.integers(0, 4096, (6, 9)).astype(np.uint16),
             "frac": rng.random((6, 9)).astype(np.float32),
             "byte": rng.integers(0, 256, (6, 9)).astype(np.uint8)}
    prep = make_prepared(tmp_path / "prep", {"deep": "training", "frac": "validation", "byte": "test"}, films)
    summary = export_nnunet(prep, tmp_path / "raw", dataset_id=503, name="Bits")
    ds = tmp_path / "raw" / "Dataset503_Bits"
    assert summary["png_bits"] == {"8": 1, "16": 2} and summary["rescaled"] == ["frac"]
    assert json.loads((ds / "dataset.json").read_text())["monaifrac"]["rescaled"] == ["frac"]
    deep, _ = read_raster(ds / "imagesTr" / "deep_0000.png")
    assert deep.dtype == np.uint16 and np.array_equal(deep, films["deep"])
    frac, _ = read_raster(ds / "imagesTr" / "frac_0000.png")
    assert frac.shape == (6, 9) and frac.min() == 0 and frac.max() == 65535
    assert np.corrcoef(frac.ravel(), films["frac"].ravel())[0, 1] > 0.9999
    byte, _ = read_raster(ds / "imagesTs" / "byte_0000.png")
    assert byte.dtype == np.uint8 and np.array_equal(byte, films["byte"])


# ----------------------------------------------------------------------------- bad input, atomicity


def test_missing_datalist_is_one_error_naming_it(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as err:
        export_nnunet(tmp_path / "empty", tmp_path / "raw", dataset_id=501)
    assert err.value.path == str((tmp_path / "empty" / "datalist.json").resolve())
    assert "monaifrac prepare" in err.value.problem
    assert not (tmp_path / "raw").exists()
    assert main(["export-nnunet", str(tmp_path / "empty"), str(tmp_path / "raw"), "--id", "501"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("monaifrac export-nnunet: error: ") and "datalist.json: not found" in stderr
    assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("damage, problem", [
    ("garbage_label", "cannot read NIfTI"),
    ("missing_image", "file not found"),
    ("label_values", "label values [7] outside {0, 1, 2}"),
    ("label_shape", "label is 9 x 5 (W x H) but its image is 7 x 5"),
])
def test_bad_file_is_named_and_no_half_written_dataset_is_left(tmp_path, damage, problem):
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation", "d": "test"})
    bad = {"garbage_label": prep / "labels" / "b.nii.gz", "missing_image": prep / "images" / "c.nii.gz",
           "label_values": prep / "labels" / "c.nii.gz", "label_shape": prep / "labels" / "b.nii.gz"}[damage]
    if damage == "garbage_label":
        bad.write_bytes(b"not a nifti file at all")
    elif damage == "missing_image":
        bad.unlink()
    elif damage == "label_values":
        write_nifti(bad, to_monai_frame(np.full((5, 7), 7, np.uint8)))
    else:
        write_nifti(bad, to_monai_frame(np.zeros((5, 9), np.uint8)))
    with pytest.raises(InputError) as err:
        export_nnunet(prep, tmp_path / "raw", dataset_id=501)
    assert Path(err.value.path).resolve() == bad.resolve()
    assert problem in err.value.problem
    assert not (tmp_path / "raw").exists()  # the output folder it created is removed again


@pytest.mark.parametrize("edit, problem", [
    (lambda d: d.pop("training"), "has no 'training' list"),
    (lambda d: d["training"][0].pop("label"), "item 0 of 'training' has no 'label'"),
    (lambda d: d["test"].append(dict(d["training"][0])), "id a appears twice"),
    (lambda d: d.update(validation=[]), "'validation' is empty"),
    (lambda d: d["training"][1].update(fold=2), "training folds [0, 2] are not 0..1"),
    (lambda d: d["training"][0].update(id="../x"), "id '../x' cannot name an nnU-Net file"),
])
def test_bad_datalist_is_one_error_naming_it(tmp_path, edit, problem):
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation"},
                         folds={"a": 0, "b": 1})
    data = json.loads((prep / "datalist.json").read_text())
    edit(data)
    (prep / "datalist.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        export_nnunet(prep, tmp_path / "raw", dataset_id=501)
    assert err.value.path == str((prep / "datalist.json").resolve())
    assert problem in err.value.problem
    assert nothing_left(tmp_path / "raw")


def test_not_json_datalist(tmp_path):
    (tmp_path / "prep").mkdir()
    (tmp_path / "prep" / "datalist.json").write_text('{"training": [')
    with pytest.raises(InputError, match="cannot read the datalist"):
        export_nnunet(tmp_path / "prep", tmp_path / "raw", dataset_id=501)


@pytest.mark.parametrize("dataset_id, name", [(0, "Fracture"), (1000, "Fracture"), (501, "Frac ture"), (501, "")])
def test_bad_id_or_name(tmp_path, dataset_id, name):
    with pytest.raises(DataError, match="nnU-Net dataset"):
        export_nnunet(tmp_path, tmp_path / "raw", dataset_id=dataset_id, name=name)


def test_interrupted_export_leaves_nothing_and_keeps_an_earlier_export(tmp_path, monkeypatch):
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation", "d": "test"})
    raw = tmp_path / "raw"
    calls = {"n": 0}
    real = nnunet.write_png

    def failing(path, array):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device", str(path))
        real(path, array)

    monkeypatch.setattr(nnunet, "write_png", failing)
    with pytest.raises(OSError, match="No space left"):
        export_nnunet(prep, raw, dataset_id=501)
    assert nothing_left(raw)
    # an earlier, complete export stays as it was when a re-export fails
    monkeypatch.setattr(nnunet, "write_png", real)
    export_nnunet(prep, raw, dataset_id=501)
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    calls["n"] = 0
    monkeypatch.setattr(nnunet, "write_png", failing)
    with pytest.raises(OSError):
        export_nnunet(prep, raw, dataset_id=501)
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before


def test_export_again_replaces_its_own_earlier_export(tmp_path):
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation"})
    raw = tmp_path / "raw"
    assert export_nnunet(prep, raw, dataset_id=501)["replaced"] is False
    (raw / DS / "imagesTr" / "stale_0000.png").write_bytes(b"")
    summary = export_nnunet(prep, raw, dataset_id=501)
    assert summary["replaced"] is True
    assert sorted(p.name for p in (raw / DS / "imagesTr").iterdir()) == ["a_0000.png", "b_0000.png", "c_0000.png"]
    assert sorted(p.name for p in raw.iterdir()) == [DS]


def test_out_holding_a_different_dataset_is_an_error_and_left_untouched(tmp_path, prepared):
    _atlas, other_prep = prepared
    prep = make_prepared(tmp_path / "prep", {"a": "training", "b": "training", "c": "validation"})
    raw = tmp_path / "raw"
    # the same folder name, exported from another prepared folder
    export_nnunet(other_prep, raw, dataset_id=501)
    before = sorted(p.relative_to(raw) for p in raw.rglob("*"))
    with pytest.raises(InputError) as err:
        export_nnunet(prep, raw, dataset_id=501)
    assert err.value.path == str(raw / DS) and "already holds an export of" in err.value.problem
    assert sorted(p.relative_to(raw) for p in raw.rglob("*")) == before
    # a dataset written by someone else under that name
    shutil.rmtree(raw / DS)
    (raw / DS / "imagesTr").mkdir(parents=True)
    (raw / DS / "dataset.json").write_text('{"labels": {"background": 0}}')
    with pytest.raises(InputError, match="did not write"):
        export_nnunet(prep, raw, dataset_id=501)
    assert (raw / DS / "dataset.json").read_text() == '{"labels": {"background": 0}}'
    # another dataset with the same id: nnU-Net could not tell them apart
    shutil.rmtree(raw / DS)
    (raw / "Dataset501_Other").mkdir()
    with pytest.raises(InputError) as err:
        export_nnunet(prep, raw, dataset_id=501)
    assert err.value.path == str(raw / "Dataset501_Other") and "id 501" in err.value.problem
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset501_Other"]


def test_cli_exports_and_says_where_splits_final_goes(prepared, tmp_path, capsys):
    _atlas, prep = prepared
    assert main(["export-nnunet", str(prep), str(tmp_path / "raw"), "--id", "501"]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads(stdout.split("\nwrote ")[0])
    assert summary["training"] == 9 and summary["test"] == 3
    assert "$nnUNet_preprocessed/Dataset501_Fracture/" in stdout
    assert str(tmp_path / "raw" / DS / "splits_final.json") in stdout
    assert main(["export-nnunet", str(prep), str(tmp_path / "raw2"), "--id", "7", "--name", "Xray"]) == 0
    assert (tmp_path / "raw2" / "Dataset007_Xray" / "dataset.json").is_file()
    assert main(["export-nnunet", str(prep), str(tmp_path / "raw3"), "--id", "1000"]) == 2
    assert "1..999" in capsys.readouterr().err


# ----------------------------------------------------------------------------- nnU-Net itself


@pytest.mark.slow
def test_nnunet_dataset_integrity_check_passes(exported):
    pytest.importorskip("nnunetv2")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    _atlas, _prep, raw, _summary = exported
    dataset = get_filenames_of_train_images_and_targets(str(raw / DS))
    assert len(dataset) == 9 and all(len(v["images"]) == 1 for v in dataset.values())
    verify_dataset_integrity(str(raw / DS), num_processes=1)  # raises on any problem
