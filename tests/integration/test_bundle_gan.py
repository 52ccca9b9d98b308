"""``train.json`` + ``train_gan.json``: adversarial segmentation as a bundle mode (monaifrac.engines)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from tests.integration.conftest import INFERENCE_JSON, TRAIN_JSON, bundle_cmd, check_rc, run_cmd

pytestmark = pytest.mark.slow

GAN_JSON = "bundle/configs/train_gan.json"
SMALL = ["--patch_size", "[64,64]", "--num_workers", "0", "--batch_size", "2", "--num_samples", "2",
         "--film_max_side", "192", "--film_long_side", "192"]
CURVES = ("train_loss", "train_seg_loss", "train_adv_loss", "train_d_loss", "train_d_real", "train_d_fake")


@pytest.fixture(scope="module")
def gan_runs(prepared, tmp_path_factory):
    """One epoch through `monaifrac train --mode gan`, then a second through `monai.bundle run`
    resumed from the first one's final state."""
    root = tmp_path_factory.mktemp("gan")
    first = check_rc(run_cmd([sys.executable, "-m", "monaifrac", "train", str(prepared.dataset_dir), "--mode", "gan",
                              "--epochs", "1", "--bundle-root", str(root), "--set", "patch_size=[64,64]", "film_max_side=192", "film_long_side=192",
                              "num_workers=0", "batch_size=2", "num_samples=2"], timeout=600))
    state1 = torch.load(root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    (root / "models" / "checkpoint_final.pt").rename(root / "models" / "after_epoch_1.pt")
    second = check_rc(run_cmd(bundle_cmd("run", "--config_file", f"['{TRAIN_JSON}','{GAN_JSON}']",
                                         "--dataset_dir", str(prepared.dataset_dir), "--bundle_root", str(root),
                                         "--max_epochs", "2", "--resume_from",
                                         str(root / "models" / "after_epoch_1.pt"), *SMALL), timeout=600))
    state2 = torch.load(root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    return root, state1, state2, first + second


def test_checkpoint_holds_both_networks_and_optimisers(gan_runs):
    _, state1, state2, log = gan_runs
    for state in (state1, state2):
        assert {"model", "optimizer", "lr_scheduler", "discriminator", "d_optimizer", "trainer"} <= set(state)
    per_epoch = state1["trainer"]["epoch_length"]
    assert state1["trainer"]["iteration"] == per_epoch  # one epoch
    assert state2["trainer"]["iteration"] == 2 * per_epoch  # the second run resumed, and ran one more
    assert "Resuming training from epoch 1" in log


def test_both_networks_learned(gan_runs):
    _, state1, state2, _ = gan_runs
    for net in ("model", "discriminator"):
        changed = [k for k, v in state1[net].items() if v.is_floating_point() and not torch.equal(v, state2[net][k])]
        assert changed, f"{net} did not change in the second epoch"
        assert all(torch.isfinite(v).all() for v in state2[net].values() if v.is_floating_point())
    assert state2["d_optimizer"]["state"], "the discriminator's optimiser never stepped"


def test_generator_and_discriminator_curves_in_tensorboard(gan_runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, _, _, _ = gan_runs
    acc = EventAccumulator(str(root / "eval"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in CURVES:
        values = [e.value for e in acc.Scalars(tag)]
        assert values and all(math.isfinite(v) for v in values), tag
    # the total is the segmentation loss plus the weighted adversarial term (adv_weight 0.05)
    total, seg, adv = (np.array([e.value for e in acc.Scalars(t)]) for t in CURVES[:3])
    assert np.allclose(total, seg + 0.05 * adv, atol=1e-4)
    assert "val_fracture_dice" in acc.Tags()["scalars"]  # validated as in supervised training


def test_model_pt_is_the_generator_alone_and_runs_through_inference(gan_runs, prepared, tmp_path):
    root, _, state2, _ = gan_runs
    weights = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == set(state2["model"])  # a flat state dict of network_def, no discriminator
    out = tmp_path / "out"
    check_rc(run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--input_dir",
                                str(prepared.atlas / "images" / "Fractured"), "--output_dir", str(out),
                                "--bundle_root", str(root), "--patch_size", "[64,64]")))
    report = json.loads((out / "inference_report.json").read_text())
    assert report["films"] and not report["rejected"]
    assert all((out / (p.rsplit("/", 1)[1].rsplit(".", 1)[0] + ".png")).is_file() for p in report["films"])


def test_gan_under_multi_gpu_train(prepared, tmp_path):
    """Both networks in DDP (2 gloo processes): each rank ends with the same weights in both networks (their
    gradients were averaged across ranks, which saw different films), rank 0 alone saves, and both processes
    shut down cleanly."""
    from tests.integration.conftest import MULTI_GPU_JSON

    root = tmp_path / "ddp"
    # after training, each rank saves both networks' weights as its DDP wrapper holds them (`.module`: a
    # network that is not wrapped has none, and the run fails)
    per_rank = tmp_path / "per_rank.json"
    per_rank.write_text(json.dumps({"run": [
        "$@train#trainer.run()",
        "$torch.save({'model': @network.module.state_dict(), 'discriminator': @discriminator.module.state_dict()}, "
        f"'{tmp_path}/rank' + str(torch.distributed.get_rank()) + '.pt')"]}))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            "-m", "monai.bundle", "run",
            "--config_file", f"['{TRAIN_JSON}','{GAN_JSON}','{MULTI_GPU_JSON}','{per_rank}']",
            "--dataset_dir", str(prepared.dataset_dir), "--bundle_root", str(root), "--max_epochs", "1", *SMALL]
    log = check_rc(run_cmd(args, timeout=300, env={"OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}))
    for sign in ("Traceback", "terminate called", "Fatal Python error", "ChildFailedError"):
        assert sign not in log, log[-4000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", map_location="cpu", weights_only=True) for r in (0, 1)]
    for net in ("model", "discriminator"):
        # parameters only: DDP broadcasts the batch-norm statistics at each forward, then each rank updates its own
        params = [k for k, v in ranks[0][net].items() if v.is_floating_point() and "running_" not in k]
        assert params and all(torch.equal(ranks[0][net][k], ranks[1][net][k]) for k in params), net
    state = torch.load(root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    for net in ("model", "discriminator"):
        assert state[net] and not any(k.startswith("module.") for k in state[net])  # unwrapped from DDP
        assert all(torch.isfinite(v).all() for v in state[net].values() if v.is_floating_point())
        assert all(torch.equal(state[net][k], ranks[0][net][k]) for k in state[net])  # what rank 0 trained
    assert state["d_optimizer"]["state"]
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(
        ["checkpoint_epoch=1.pt", "checkpoint_final.pt", "model.pt"])  # rank 0's files, each written once
