"""monaifrac.data.check: the dataset integrity check (``monaifrac check``) and training's preflight."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monaifrac.data.cases import DataError
from monaifrac.data.check import check_dataset, preflight
from monaifrac.io import write_nifti


@pytest.fixture
def prepared(tmp_path):
    from monaifrac.data.prepare import prepare
    from monaifrac.data.synth import make_synthetic_fracatlas

    make_synthetic_fracatlas(tmp_path / "atlas", n=8, seed=0)
    prepare(tmp_path / "atlas", tmp_path / "prep", workers=1, progress=False)
    return tmp_path / "prep"


def items(prep):
    datalist = json.loads((prep / "datalist.json").read_text())
    return datalist, [d for section in datalist.values() for d in section]


def test_a_clean_prepared_folder_passes(prepared):
    result = check_dataset(prepared)
    assert result["ok"] and result["problems"] == [] and result["items"] == 8


def test_every_kind_of_damage_is_named(prepared):
    datalist, all_items = items(prepared)
    fractured = [d for d in all_items if d["fractured"]]
    normal = [d for d in all_items if not d["fractured"]]
    a, b, c = fractured[:3]
    (prepared / a["label"]).unlink()  # missing file
    label = np.zeros((10, 12), np.uint8)
    label[0, 0] = 7
    write_nifti(prepared / b["label"], label)  # value 7, and a shape unlike its image's
    write_nifti(prepared / c["image"], np.full((160, 192), np.nan, np.float32).T.copy())  # NaNs
    n = normal[0]
    from monaifrac.io import read_nifti

    shape = read_nifti(prepared / n["image"]).shape
    lab = np.zeros(shape, np.uint8)
    lab[5:9, 5:9] = 2
    write_nifti(prepared / n["label"], lab)  # a "normal" film whose label has a fracture
    (prepared / normal[1]["image"]).write_bytes(b"not a nifti")  # unreadable
    write_nifti(prepared / normal[2]["image"], np.zeros((4, 5, 6), np.uint8))  # not 2D
    datalist["training"].append(dict(datalist["training"][0]))  # duplicate id
    (prepared / "datalist.json").write_text(json.dumps(datalist))

    problems = "\n".join(check_dataset(prepared)["problems"])
    assert f"{prepared / a['label']}: file not found" in problems
    assert f"{prepared / b['label']}: label values [7] outside" in problems
    assert f"{prepared / b['label']}: label shape" in problems
    assert f"{prepared / c['image']}: " in problems and "non-finite" in problems
    assert f"{prepared / n['label']}: datalist says fractured=False but the label has fracture pixels" in problems
    assert f"{prepared / normal[1]['image']}: cannot read NIfTI" in problems
    assert f"{prepared / normal[2]['image']}: not a 2D film" in problems
    assert f"id {datalist['training'][0]['id']} appears 2 times" in problems


def test_preflight_raises_before_training_and_can_be_switched_off(prepared):
    _, all_items = items(prepared)
    absolute = [{**d, "image": str(prepared / d["image"]), "label": str(prepared / d["label"])} for d in all_items]
    preflight(absolute)  # clean: nothing happens
    (prepared / all_items[0]["label"]).unlink()
    with pytest.raises(DataError, match=r"preflight found 1 problem.*file not found.*--preflight false"):
        preflight(absolute[:4], absolute[4:])
    preflight(absolute, enabled=False)


def test_missing_datalist(tmp_path):
    with pytest.raises(DataError, match="datalist.json: not found"):
        check_dataset(tmp_path)
    (tmp_path / "datalist.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        check_dataset(tmp_path)


def test_cli_exit_codes(prepared, capsys):
    from monaifrac.cli import main

    assert main(["check", str(prepared)]) == 0
    _, all_items = items(prepared)
    (prepared / all_items[0]["image"]).unlink()
    assert main(["check", str(prepared)]) == 1
    out = capsys.readouterr().out
    assert "file not found" in out and "1 problem(s)" in out
    assert main(["check", str(prepared / "nowhere")]) == 2
