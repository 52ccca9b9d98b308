"""``monaifrac benchmark`` (``python -m monaifrac.benchmark``): each verb runs in its smallest form, prints its
table and writes its JSON with the machine block.

Lean on purpose: synthetic or mini films, the shipped network at a small film size or a tiny UNet, one or two
repeats. The figures are not judged (a shared CI runner), except what does not depend on the machine: the
agreement of an engine with itself is 1, and an engine perturbed on purpose agrees less.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monaifrac.data.prepare import prepare
from tests.conftest import make_mini_fracatlas

REPO = Path(__file__).resolve().parents[2]
MACHINE_KEYS = {"cpu", "logical_cpus", "cores_available", "torch_threads", "cpu_bf16", "memory_gib", "gpu", "torch",
                "monai", "onnxruntime", "commit"}
# train.json's recipe with a tiny UNet on crops (unet.json + patches.json)
TINY = ["patch_size=[32,32]", "batch_size=2", "num_samples=2", "network_def#channels=[4,8]",
        "network_def#strides=[2]", "network_def#num_res_units=1"]
# train.json's recipe, films of the mini dataset (32 x 48) padded to 64 x 64, no ImageNet weights to load
SMALL_FILMS = ["film_max_side=64", "film_long_side=64", "batch_size=2", "pretrained=false"]

pytestmark = pytest.mark.slow


def benchmark(*args: str, json_out: Path, timeout: int = 600) -> tuple[dict, str]:
    """Run ``python -m monaifrac.benchmark ARGS --json OUT``; (the JSON, stdout). Fails on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", "monaifrac.benchmark", *args, "--json", str(json_out)],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    result = json.loads(json_out.read_text())
    assert MACHINE_KEYS <= set(result["machine"]) and result["commit"] == result["machine"]["commit"]
    assert result["benchmark"] == args[0] and result["tables"]
    assert result["tables"][0]["title"] in proc.stdout and proc.stdout.startswith("machine: ")
    return result, proc.stdout


@pytest.fixture(scope="module")
def prepared_mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("benchmark")
    atlas = make_mini_fracatlas(root / "fracatlas")
    prepare(atlas.root, root / "prepared", workers=1, progress=False)
    return root / "prepared"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from monaifrac.data.synth import make_synthetic_fracatlas

    root = tmp_path_factory.mktemp("synth")
    make_synthetic_fracatlas(root, n=8, size=(96, 128))
    return root


def test_infer_measures_agreement_and_scores_against_the_truth(synth, tmp_path):
    """float32 PyTorch and a copy of it whose fracture threshold is perturbed (almost every pixel fracture): the
    copy's agreement is measured lower, the reference's own is 1; both are scored against the synthetic truth."""
    result, stdout = benchmark("infer", str(synth / "images"), "--n", "3", "--repeats", "1", "--engines", "torch",
                               "--variant", "perturbed=torch", "fracture_threshold=0.000001",
                               "--set", "film_long_side=64", "film_max_side=64", "--truth", str(synth),
                               json_out=tmp_path / "infer.json")
    engines = result["results"]["engines"]
    assert set(engines) == {"torch", "perturbed"}
    ref, perturbed = engines["torch"], engines["perturbed"]
    assert ref["agreement"]["pixel_agreement"] == 1.0 and ref["agreement"]["fracture_dice"] == 1.0
    assert ref["agreement"]["films"] == 3
    assert perturbed["agreement"]["pixel_agreement"] < 0.99
    assert perturbed["agreement"]["fracture_dice"] < ref["agreement"]["fracture_dice"]
    for r in engines.values():
        assert r["end_to_end_s"]["n"] == 2  # 3 films, the first of the run its warm-up
        assert 0 < r["model_s"]["median"] <= r["end_to_end_s"]["median"]
        assert r["films_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert 0.0 <= r["truth"]["dice_pos"] <= 1.0 and r["truth"]["films"] == 3
    assert perturbed["truth"]["hits"] >= ref["truth"]["hits"]  # fracture everywhere overlaps every fracture
    assert "agreement with torch" in stdout and "perturbed" in stdout and "dice_pos" in stdout

    # the same result as the markdown of the README's Performance tables
    proc = subprocess.run([sys.executable, "-m", "monaifrac.benchmark", "render", str(tmp_path / "infer.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| engine | model s | end to end s |" in proc.stdout and "| perturbed |" in proc.stdout
    assert result["machine"]["cpu"] in proc.stdout


def test_infer_refuses_a_folder_without_films(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "monaifrac.benchmark", "infer", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(tmp_path) in proc.stderr and "no film" in proc.stderr


def test_train_pipeline_tiny_unet_on_crops(prepared_mini, tmp_path):
    result, stdout = benchmark("train", str(prepared_mini), "--iters", "2", "--warmup", "1", "--films", "2",
                               "--num-workers", "0", "--threads", "1", "--precision", "fp32", "bf16", "--rounds", "2",
                               "--profile", "--config", "bundle/configs/unet.json", "bundle/configs/patches.json",
                               "--set", *TINY, json_out=tmp_path / "train.json")
    r = result["results"]
    assert r["samples_per_iteration"] == 4 and result["machine"]["torch_threads"] == 1
    assert (r["recipe"], r["samples_per_film"], r["sample_size"]) == ("crops", 2, [32, 32])
    for precision in ("fp32", "bf16"):
        p = r[precision]
        assert p["bundle"]["autocast_active"] is (precision == "bf16")
        assert p["bundle"]["validation_iterations"] == 0
        for kind in ("bundle", "bare"):
            assert p[kind]["samples"] == 2 * 2 * 4  # 2 rounds x 2 timed iterations x 4 crops: no warm-up
            assert p[kind]["samples_per_s"] > 0
            assert abs(sum(p[kind]["ms_per_iteration"].values()) - 1000 * p[kind]["wall_s"] / 4) < 1.0
        assert p["efficiency"] == pytest.approx(p["bundle"]["samples_per_s"] / p["bare"]["samples_per_s"], abs=2e-3)
        assert len(p["efficiency_per_round"]) == 2
        # unet.json: 3 output channels (PresenceLoss is DiceFocal alone), contiguous weights, in both runs
        assert p["bundle"]["layout"] == p["bare"]["layout"]
        assert p["bare"]["layout"]["batch_shapes"] == [[4, 1, 32, 32]]
        assert p["bare"]["layout"]["output_channels"] == [3] and p["bare"]["layout"]["loss_terms"] == ["seg"]
        assert p["bare"]["layout"]["weights"] == "contiguous"
    assert set(r["bf16_speedup"]) == {"bundle", "bare"}
    assert "cprofile profile, bundle fp32" in stdout and "goal bundle/bare >= 0.9 (fp32)" in stdout
    assert [g["goal"] for g in result["goals"]] == ["bundle/bare >= 0.9 (fp32)", "bundle/bare >= 0.9 (bf16)"]


@pytest.mark.parametrize("scale, recipe", [(1.5, "crops"), (1.0, "whole films")])
def test_train_pipeline_default_recipe(prepared_mini, tmp_path, scale, recipe):
    """train.json as it ships: PresenceFlexibleUNet (channels_last, 4 output channels), PresenceLoss, films drawn
    by FracturedAndNormalsSampler, at the shipped 1.5x one 64 x 64 crop of each enlarged film (film_crop), at
    1x the whole film padded to film_size; the bare step runs the very same batch shape, layout and loss terms."""
    result, stdout = benchmark("train", str(prepared_mini), "--iters", "2", "--warmup", "1", "--films", "2",
                               "--num-workers", "0", "--threads", "1", "--precision", "fp32", "bf16",
                               "--set", *SMALL_FILMS, f"film_scale={scale}", json_out=tmp_path / "train.json")
    r = result["results"]
    assert (r["recipe"], r["samples_per_film"], r["sample_size"]) == (recipe, 1, [64, 64])
    assert r["batch_films"] == 2 and r["samples_per_iteration"] == 2
    # max_items 2 alternates a fractured and a normal film; the sampler takes the fractured one and one normal
    assert r["films"] == 2 and r["iterations_per_loader_pass"] == 1
    for precision in ("fp32", "bf16"):
        p = r[precision]
        assert p["bundle"]["autocast_active"] is (precision == "bf16")
        for kind in ("bundle", "bare"):
            assert p[kind]["samples"] == 2 * 2  # 2 timed iterations x 2 films, one sample each
        layout = p["bundle"]["layout"]
        assert layout == p["bare"]["layout"]
        assert layout["batch_shapes"] == [[2, 1, 64, 64]] and layout["input_strides"] == [[64 * 64, 64 * 64, 64, 1]]
        assert layout["weights"] == "channels_last"
        assert layout["output_channels"] == [4] and layout["loss_terms"] == ["presence", "seg"]
        assert f"{precision}: the bare step runs the bundle's batch 2x1x64x64" in stdout
    said = "2 films x 1 crops = 2 samples (crops) of 64x64" if scale > 1 else "whole films, padded to 64x64"
    assert said in stdout and "warning" not in stdout


def test_gpu_recipe_trains_on_a_cpu_through_the_benchmark(prepared_mini, tmp_path):
    """gpu_train.json (cache on the device, ThreadDataLoader, channels_last) composes with train.json and trains;
    on a machine without CUDA its device is the CPU, which is how CI checks it."""
    import torch
    from monai.bundle import ConfigParser
    from monai.data import ThreadDataLoader

    result, _ = benchmark("train", str(prepared_mini), "--iters", "2", "--warmup", "1", "--films", "2", "--threads",
                          "1", "--precision", "fp32", "--config", "bundle/configs/unet.json",
                          "bundle/configs/patches.json", "bundle/configs/gpu_train.json",
                          "--set", *TINY, "cache_workers=1", json_out=tmp_path / "train.json")
    assert result["results"]["configs"][-1] == "bundle/configs/gpu_train.json"
    bundle = result["results"]["fp32"]["bundle"]
    assert bundle["samples"] == 2 * 4 and bundle["cores_busy"]["loader_workers"] == 0
    assert bundle["layout"]["weights"] == "channels_last"
    assert bundle["layout"] == result["results"]["fp32"]["bare"]["layout"]

    parser = ConfigParser()
    parser.read_config([str(REPO / "bundle/configs/train.json"), str(REPO / "bundle/configs/gpu_train.json")])
    parser.update({"dataset_dir": str(prepared_mini), "bundle_root": str(tmp_path / "root"), "cache_workers": 1})
    assert isinstance(parser.get_parsed_content("train#dataloader"), ThreadDataLoader)
    conv = next(m for m in parser.get_parsed_content("network").modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    device = parser.get_parsed_content("device")
    cached = parser.get_parsed_content("train#dataset")._cache
    assert cached and all(item["image"].device == device for item in cached)


def test_train_networks_and_one_epoch(prepared_mini, tmp_path):
    result, stdout = benchmark("train", "--networks", "--size", "64", "64", "--batch", "1", "--steps", "2",
                               "--only", "default layout", "--threads", "1", "--set", "pretrained=false",
                               json_out=tmp_path / "networks.json")
    variants = result["results"]["variants"]
    assert set(variants) == {"default (train.json)", "default layout"}
    assert variants["default (train.json)"]["over_default"] == 1.0
    assert variants["default layout"]["layout"] == "contiguous" and variants["default layout"]["s_per_image"]["n"] == 2
    assert "default layout" in stdout

    result, stdout = benchmark("train", str(prepared_mini), "--epoch", "--threads", "1", "--set", *TINY,
                               "num_workers=0", "cache_workers=1", "--config", "bundle/configs/unet.json",
                               "bundle/configs/patches.json", json_out=tmp_path / "epoch.json")
    r = result["results"]
    assert r["iterations"] >= 1 and r["train_films"] > 0 and r["validation_films"] > 0
    assert r["epoch_with_validation_wall_s"] >= r["validation_wall_s"] > 0
    assert "one epoch of train.json" in stdout


def test_memory_prepare_and_big_film(prepared_mini, tmp_path):
    result, stdout = benchmark("memory", str(prepared_mini), "--iters", "1", "--num-workers", "0", "--no-validation",
                               "--set", *SMALL_FILMS, "cache_workers=1", json_out=tmp_path / "memory.json")
    r = result["results"]
    assert r["compare"]["overrides"][-1] == "cache_rate=0"
    assert 0 < r["shipped"]["peak_pss_gib"] and 0 < r["compare"]["peak_pss_gib"]
    assert r["ratio"] == pytest.approx(r["shipped"]["peak_pss_gib"] / r["compare"]["peak_pss_gib"])
    assert result["goals"][0]["goal"].startswith("shipped <= 4 GiB")

    atlas = make_mini_fracatlas(tmp_path / "fracatlas")
    result, stdout = benchmark("prepare", str(atlas.root), "--limit", "4", json_out=tmp_path / "prepare.json")
    runs = result["results"]["runs"]
    assert "1" in runs and all(r["films"] == 4 and r["films_per_s"] > 0 for r in runs.values())

    result, stdout = benchmark("big-film", "--side", "256", json_out=tmp_path / "big.json")
    rows = result["results"]["rows"]
    assert rows["read"]["shape"] == [256, 256] and rows["read"]["peak_rss_mb"] > 0
    assert rows["big film 256x256"]["peak_rss_mb"] > rows["read"]["rss_after_import_mb"]
    assert rows["start-up (small film)"]["film"] == "48x32"
    assert rows["import monai"]["wall_s"]["n"] == 1
    # the command's answers, measured (not assumed) in fresh processes, 5 times each, against their goals
    assert rows["monaifrac --help"]["wall_s"]["n"] == rows["monaifrac infer MISSING"]["wall_s"]["n"] == 5
    assert 0 < rows["monaifrac --help"]["wall_s"]["median"] < rows["import monai"]["wall_s"]["median"]
    goals = {g["goal"].split(" <=")[0]: g for g in result["goals"]}
    assert goals["monaifrac --help"]["measured"] == f"{rows['monaifrac --help']['wall_s']['median']:.2f} s"
