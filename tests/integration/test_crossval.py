"""``monaifrac cv``: every fold trained and evaluated on its own held-out items, tabulated, resumable."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.integration.conftest import check_rc, run_cmd

pytestmark = pytest.mark.slow

SMALL = ["patch_size=[64,64]", "num_workers=0", "batch_size=2", "num_samples=2", "film_max_side=192",
         "film_long_side=192"]


def cv_cmd(*args):
    import sys

    return [sys.executable, "-m", "monaifrac", "cv", *args]


def test_cv_trains_and_tabulates_each_fold(prepared, tmp_path):
    out = tmp_path / "cv"
    log = check_rc(run_cmd(cv_cmd(str(prepared.dataset_dir), "--folds", "2", "--out", str(out), "--epochs", "1",
                                  "--set", *SMALL), timeout=600))
    with (out / "cv_folds.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["fold"] for r in rows] == ["0", "1"]
    for k, row in enumerate(rows):
        held_out = [d for d in prepared.section("training") if d["fold"] == k]
        assert int(row["films"]) == len(held_out) > 0  # evaluated on exactly its held-out items
        assert (out / f"fold_{k}" / "models" / "model.pt").is_file()
        report = json.loads((out / f"fold_{k}" / "eval" / "metrics.json").read_text())
        assert report["part"] == "val" and report["fold"] == k
        assert math.isfinite(float(row["val_fracture_dice_pos"])) and math.isfinite(float(row["val_fracture_hd95"]))
    summary = json.loads((out / "cv_summary.json").read_text())
    values = [float(r["val_fracture_dice"]) for r in rows]
    assert summary["val_fracture_dice"]["mean"] == pytest.approx(sum(values) / 2)
    assert "cv_folds.csv" in log

    # a second run keeps the folds already evaluated
    before = {k: (out / f"fold_{k}" / "eval" / "metrics.json").stat().st_mtime_ns for k in (0, 1)}
    check_rc(run_cmd(cv_cmd(str(prepared.dataset_dir), "--folds", "2", "--out", str(out), "--epochs", "1",
                            "--set", *SMALL), timeout=300))
    assert before == {k: (out / f"fold_{k}" / "eval" / "metrics.json").stat().st_mtime_ns for k in (0, 1)}


def test_cv_refuses_folds_the_datalist_lacks(prepared, tmp_path):
    proc = run_cmd(cv_cmd(str(prepared.dataset_dir), "--folds", "9", "--out", str(tmp_path / "cv")))
    assert proc.returncode == 2
    assert "datalist.json: asked for folds 0..8" in proc.stdout and "Traceback" not in proc.stdout
