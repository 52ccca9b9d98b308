"""``scripts/train_shipped.sh``: the shipped model's recipe, end to end, on synthetic films (2 epochs at 1x, then two
1-epoch cycles at the shipped scale); and
``scripts/evaluate_model.sh`` on an ensemble."""

import csv
import json
import os
import subprocess

import pytest
import torch

from tests.integration.conftest import REPO

pytestmark = pytest.mark.slow


def test_recipe_prepares_trains_calibrates_evaluates_scores_and_reports(tmp_path):
    from monaifrac.data.synth import make_synthetic_fracatlas

    make_synthetic_fracatlas(tmp_path / "atlas", n=16, seed=1)
    run = tmp_path / "run"
    env = dict(os.environ, EPOCHS="2", AVERAGE="2", SCALE_EPOCHS="1", SCALE_LRS="3e-4 1.5e-4", WORKERS="0",
               NORMALS="", LARGE="", SET="film_max_side=192 film_long_side=192 batch_size=2")
    cmd = ["bash", "scripts/train_shipped.sh", str(tmp_path / "atlas"), str(run)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "== train: 2 epochs from the ImageNet weights at 1x" in proc.stdout
    from monaifrac.checkpoints import average_weights

    def weights(path):
        state = torch.load(path, weights_only=True)
        return state.get("model", state)

    def same(a, b):
        return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)

    # stage 1, base: 1x whole films from ImageNet; base.pt is the mean of its last AVERAGE epochs, tensor for
    # tensor (kept by keep_checkpoints=AVERAGE)
    models = run / "train" / "models"
    epochs = sorted(p.name for p in models.glob("checkpoint_epoch=*.pt"))
    assert epochs == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"], epochs
    base = weights(run / "base.pt")
    assert same(base, average_weights([models / e for e in epochs]))
    assert not same(base, weights(models / "checkpoint_final.pt"))  # not merely the last epoch's
    # stage 2, scale: one cycle a learning rate, the first from base.pt, the next from the first's last epoch,
    # at train.json's film_scale; model.pt is the last cycle's last epoch (SCALE_AVERAGE=1)
    for start in (run / "base.pt", run / "scale1" / "models" / "checkpoint_epoch=1.pt"):
        assert f"== train: 1 epochs at train.json's film_scale from {start}" in proc.stdout
        assert f"Restored all variables from {start}" in proc.stdout
    last = run / "scale2" / "models" / "checkpoint_epoch=1.pt"
    shipped = weights(run / "model.pt")
    assert same(shipped, weights(last)) and not same(shipped, base)
    assert len(list(run.glob("model.*.int8.onnx"))) == 1  # its int8 file, for --engine onnxruntime-int8
    calibration = json.loads((run / "valid" / "calibration.json").read_text())
    assert len(calibration["presence_fusion"]) == 3
    evaluated = json.loads((run / "valid" / "eval" / "metrics.json").read_text())
    scored = json.loads((run / "valid" / "score" / "metrics.json").read_text())
    validation = json.loads((run / "prepared-all" / "datalist.json").read_text())["validation"]
    assert evaluated["films"] == scored["films"] == calibration["films"] == len(validation)
    # the bundle's evaluator and the scorer agree on the same weights and films
    assert scored["fracture"]["dice_pos"]["value"] == pytest.approx(evaluated["metrics"]["val_fracture_dice_pos"],
                                                                    abs=1e-5)
    # the calibrated fusion is what the labelled run's scores and its presence AUC come from
    assert scored["presence"]["roc_auc"]["value"] == pytest.approx(calibration["auc"]["fused"]["value"], abs=1e-6)
    assert (run / "valid" / "report.html").stat().st_size > 0
    assert "report:  " + str(run / "valid" / "report.html") in proc.stdout

    # run again: training is finished and is not run again
    again = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stdout[-5000:]
    assert "== train: finished before" in again.stdout
    assert "Epoch[1] Complete" not in again.stdout.split("== label the")[0]

    # an ensemble (weights files joined by commas): labelled with the members' probabilities averaged, scored;
    # the bundle evaluator (one network) is skipped
    ensemble = tmp_path / "ensemble"
    ens = subprocess.run(["bash", "scripts/evaluate_model.sh", f"{run / 'model.pt'},{models / epochs[0]}",
                          str(run / "prepared-all"), str(ensemble), str(tmp_path / "atlas")], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert ens.returncode == 0, ens.stdout[-5000:]
    assert "an ensemble of 2" in ens.stdout and not (ensemble / "eval").exists()

    def scores(folder):
        with (folder / "raw" / "predictions.csv").open() as f:
            return {r["film"]: float(r["fracture_score"]) for r in csv.DictReader(f)}

    alone, together = scores(run / "valid"), scores(ensemble)
    assert alone.keys() == together.keys() and len(alone) == len(validation)
    assert any(abs(alone[f] - together[f]) > 1e-4 for f in alone)  # the second member was used
    assert json.loads((ensemble / "score" / "metrics.json").read_text())["films"] == len(validation)
