"""``scripts/train_shipped.sh``: the shipped model's three-step recipe, end to end, on synthetic films (1 epoch each)."""

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
    env = dict(os.environ, STEP1_EPOCHS="1", STEP2_EPOCHS="1", STEP3_EPOCHS="1", WORKERS="0")
    cmd = ["bash", "scripts/train_shipped.sh", str(tmp_path / "atlas"), str(run)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:]
    for step in ("step1", "step2", "step3"):
        assert (run / step / "models" / "model.pt").is_file(), step
    # step 1 from scratch; step 2 adversarial from step 1's best weights; step 3 from step 2's, on 384² patches
    assert "step1: 1 epochs (supervised) from scratch" in proc.stdout
    assert f"step2: 1 epochs (gan) from {run}/step1/models/model.pt" in proc.stdout
    assert f"AdversarialTrainer - INFO - Restored all variables from {run}/step1/models/model.pt" in proc.stdout
    assert f"SupervisedTrainer - INFO - Restored all variables from {run}/step2/models/model.pt" in proc.stdout
    assert "> patch_size: [384, 384]" in proc.stdout
    evaluated = json.loads((run / "step3" / "eval" / "metrics.json").read_text())
    scored = json.loads((run / "valid-score" / "metrics.json").read_text())
    validation = json.loads((run / "prepared" / "datalist.json").read_text())["validation"]
    assert evaluated["films"] == scored["films"] == len(validation)
    # the bundle's evaluator and the scorer agree on the same weights and films
    assert scored["fracture"]["dice_pos"]["value"] == pytest.approx(evaluated["metrics"]["val_fracture_dice_pos"],
                                                                    abs=1e-5)
    assert (run / "valid-report.html").stat().st_size > 0
    assert "report:  " + str(run / "valid-report.html") in proc.stdout

    # run again: every step is finished, none trains again
    again = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-5000:]
    assert all(f"{step}: finished before" in again.stdout for step in ("step1", "step2", "step3"))
    assert "Epoch[1] Complete" not in again.stdout.split("== evaluate")[0]
