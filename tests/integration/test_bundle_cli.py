"""The thin ``monaifrac train/evaluate/infer`` wrappers around the bundle configs.

Training and evaluation run in this process (``monaifrac.cli.main``) to save interpreter start-up
time; inference runs as a user types it, through the installed ``monaifrac`` command.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.integration.conftest import BASIC_UNET_JSON, REPO, TRAIN_JSON, check_rc, run_cmd

pytestmark = pytest.mark.slow

SET = ["--set", "patch_size=[64,64]", "num_workers=0", "film_max_side=192", "film_long_side=192"]


def network_keys(*configs: str) -> set[str]:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(REPO / c) for c in configs])
    return set(parser.get_parsed_content("network_def").state_dict())


def monaifrac_command() -> list[str]:
    script = Path(sys.executable).with_name("monaifrac")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "monaifrac"]


@pytest.fixture(scope="module")
def cli_trained(prepared, tmp_path_factory):
    """``monaifrac train D --bundle-root B3 --epochs 1 --set ...`` (UNet, the default network)."""
    from monaifrac.cli import main

    bundle_root = tmp_path_factory.mktemp("cli_bundle_root")
    rc = main(["train", str(prepared.dataset_dir), "--bundle-root", str(bundle_root), "--epochs", "1",
               *SET, "batch_size=2", "max_items=4", "val_max_items=2"])
    assert rc == 0
    return bundle_root


@pytest.fixture(autouse=True)
def _logging(restore_logging):
    yield


def test_train(cli_trained):
    weights = torch.load(cli_trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(weights) == network_keys(TRAIN_JSON)
    state = torch.load(cli_trained / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    assert state["trainer"]["max_epochs"] == 1  # --epochs reached the config
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"] == 2  # max_items=4, batch_size=2
    assert list((cli_trained / "eval").glob("events.out.tfevents.*"))


def test_train_basic_unet(prepared, tmp_path):
    from monaifrac.cli import main

    bundle_root = tmp_path / "basic"
    rc = main(["train", str(prepared.dataset_dir), "--bundle-root", str(bundle_root), "--epochs", "1",
               "--network", "basic_unet", *SET, "batch_size=2", "max_items=4", "val_max_items=1"])
    assert rc == 0
    weights = torch.load(bundle_root / "models" / "model.pt", map_location="cpu", weights_only=True)
    unet, basic = network_keys(TRAIN_JSON), network_keys(TRAIN_JSON, BASIC_UNET_JSON)
    assert unet != basic
    assert set(weights) == basic
    state = torch.load(bundle_root / "models" / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    assert state["trainer"]["epoch_length"] == 2  # max_items=4 films, batch_size 2


def test_evaluate(cli_trained, prepared):
    from monaifrac.cli import main

    rc = main(["evaluate", str(prepared.dataset_dir), "--bundle-root", str(cli_trained), *SET])
    assert rc == 0
    report = json.loads((cli_trained / "eval" / "metrics.json").read_text())
    assert report["films"] == len(prepared.section("validation"))
    assert report["model"] == str(cli_trained / "models" / "model.pt")
    assert {"val_fracture_dice", "val_fracture_dice_pos", "val_bone_dice"} <= set(report["metrics"])


def test_evaluate_missing_dataset_fails_naming_the_datalist(cli_trained, tmp_path, capsys):
    from monaifrac.cli import main

    rc = main(["evaluate", str(tmp_path / "nowhere"), "--bundle-root", str(cli_trained), *SET])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(tmp_path / "nowhere" / "datalist.json") in err and "Traceback" not in err


def test_infer_through_the_command(cli_trained, prepared, tmp_path):
    films = tmp_path / "films"
    films.mkdir()
    src = prepared.atlas / "images" / "Fractured" / "IMG0000003.jpg"  # EXIF orientation 8
    shutil.copy(src, films / "IMG0000003.jpg")
    Image.fromarray((torch.rand(70, 90) * 255).to(torch.uint8).numpy()).save(films / "plain.png")
    out = tmp_path / "Y2"
    log = check_rc(run_cmd([*monaifrac_command(), "infer", str(films), "--output-dir", str(out), "--overlays",
                            "--bundle-root", str(cli_trained), "--set", "patch_size=[64,64]"], timeout=300))
    assert "parsing config_file" not in log  # MONAI's config-trust warning: not for the package's own configs
    assert sorted(p.name for p in out.iterdir()) == ["IMG0000003.png", "IMG0000003_overlay.png",
                                                    "inference_report.json", "plain.png", "plain_overlay.png",
                                                    "predictions.csv"]
    with (out / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["film"] for r in rows] == [str(films / "IMG0000003.jpg"), str(films / "plain.png")]
    threshold = json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())["presence_threshold"]
    for r in rows:
        score = float(r["fracture_score"])
        assert 0.0 <= score <= 1.0
        assert int(r["fractured"]) == int(score >= threshold)  # inference.json's presence_threshold
        label = np.asarray(Image.open(r["label_file"]))
        assert int(r["fracture_area_px"]) == int((label == 2).sum())
    assert Image.open(out / "IMG0000003.png").size == (160, 192)  # displayed width x height
    assert Image.open(out / "plain.png").size == (90, 70)
    assert json.loads((out / "inference_report.json").read_text())["rejected"] == []


@pytest.mark.parametrize("command", ["infer", "evaluate"])
def test_missing_model_is_one_clear_line(command, prepared, tmp_path):
    """No model file: one line naming the path and the remedy, exit status 2, no traceback."""
    missing = tmp_path / "nothing" / "model.pt"
    target = str(prepared.atlas / "images" / "Fractured") if command == "infer" else str(prepared.dataset_dir)
    extra = ["--output-dir", str(tmp_path / "out")] if command == "infer" else []
    proc = run_cmd([*monaifrac_command(), command, target, *extra, "--model", str(missing),
                    "--bundle-root", str(tmp_path / "root")], timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert f"error: no model file at {missing}" in proc.stdout
    assert "Traceback" not in proc.stdout and "Failed to evaluate" not in proc.stdout


def test_missing_model_through_monai_bundle(tmp_path):
    from tests.integration.conftest import INFERENCE_JSON, bundle_cmd

    proc = run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--input_dir", str(tmp_path),
                              "--output_dir", str(tmp_path / "out"), "--model_file", str(tmp_path / "none.pt")))
    assert proc.returncode == 2
    assert f"error: no model file at {tmp_path / 'none.pt'}" in proc.stdout and "Traceback" not in proc.stdout


def test_training_stops_at_preflight_on_a_broken_dataset(prepared, tmp_path):
    """A label file gone: training stops before caching, naming the file, with exit status 2."""
    data = tmp_path / "data"
    shutil.copytree(prepared.dataset_dir, data)
    victim = data / prepared.section("training")[0]["label"]
    victim.unlink()
    proc = run_cmd([*monaifrac_command(), "train", str(data), "--bundle-root", str(tmp_path / "root"), "--epochs", "1",
                    "--set", "patch_size=[64,64]", "num_workers=0"], timeout=300)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "preflight found 1 problem" in proc.stdout and f"{victim}: file not found" in proc.stdout
    assert "Traceback" not in proc.stdout
    assert not (tmp_path / "root" / "models").exists()  # stopped before anything was trained or saved
