"""``scripts/bench_train.py`` end to end in its smallest form, on the mini dataset, a few seconds each: a tiny UNet
on crops (unet.json + patches.json) and train.json's own recipe (PresenceFlexibleUNet, whole films) on small films."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_mini_fracatlas
from monaifrac.data.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
TINY = ["patch_size=[32,32]", "batch_size=2", "num_samples=2", "network_def#channels=[4,8]",
        "network_def#strides=[2]", "network_def#num_res_units=1"]
# train.json's recipe, films of the mini dataset (32 x 48) padded to 64 x 64, no ImageNet weights to load
SMALL_FILMS = ["film_max_side=64", "film_long_side=64", "batch_size=2", "pretrained=false"]


@pytest.fixture(scope="module")
def prepared_mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_train")
    atlas = make_mini_fracatlas(root / "fracatlas")
    prepare(atlas.root, root / "prepared", workers=1, progress=False)
    return root / "prepared"


@pytest.mark.slow
def test_bench_train_smoke(prepared_mini):
    proc = subprocess.run([sys.executable, "scripts/bench_train.py", str(prepared_mini), "--iters", "2",
                           "--warmup", "1", "--films", "2", "--num-workers", "0", "--threads", "1",
                           "--precision", "fp32", "bf16", "--rounds", "2", "--profile",
                           "--config", "bundle/configs/unet.json", "bundle/configs/patches.json", "--set", *TINY],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["samples_per_iteration"] == 4 and result["machine"]["torch_threads"] == 1
    assert (result["recipe"], result["samples_per_film"], result["sample_size"]) == ("crops", 2, [32, 32])
    for precision in ("fp32", "bf16"):
        r = result[precision]
        assert r["bundle"]["autocast_active"] is (precision == "bf16")
        assert r["bundle"]["validation_iterations"] == 0
        for kind in ("bundle", "bare"):
            assert r[kind]["samples"] == 2 * 2 * 4  # 2 rounds x 2 timed iterations x 4 crops: no warm-up
            assert r[kind]["samples_per_s"] > 0
            assert abs(sum(r[kind]["ms_per_iteration"].values()) - 1000 * r[kind]["wall_s"] / 4) < 1.0
        assert r["efficiency"] == pytest.approx(r["bundle"]["samples_per_s"] / r["bare"]["samples_per_s"], abs=2e-3)
        assert len(r["efficiency_per_round"]) == 2
        # unet.json: 3 output channels (PresenceLoss is DiceFocal alone), contiguous weights, in both runs
        assert r["bundle"]["layout"] == r["bare"]["layout"]
        assert r["bare"]["layout"]["batch_shapes"] == [[4, 1, 32, 32]]
        assert r["bare"]["layout"]["output_channels"] == [3] and r["bare"]["layout"]["loss_terms"] == ["seg"]
        assert r["bare"]["layout"]["weights"] == "contiguous"
    assert set(result["bf16_speedup"]) == {"bundle", "bare"}
    assert "cprofile profile, bundle fp32" in proc.stdout and "(goal: bundle/bare >= 0.9)" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_gpu_recipe_trains_on_a_cpu_through_the_bench(prepared_mini, tmp_path):
    """gpu_train.json (cache on the device, ThreadDataLoader, channels_last) composes with train.json and trains;
    on a machine without CUDA its device is the CPU, which is how CI checks it."""
    import torch
    from monai.bundle import ConfigParser
    from monai.data import ThreadDataLoader

    tiny = [*TINY, "cache_workers=1"]
    proc = subprocess.run([sys.executable, "scripts/bench_train.py", str(prepared_mini), "--iters", "2",
                           "--warmup", "1", "--films", "2", "--threads", "1", "--precision", "fp32",
                           "--config", "bundle/configs/unet.json", "bundle/configs/patches.json",
                           "bundle/configs/gpu_train.json", "--set", *tiny],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bundle/configs/gpu_train.json" in proc.stdout.split("configs: train.json")[1].splitlines()[0]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    bundle = result["fp32"]["bundle"]
    assert bundle["samples"] == 2 * 4 and bundle["cores_busy"]["loader_workers"] == 0
    assert bundle["layout"]["weights"] == "channels_last" and bundle["layout"] == result["fp32"]["bare"]["layout"]

    parser = ConfigParser()
    parser.read_config([str(REPO / "bundle/configs/train.json"), str(REPO / "bundle/configs/gpu_train.json")])
    parser.update({"dataset_dir": str(prepared_mini), "bundle_root": str(tmp_path / "root"), "cache_workers": 1})
    assert isinstance(parser.get_parsed_content("train#dataloader"), ThreadDataLoader)
    conv = next(m for m in parser.get_parsed_content("network").modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    device = parser.get_parsed_content("device")
    cached = parser.get_parsed_content("train#dataset")._cache
    assert cached and all(item["image"].device == device for item in cached)


@pytest.mark.slow
def test_bench_train_default_recipe_whole_films(prepared_mini):
    """train.json as it ships: PresenceFlexibleUNet (channels_last, 4 output channels), PresenceLoss, whole films
    padded to film_size drawn by FracturedAndNormalsSampler; the bare step runs the very same batch shape,
    layout and loss terms."""
    proc = subprocess.run([sys.executable, "scripts/bench_train.py", str(prepared_mini), "--iters", "2",
                           "--warmup", "1", "--films", "2", "--num-workers", "0", "--threads", "1",
                           "--precision", "fp32", "bf16", "--set", *SMALL_FILMS],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["recipe"], result["samples_per_film"], result["sample_size"]) == ("whole films", 1, [64, 64])
    assert result["batch_films"] == 2 and result["samples_per_iteration"] == 2
    # max_items 2 alternates a fractured and a normal film; the sampler takes the fractured one and one normal
    assert result["films"] == 2 and result["iterations_per_loader_pass"] == 1
    for precision in ("fp32", "bf16"):
        r = result[precision]
        assert r["bundle"]["autocast_active"] is (precision == "bf16")
        assert r["bundle"]["validation_iterations"] == 0
        for kind in ("bundle", "bare"):
            assert r[kind]["samples"] == 2 * 2  # 2 timed iterations x 2 whole films
            assert r[kind]["samples_per_s"] > 0
        assert r["efficiency"] > 0
        assert r["efficiency"] == pytest.approx(r["bundle"]["samples_per_s"] / r["bare"]["samples_per_s"], abs=2e-3)
        layout = r["bundle"]["layout"]
        assert layout == r["bare"]["layout"]
        assert layout["batch_shapes"] == [[2, 1, 64, 64]] and layout["input_strides"] == [[64 * 64, 64 * 64, 64, 1]]
        assert layout["weights"] == "channels_last"
        assert layout["output_channels"] == [4] and layout["loss_terms"] == ["presence", "seg"]
        assert f"{precision}: the bare step runs the bundle's batch 2x1x64x64" in proc.stdout
    assert "batch: 2 samples (whole films, padded to 64x64) per iteration" in proc.stdout
    assert "samples/s" in proc.stdout and "patches" not in proc.stdout and "warning" not in proc.stdout
    assert "Traceback" not in proc.stderr
