"""``scripts/train_shipped.sh``: the shipped model's recipe, end to end, on synthetic films (1 epoch)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow


def test_recipe_prepares_trains_evaluates_scores_and_reports(tmp_path):
    from monaifrac.data.synth import make_synthetic_fracatlas

    make_synthetic_fracatlas(tmp_path / "atlas", n=12, seed=1)
    run = tmp_path / "run"
    env = dict(os.environ, EPOCHS="1", WORKERS="0")
    proc = subprocess.run(["bash", "scripts/train_shipped.sh", str(tmp_path / "atlas"), str(run)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert (run / "bundle" / "models" / "model.pt").is_file()
    evaluated = json.loads((run / "bundle" / "eval" / "metrics.json").read_text())
    scored = json.loads((run / "valid-score" / "metrics.json").read_text())
    validation = json.loads((run / "prepared" / "datalist.json").read_text())["validation"]
    assert evaluated["films"] == scored["films"] == len(validation)
    # the bundle's evaluator and the scorer agree on the same weights and films
    assert scored["fracture"]["dice_pos"]["value"] == pytest.approx(evaluated["metrics"]["val_fracture_dice_pos"],
                                                                    abs=1e-5)
    assert (run / "valid-report.html").stat().st_size > 0
    assert "report:  " + str(run / "valid-report.html") in proc.stdout
