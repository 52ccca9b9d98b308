"""``multi_gpu_train.json`` on CPU: two processes (gloo) through torchrun, as the README shows."""

from __future__ import annotations

import csv
import sys

import pytest
import torch

from tests.integration.conftest import MULTI_GPU_JSON, SMALL, TRAIN_JSON, check_rc, run_cmd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def distributed(prepared, tmp_path_factory):
    bundle_root = tmp_path_factory.mktemp("bundle_root_ddp")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            "-m", "monai.bundle", "run", "--config_file", f"['{TRAIN_JSON}','{MULTI_GPU_JSON}']",
            "--dataset_dir", str(prepared.dataset_dir), "--bundle_root", str(bundle_root), "--max_epochs", "1",
            *SMALL]
    # faulthandler: should a rank abort in C++ again, the log shows where (see scripts/stress_ddp_shutdown.py)
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
