"""``python -m monai.bundle run --config_file "['bundle/configs/train.json','bundle/configs/evaluate.json']"``."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from tests.integration.conftest import EVALUATE_JSON, SMALL, TRAIN_JSON, bundle_cmd, check_rc, run_cmd

pytestmark = pytest.mark.slow

REQUIRED = ("val_fracture_dice", "val_fracture_dice_mean", "val_fracture_dice_pos", "val_fracture_iou",
            "val_fracture_hd95", "val_bone_dice", "val_bone_iou", "val_bone_hd95")
PER_FILM = ("val_fracture_dice_mean", "val_fracture_dice_pos", "val_fracture_hd95", "val_bone_dice_mean",
            "val_bone_hd95")


def val_fracture_dice(bundle_root) -> list[float]:
    """``val_fracture_dice`` of each epoch of the training run in ``bundle_root``, from TensorBoard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(bundle_root / "eval"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("val_fracture_dice")]


@pytest.fixture(scope="module")
def evaluated(trained, tmp_path_factory):
    """The trained run taken on for a third epoch that ruins the network (a fresh optimiser at learning rate
    0.5: its weights are not resumed), so that its best epoch is not its last; then ``model.pt`` evaluated
    from a bundle root of its own (the shared one stays as trained)."""
    from monaifrac.datalist import load_split

    run_root = tmp_path_factory.mktemp("three_epochs")
    for folder in ("models", "eval"):
        shutil.copytree(trained.bundle_root / folder, run_root / folder)
    check_rc(run_cmd(bundle_cmd("run", "--config_file", TRAIN_JSON, "--dataset_dir", str(trained.prepared.dataset_dir),
                                "--bundle_root", str(run_root), "--max_epochs", "3", "--resume_from",
                                str(run_root / "models" / "checkpoint_epoch=2.pt"),
                                "--train_state", "$dict(model=@network)", "--learning_rate", "0.5", *SMALL),
                     timeout=600))
    bundle_root = tmp_path_factory.mktemp("evaluated")
    (bundle_root / "models").mkdir()
    shutil.copy(run_root / "models" / "model.pt", bundle_root / "models" / "model.pt")
    log = check_rc(run_cmd(bundle_cmd("run", "--config_file", f"['{TRAIN_JSON}','{EVALUATE_JSON}']",
                                      "--dataset_dir", str(trained.prepared.dataset_dir),
                                      "--bundle_root", str(bundle_root),
                                      "--patch_size", "[64,64]", "--num_workers", "0")))
    items = load_split(trained.prepared.dataset_dir, "validation")
    return bundle_root, log, items, val_fracture_dice(run_root)


def raw_rows(path) -> dict[str, float]:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    names = [r["filename"] for r in rows]
    assert len(names) == len(set(names)), f"a film appears twice in {path}"
    return {r["filename"]: float(r["mean"]) for r in rows}


def test_metrics_json(evaluated, trained):
    bundle_root, _, items, _ = evaluated
    films = [d["image"] for d in items]
    report = json.loads((bundle_root / "eval" / "metrics.json").read_text())
    metrics = report["metrics"]
    assert set(REQUIRED) <= set(metrics), metrics
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values()), metrics
    assert report["films"] == len(films) == len(trained.prepared.section("validation"))
    assert report["part"] == "validation" and report["fold"] == -1
    assert report["model"] == str(bundle_root / "models" / "model.pt")
    for name in ("val_fracture_dice", "val_fracture_dice_mean", "val_fracture_dice_pos", "val_bone_dice"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["val_fracture_hd95"] >= 0 and metrics["val_bone_hd95"] >= 0
    assert not list((bundle_root / "eval").glob(".*"))  # written atomically: no temporary file left


def test_evaluates_the_best_checkpoint(evaluated):
    """model.pt is the epoch with the best val_fracture_dice, not the last one; evaluating it gives that value."""
    bundle_root, _, _, values = evaluated
    assert len(values) == 3 and values[-1] < max(values), values  # the run this test needs: best before last
    metrics = json.loads((bundle_root / "eval" / "metrics.json").read_text())["metrics"]
    # validation during training scales its cached films exactly as evaluation (and inference) scales the
    # files, so the two agree to TensorBoard's float32 (they agreed to 1e-3 only while the cache was float16)
    assert metrics["val_fracture_dice"] == pytest.approx(max(values), rel=1e-6)
    assert metrics["val_fracture_dice"] != pytest.approx(values[-1], rel=1e-3)


def test_per_film_csvs_agree_with_the_aggregates(evaluated):
    bundle_root, _, items, _ = evaluated
    films = [d["image"] for d in items]
    fractured = sorted(d["image"] for d in items if d["fractured"])
    assert 0 < len(fractured) < len(films)  # the synthetic validation section has both kinds
    metrics = json.loads((bundle_root / "eval" / "metrics.json").read_text())["metrics"]
    for name in PER_FILM:
        rows = raw_rows(bundle_root / "eval" / f"{name}_raw.csv")
        assert sorted(rows) == sorted(films), name
        values = np.array(list(rows.values()))
        if name.endswith("_pos"):
            # films without a fracture are left out by design (NaN in the per-film file), never averaged in
            assert sorted(d for d in films if not np.isnan(rows[d])) == fractured
            assert metrics[name] == pytest.approx(float(np.nanmean(values)), abs=1e-5)
        else:
            assert not np.isnan(values).any(), name
            assert metrics[name] == pytest.approx(float(values.mean()), rel=1e-5, abs=1e-5), name
