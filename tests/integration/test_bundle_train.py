"""``python -m monai.bundle run --config_file bundle/configs/train.json ...`` and resuming it.

The run itself is the session fixture ``trained`` (2 epochs on 16 synthetic films); the tests
read what it left in ``<bundle_root>/models`` and ``<bundle_root>/eval``.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.integration.conftest import REPO, SMALL, TRAIN_EPOCHS, TRAIN_JSON, bundle_cmd, check_rc, run_cmd

pytestmark = pytest.mark.slow

VAL_SCALARS = ("val_fracture_dice", "val_bone_dice", "val_fracture_hd95", "val_fracture_iou")


def event_accumulator(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


def val_items(trained) -> list[dict]:
    from monaifrac.datalist import load_split

    return load_split(trained.prepared.dataset_dir, "val")


def val_images(trained) -> list[str]:
    return [item["image"] for item in val_items(trained)]


def read_rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def unet_state_keys() -> set[str]:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(REPO / TRAIN_JSON))
    return set(parser.get_parsed_content("network_def").state_dict())


def test_best_model_and_full_state_checkpoint(trained):
    models = trained.bundle_root / "models"
    weights = torch.load(models / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == unet_state_keys()  # a state dict of network_def, loadable as is
    state = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    trainer = state["trainer"]
    assert trainer["iteration"] == TRAIN_EPOCHS * trainer["epoch_length"]  # trainer state at the end of epoch 2
    assert trainer["max_epochs"] == TRAIN_EPOCHS
    # the optimiser took one step per iteration: its state is the real one, not a fresh optimiser's
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {float(trainer["iteration"])}
    assert set(state["model"]) == set(weights)
    assert not list(trained.bundle_root.glob("**/*.tmp"))


def test_whole_film_training_on_synthetic_films(trained):
    """The default recipe trained whole films: each epoch visited every fractured training film and as many
    normal ones, each batch was films padded to film_size, and the weights hold the pretrained encoder's
    tensors and the presence output's."""
    state = torch.load(trained.bundle_root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    training = trained.prepared.section("training")
    fractured = sum(bool(d["fractured"]) for d in training)
    normals = min(len(training) - fractured, fractured)
    batch = int(SMALL[SMALL.index("--batch_size") + 1])
    assert state["trainer"]["epoch_length"] == -(-(fractured + normals) // batch)
    weights = state["model"]
    assert any(k.startswith("encoder._blocks.") and k.endswith("_depthwise_conv.weight") for k in weights)
    assert {k.split(".")[0] for k in weights} >= {"encoder", "decoder", "segmentation_head", "presence_head",
                                                  "presence_out"}
    side = SMALL[SMALL.index("--film_max_side") + 1]
    assert f"> film_max_side: {side}" in trained.log or f"> film_max_side: '{side}'" in trained.log
    # validation reported both presence figures: the mask's and the presence output's
    assert "val_presence_auc" in trained.log and "val_presence_head_auc" in trained.log


def test_tensorboard_scalars(trained):
    acc = event_accumulator(trained.bundle_root / "eval")
    scalars = set(acc.Tags()["scalars"])
    assert {"train_loss", "lr", *VAL_SCALARS} <= scalars, scalars
    for tag in VAL_SCALARS:
        events = acc.Scalars(tag)
        assert [e.step for e in events] == list(range(1, TRAIN_EPOCHS + 1)), tag
        assert all(np.isfinite(e.value) for e in events), tag
    assert [e.step for e in acc.Scalars("lr")] == list(range(1, TRAIN_EPOCHS + 1))
    assert all(0 <= e.value <= 1 for e in acc.Scalars("val_fracture_dice"))
    losses = acc.Scalars("train_loss")
    assert len(losses) >= TRAIN_EPOCHS and all(np.isfinite(e.value) and e.value > 0 for e in losses)


def test_tensorboard_overlay_is_truth_and_prediction_of_the_first_validation_film(trained):
    from monai.bundle import ConfigParser

    from monaifrac.io import from_monai_frame
    from monaifrac.visualize import overlay

    acc = event_accumulator(trained.bundle_root / "eval")
    assert "val_overlay" in acc.Tags()["images"]
    images = acc.Images("val_overlay")
    assert [e.step for e in images] == list(range(1, TRAIN_EPOCHS + 1))

    first = val_items(trained)[0]
    parser = ConfigParser()
    parser.read_config(str(REPO / TRAIN_JSON))
    item = parser.get_parsed_content("validate#preprocessing")(dict(first))
    grey = from_monai_frame(item["image"][0].numpy())
    height, width = grey.shape
    expected_truth = overlay(grey, from_monai_frame(item["label"][0].numpy().astype(np.uint8)))
    for event in images:
        picture = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
        assert picture.shape == (height, 2 * width, 3)
        # left half: ground truth of the first validation film (exactly what overlay() draws)
        assert np.abs(picture[:, :width].astype(int) - expected_truth.astype(int)).max() <= 1
        # right half: the same film under the prediction (grey where both say background)
        prediction_half = picture[:, width:]
        grey_left = picture[:, :width]
        plain = (grey_left[..., 0] == grey_left[..., 1]) & (prediction_half[..., 0] == prediction_half[..., 1]) \
            & (grey_left[..., 1] == grey_left[..., 2]) & (prediction_half[..., 1] == prediction_half[..., 2])
        if plain.any():
            assert np.array_equal(grey_left[plain], prediction_half[plain])


def test_metrics_csv_and_per_film_details(trained):
    eval_dir = trained.bundle_root / "eval"
    metrics = dict(row for row in csv.reader((eval_dir / "metrics.csv").open()) if row)
    assert {"val_fracture_dice", "val_bone_dice", "val_fracture_hd95"} <= set(metrics)
    assert all(np.isfinite(float(v)) for v in metrics.values())
    rows = read_rows(eval_dir / "val_fracture_dice_mean_raw.csv")
    assert sorted(r["filename"] for r in rows) == sorted(val_images(trained))
    assert all(0.0 <= float(r["mean"]) <= 1.0 for r in rows)
    hd = read_rows(eval_dir / "val_fracture_hd95_raw.csv")
    assert sorted(r["filename"] for r in hd) == sorted(val_images(trained))


def test_resume_runs_only_the_remaining_epoch(trained, tmp_path):
    saved = trained.bundle_root / "models" / "checkpoint_final.pt"
    resume_from = tmp_path / "resume_from" / "checkpoint_final.pt"
    resume_from.parent.mkdir()
    shutil.copy(saved, resume_from)  # the shared bundle root stays untouched
    before = torch.load(resume_from, map_location="cpu", weights_only=False)
    bundle_root = tmp_path / "resumed"
    log = check_rc(run_cmd(bundle_cmd("run", "--config_file", TRAIN_JSON,
                                      "--dataset_dir", str(trained.prepared.dataset_dir),
                                      "--bundle_root", str(bundle_root), "--resume_from", str(resume_from),
                                      "--max_epochs", "3", *SMALL), timeout=300))
    assert re.search(r"Resuming training from epoch 2 \(iteration \d+\)", log), log[-3000:]
    completed = [int(n) for n in re.findall(r"SupervisedTrainer - INFO - Epoch\[(\d+)\] Complete", log)]
    assert completed == [3]

    after = torch.load(bundle_root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    epoch_length = after["trainer"]["epoch_length"]
    assert after["trainer"]["iteration"] == 3 * epoch_length  # trainer state epoch 3
    assert after["trainer"]["max_epochs"] == 3
    assert before["trainer"]["iteration"] == 2 * epoch_length
    steps = {float(s["step"]) for s in after["optimizer"]["state"].values()}
    assert steps == {3.0 * epoch_length}  # the optimiser continued from the saved state
    assert after["lr_scheduler"]["last_epoch"] == before["lr_scheduler"]["last_epoch"] + 1

    acc = event_accumulator(bundle_root / "eval")
    assert [e.step for e in acc.Scalars("val_fracture_dice")] == [3]
    assert [e.step for e in acc.Scalars("lr")] == [3]
    assert min(e.step for e in acc.Scalars("train_loss")) > before["trainer"]["iteration"]


def test_resume_with_more_epochs_stretches_the_cosine(trained, tmp_path):
    """2 epochs trained under a 2-epoch cosine, resumed to 4: the rest follows a 4-epoch cosine
    (what a 4-epoch run has at epoch 3 and 4), not the old curve climbing back up."""
    import math

    saved = trained.bundle_root / "models" / "checkpoint_final.pt"
    bundle_root = tmp_path / "longer"
    log = check_rc(run_cmd(bundle_cmd("run", "--config_file", TRAIN_JSON,
                                      "--dataset_dir", str(trained.prepared.dataset_dir),
                                      "--bundle_root", str(bundle_root), "--resume_from", str(saved),
                                      "--max_epochs", "4", *SMALL), timeout=300))
    assert "cosine stretched from 2 to 4 epochs" in log
    after = torch.load(bundle_root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert after["lr_scheduler"]["T_max"] == 4
    base = after["lr_scheduler"]["base_lrs"][0]
    lrs = {e.step: e.value for e in event_accumulator(bundle_root / "eval").Scalars("lr")}
    # LrScheduleHandler steps at the end of each epoch; the logged lr is the one after the step
    for epoch in (3, 4):
        assert lrs[epoch] == pytest.approx(base * (1 + math.cos(math.pi * epoch / 4)) / 2, abs=1e-9)


def test_gpu_recipe_runs_through_monai_bundle(trained, tmp_path):
    """The model card's `train.json` + `gpu_train.json` command, on this machine's device (the CPU in CI):
    one epoch from the cache on the device through a ThreadDataLoader, validation, a model.pt that loads."""
    bundle_root = tmp_path / "gpu_recipe"
    log = check_rc(run_cmd(bundle_cmd("run", "--config_file", f"['{TRAIN_JSON}','bundle/configs/gpu_train.json']",
                                      "--dataset_dir", str(trained.prepared.dataset_dir),
                                      "--bundle_root", str(bundle_root), "--max_epochs", "1", "--cache_workers", "1",
                                      *SMALL), timeout=300))
    assert re.search(r"Epoch\[1\] Complete", log), log[-3000:]
    weights = torch.load(bundle_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    shipped = torch.load(trained.bundle_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == set(shipped)  # channels_last changes strides, not the state dict's keys
    assert [e.step for e in event_accumulator(bundle_root / "eval").Scalars("val_fracture_dice")] == [1]


def test_a_non_finite_loss_stops_train_json_before_it_becomes_the_best_model(trained, tmp_path):
    """``train.json`` attaches ``StopOnNonFiniteLoss``: a loss that turns NaN (here at the first iteration, the
    loss function overridden to give one) stops the run with its message, before any validation, so the
    ``model.pt`` already in the bundle root is never replaced by the diverged weights, and no final
    checkpoint is written. Without the handler the run would validate the NaN network as its first best."""
    bundle_root = tmp_path / "root"
    (bundle_root / "models").mkdir(parents=True)
    before = (trained.bundle_root / "models" / "model.pt").read_bytes()
    (bundle_root / "models" / "model.pt").write_bytes(before)
    proc = run_cmd(bundle_cmd("run", "--config_file", TRAIN_JSON, "--dataset_dir", str(trained.prepared.dataset_dir),
                              "--bundle_root", str(bundle_root), "--max_epochs", "1", "--preflight", "false",
                              "--train#trainer#loss_function", "$lambda pred, label: @loss(pred, label) * float('nan')",
                              *SMALL), timeout=400)
    assert proc.returncode != 0, proc.stdout[-3000:]
    assert "TrainingDiverged: training loss is nan at epoch 1, iteration 1" in proc.stdout, proc.stdout[-3000:]
    assert "val_fracture_dice" not in proc.stdout  # never validated
    assert (bundle_root / "models" / "model.pt").read_bytes() == before
    assert sorted(p.name for p in (bundle_root / "models").iterdir()) == ["model.pt"]
