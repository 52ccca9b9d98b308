"""``multi_gpu_train.json`` and ``multi_gpu_inference.json`` on CPU: two processes (gloo) through
torchrun, as the README shows."""

from __future__ import annotations

import csv
import json
import sys

import pytest
import torch

import numpy as np
from PIL import Image

from tests.conftest import draw_film, save_image
from tests.integration.conftest import INFERENCE_JSON, MULTI_GPU_JSON, SMALL, TRAIN_JSON, bundle_cmd, check_rc, run_cmd

MULTI_GPU_INFERENCE_JSON = "bundle/configs/multi_gpu_inference.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def distributed(prepared, tmp_path_factory):
    bundle_root = tmp_path_factory.mktemp("bundle_root_ddp")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            "-m", "monai.bundle", "run", "--config_file", f"['{TRAIN_JSON}','{MULTI_GPU_JSON}']",
            "--dataset_dir", str(prepared.dataset_dir), "--bundle_root", str(bundle_root), "--max_epochs", "1",
            *SMALL]
    # faulthandler: should a rank abort in C++ again, the log shows where (see monaifrac benchmark ddp-shutdown)
    log = check_rc(run_cmd(args, timeout=240, env={"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}))
    return bundle_root, log


def test_two_ranks_train_and_save_once(distributed):
    bundle_root, log = distributed
    weights = torch.load(bundle_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert weights and not any(k.startswith("module.") for k in weights)  # the network, not its DDP wrapper
    state = torch.load(bundle_root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    assert len(list((bundle_root / "eval").glob("events.out.tfevents.*"))) == 1  # rank 0 writes alone


def test_per_film_metrics_gathered_from_both_ranks(distributed, prepared):
    from monaifrac.datalist import load_split

    bundle_root, _ = distributed
    films = sorted(d["image"] for d in load_split(prepared.dataset_dir, "val"))
    assert len(films) >= 3  # odd count: the ranks hold 2 and 1 films
    for name in ("val_fracture_dice_mean_raw.csv", "val_fracture_hd95_raw.csv"):
        with (bundle_root / "eval" / name).open(newline="") as f:
            rows = [r["filename"] for r in csv.DictReader(f)]
        assert sorted(rows) == films, name  # every validation film exactly once


def test_sharded_inference_labels_every_film_exactly_once(trained, tmp_path):
    films = tmp_path / "films"
    for i, (h, w) in enumerate([(96, 80), (80, 96), (64, 64), (100, 72), (72, 100)]):  # odd count: ranks get 3 + 2
        save_image(films / f"film_{i}.png", draw_film(h, w, shade=10 * i))
    (films / "broken.jpg").write_text("not a film")
    common = ["--input_dir", str(films), "--bundle_root", str(trained.bundle_root), "--patch_size", "[64,64]"]
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    check_rc(run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--output_dir", str(single), *common)))
    check_rc(run_cmd([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
                      "--nproc_per_node=2", "-m", "monai.bundle", "run", "--config_file",
                      f"['{INFERENCE_JSON}','{MULTI_GPU_INFERENCE_JSON}']", "--output_dir", str(sharded), *common],
                     timeout=240, env={"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}))

    names = sorted(p.name for p in sharded.glob("film_*.png") if not p.name.endswith("_overlay.png"))
    assert names == [f"film_{i}.png" for i in range(5)]
    for name in names:  # the same label maps as one process writes
        np.testing.assert_array_equal(np.asarray(Image.open(sharded / name)), np.asarray(Image.open(single / name)))
    with (sharded / "predictions.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    labelled = [r["film"] for r in rows]
    assert sorted(labelled) == sorted(str(films / f"film_{i}.png") for i in range(5))  # each film once, no duplicate
    with (single / "predictions.csv").open(newline="") as f:
        assert [r["fracture_score"] for r in csv.DictReader(f)] == [r["fracture_score"] for r in rows]
    report = json.loads((sharded / "inference_report.json").read_text())
    assert [r["file"] for r in report["rejected"]] == [str(films / "broken.jpg")]
