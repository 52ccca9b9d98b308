"""The ``monaifrac`` command for the data stage: prepare, preview, synth; exit codes and messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from tests.conftest import FILM_H, FILM_W, FRACTURE_BOXES, hidden_or_temp_files
from monaifrac.cli import main
from monaifrac.io import from_monai_frame

REPO = Path(__file__).resolve().parents[2]


def prepare_args(root, out, *extra):
    return ["prepare", str(root), "--out", str(out), "--workers", "1", "--quiet", *extra]


def test_prepare_writes_dataset_and_prints_a_summary(mini_atlas, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prepare_args(mini_atlas.root, out, "--folds", "3", "--seed", "5")) == 0
    stdout = capsys.readouterr().out
    summary = json.loads(stdout.split("\nwrote ")[0])
    assert summary["cases_written"] == 12 and summary["fractured"] == 4 and summary["skipped"] == 0
    assert summary["sections"] == {"training": 6, "validation": 3, "test": 3}
    assert str(out / "datalist.json") in stdout
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["options"] == {"folds": 3, "seed": 5, "on_error": "fail"}
    folds = {i["fold"] for i in json.loads((out / "datalist.json").read_text())["training"]}
    assert folds == {0, 1, 2}


FATAL_DEFECTS = ["zero_byte", "not_image", "short_polygon", "missing_image", "not_in_csv", "empty_coco",
                 "malformed_coco"]


@pytest.mark.parametrize("defect", FATAL_DEFECTS)
def test_prepare_fail_exits_2_naming_the_file(atlas_factory, tmp_path, capsys, defect):
    atlas = atlas_factory(defect)
    out = tmp_path / "out"
    assert main(prepare_args(atlas.root, out, "--on-error", "fail")) == 2
    err = capsys.readouterr().err
    assert err.startswith("monaifrac prepare: error: ")
    assert str(atlas.bad_file) in err
    assert not (out / "labels" / f"{atlas.bad_id}.nii.gz").exists()
    assert not (out / "datalist.json").exists()
    if out.exists():
        assert hidden_or_temp_files(out) == []


@pytest.mark.parametrize("defect", FATAL_DEFECTS)
def test_prepare_skip(atlas_factory, tmp_path, capsys, defect):
    atlas = atlas_factory(defect)
    out = tmp_path / "out"
    code = main(prepare_args(atlas.root, out, "--on-error", "skip"))
    if defect in ("empty_coco", "malformed_coco"):  # the layout itself is broken: no policy helps
        assert code == 2 and str(atlas.coco) in capsys.readouterr().err
        return
    assert code == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert [(s["case"], s["file"]) for s in report["skipped"]] == [(atlas.bad_id, str(atlas.bad_file))]
    assert json.loads(capsys.readouterr().out.split("\nwrote ")[0])["skipped"] == 1
    assert hidden_or_temp_files(out) == []


def test_bad_option_is_an_argparse_error(mini_atlas, tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(prepare_args(mini_atlas.root, tmp_path / "o", "--on-error", "ignore"))
    assert exc.value.code == 2


def test_prepare_with_no_source(tmp_path, capsys):
    assert main(["prepare", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "nothing to prepare" in capsys.readouterr().err


@pytest.mark.slow
def test_subprocess_exit_code_and_message(atlas_factory, tmp_path):
    atlas = atlas_factory("zero_byte")
    env = dict(os.environ)
    env.pop("MONAIFRAC_FRACATLAS", None)
    proc = subprocess.run([sys.executable, "-m", "monaifrac", *prepare_args(atlas.root, tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert str(atlas.bad_file) in proc.stderr
    assert "file is empty (0 bytes)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_preview_writes_overlays_of_the_right_size(mini_atlas, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(prepare_args(mini_atlas.root, out)) == 0
    capsys.readouterr()
    assert main(["preview", str(out), "--n", "2"]) == 0
    printed = capsys.readouterr().out.split()
    # fractured cases first, in id order
    assert printed == [str(out / "previews" / "IMG0000001.png"), str(out / "previews" / "IMG0000002.png")]
    png = np.asarray(Image.open(out / "previews" / "IMG0000001.png"))
    assert png.shape == (FILM_H, FILM_W, 3) and png.dtype == np.uint8
    # fracture of IMG0000001 (rows 12-15, columns 10-17, displayed frame) is tinted red:
    # R = 0.35 grey + 0.65 * 255 > G, B = 0.35 grey + 0.65 * 40
    x0, y0, x1, y1 = FRACTURE_BOXES["IMG0000001"]
    inside = png[y0:y1, x0:x1].astype(int)
    assert (inside[..., 0] > inside[..., 1] + 100).all()
    # the air (row 0) is untinted grey
    assert (png[0, :, 0] == png[0, :, 1]).all() and (png[0, :, 1] == png[0, :, 2]).all()
    # its outline just outside the box is pure fracture red
    assert tuple(png[y0 - 1, x0 + 2]) == (255, 40, 40)

    assert main(["preview", str(out), "--ids", "IMG0000009"]) == 0
    assert np.asarray(Image.open(out / "previews" / "IMG0000009.png")).shape == (FILM_H, FILM_W, 3)
    assert hidden_or_temp_files(out) == []


def test_preview_errors(mini_atlas, tmp_path, capsys):
    assert main(["preview", str(tmp_path / "nothing")]) == 2
    assert "datalist.json: not found" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main(prepare_args(mini_atlas.root, out)) == 0
    capsys.readouterr()
    assert main(["preview", str(out), "--ids", "IMG9999999"]) == 2
    assert "no case IMG9999999" in capsys.readouterr().err


def test_synth_then_prepare(tmp_path, capsys):
    synth = tmp_path / "synth"
    assert main(["synth", str(synth), "--n", "8", "--seed", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_images"] == 8
    assert (synth / "dataset.csv").is_file()
    assert len(list((synth / "images").rglob("*.jpg"))) == 8
    out = tmp_path / "out"
    assert main(prepare_args(synth, out)) == 0
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["cases_written"] == 8 and report["skipped"] == []
    assert report["fractured"] == summary["n_fractured"] > 0
    assert report["polygons"]["total"] == report["polygons"]["nonempty"] == summary["n_polygons"]
    assert report["fractured_without_fracture_pixels"] == []
    assert report["non_fractured_with_fracture_pixels"] == []
    # films synth stored with an EXIF tag come out rotated back
    assert report["exif_rotated"] == sorted(summary["exif_ids"])
    for item in (i for items in json.loads((out / "datalist.json").read_text()).values() for i in items):
        label = from_monai_frame(np.asanyarray(nib.load(str(out / item["label"])).dataobj))
        assert set(np.unique(label)) <= {0, 1, 2}
        assert bool((label == 2).any()) == item["fractured"]


def test_variant_options_select_the_override_files():
    from monaifrac.bundle import run_options
    from monaifrac.cli import build_parser

    def configs(*argv):
        return run_options(parser.parse_args(list(argv)))[0]

    parser = build_parser()
    assert configs("evaluate", "D") == []
    assert configs("infer", "f.jpg", "--output-dir", "o", "--sliding-window", "--network", "basic_unet") == \
        ["basic_unet", "sliding_window"]
    args = parser.parse_args(["train", "D", "--set", "num_workers=0", "--sliding-window"])
    assert run_options(args) == (["sliding_window"], {"num_workers": 0})
    assert configs("train", "D", "--network", "unet", "--patches") == ["unet", "patches"]
    # cv declares the same bundle options as train (no --bundle-root: its folds are the bundle roots)
    args = parser.parse_args(["cv", "D", "--out", "o", "--network", "unet", "--patches", "--sliding-window",
                              "--set", "max_epochs=3"])
    assert run_options(args, max_epochs=None) == (["unet", "patches", "sliding_window"], {"max_epochs": 3})
    from monaifrac.bundle import REPO_BUNDLE

    assert all((REPO_BUNDLE / "configs" / f"{name}.json").is_file()
               for name in ("basic_unet", "unet", "patches", "sliding_window"))


def test_network_option_sets_the_backbone_of_the_default_network():
    from monaifrac.bundle import run_options
    from monaifrac.cli import build_parser

    def overrides(*argv, **named):
        return run_options(parser.parse_args(list(argv)), **named)[1]

    parser = build_parser()
    assert overrides("infer", "f.jpg", "--output-dir", "o") == {}
    assert overrides("train", "D", "--network", "efficientnet-lite2", max_epochs=2, fold=None) == \
        {"max_epochs": 2, "backbone": "efficientnet-lite2"}
    assert overrides("evaluate", "D", "--network", "unet") == {}
    # --set comes last and wins over what the options set
    assert overrides("train", "D", "--network", "efficientnet-lite1", "--set", "backbone=efficientnet-lite2") == \
        {"backbone": "efficientnet-lite2"}
