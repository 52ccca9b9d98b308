"""The README's main job (`bash scripts/main.sh`) end to end, into a temporary run folder.

It runs on the FracAtlas copy when present (as in CI, where ../shared sits beside the clone)
and on synthetic films otherwise; either way every stage must leave its files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_main_job_runs_every_stage(tmp_path):
    run = tmp_path / "demo"
    env = dict(os.environ, RUN_DIR=str(run))
    proc = subprocess.run(["bash", "scripts/main.sh"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    out = proc.stdout
    for step in ("1/6 prepare", "2/6 train", "3/6 evaluate", "4/6 infer", "5/6 infer", "6/6 score",
                 "where things are"):
        assert step in out
    datalist = json.loads((run / "prepared" / "datalist.json").read_text())
    assert datalist["training"] and datalist["validation"]
    assert list((run / "prepared" / "previews").glob("*.png"))
    assert (run / "bundle" / "models" / "model.pt").stat().st_size > 0
    assert list((run / "bundle" / "eval").glob("events.out.tfevents.*"))
    metrics = json.loads((run / "bundle" / "eval" / "metrics.json").read_text())["metrics"]
    assert all(np.isfinite(v) for v in metrics.values()) and "val_fracture_dice" in metrics
    report = json.loads((run / "inference" / "inference_report.json").read_text())
    assert len(report["films"]) == 4 and not report["rejected"]
    for film in report["films"]:
        stem = Path(film).stem
        label = Image.open(run / "inference" / f"{stem}.png")
        assert label.mode == "L" and set(np.unique(np.asarray(label))) <= {0, 1, 2}
        assert (run / "inference" / f"{stem}_overlay.png").exists()
    assert str(run / "bundle" / "eval") in out  # says where the TensorBoard logs are
    # the validation films were labelled, scored against the polygons, and the report written
    valid_ids = {d["id"] for d in datalist["validation"]}
    assert {p.stem for p in (run / "validation").glob("*.png") if not p.stem.endswith("_overlay")} == valid_ids
    scored = json.loads((run / "score" / "metrics.json").read_text())
    assert scored["films"] == len(valid_ids) and "roc_auc" in scored["presence"]
    page = (run / "report.html").read_text()
    assert page.count('class="card ') == len(valid_ids)
    assert f"report:             {run / 'report.html'}" in out
