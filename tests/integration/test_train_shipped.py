"""``scripts/train_shipped.sh``: the shipped model's recipe, end to end, on synthetic films (2 epochs); and
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
    env = dict(os.environ, EPOCHS="2", WORKERS="0", NORMALS="",
               SET="film_max_side=192 film_long_side=192 batch_size=2")
    cmd = ["bash", "scripts/train_shipped.sh", str(tmp_path / "atlas"), str(run)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=1200)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert "== train: 2 epochs from the ImageNet weights" in proc.stdout
    assert (run / "train" / "models" / "checkpoint_final.pt").is_file() and (run / "model.pt").is_file()
    # the shipped weights are the mean of the schedule's last AVERAGE (default 14) epochs: here both, kept
    # by keep_checkpoints=AVERAGE, tensor for tensor
    from monaifrac.checkpoints import average_weights

    models = run / "train" / "models"
    epochs = sorted(p.name for p in models.glob("checkpoint_epoch=*.pt"))
    assert epochs == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"], epochs
    mean = average_weights([models / e for e in epochs])
    shipped = torch.load(run / "model.pt", weights_only=True)
    assert set(shipped) == set(mean) and all(torch.equal(shipped[k], mean[k]) for k in mean)
    assert len(list(run.glob("model.*.int8.onnx"))) == 1  # its int8 file, for --engine onnxruntime-int8
    final = torch.load(models / "checkpoint_final.pt", weights_only=True)["model"]
    assert not all(torch.equal(shipped[k], final[k]) for k in final)  # not merely the last epoch's
    calibration = json.loads((run / "valid" / "calibration.json").read_text())
    assert len(calibration["presence_fusion"]) == 3
    evaluated = json.loads((run / "valid" / "eval" / "metrics.json").read_text())
    scored = json.loads((run / "valid" / "score" / "metrics.json").read_text())
    validation = json.loads((run / "prepared" / "datalist.json").read_text())["validation"]
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
                          str(run / "prepared"), str(ensemble), str(tmp_path / "atlas")], cwd=REPO, env=env,
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
