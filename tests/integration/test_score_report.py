"""``monaifrac score`` and ``monaifrac report`` on what ``inference.json`` writes, and the page in a browser.

The trained bundle of ``conftest.trained`` (2 epochs on 16 synthetic films) labels the
synthetic FracAtlas folder; the scorer reads those label maps and ``predictions.csv`` against
the same folder, and must agree with the bundle's own evaluator on the same films.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.integration.conftest import (EVALUATE_JSON, INFERENCE_JSON, TRAIN_JSON, bundle_cmd, check_rc, find_chromium,
                                       run_cmd)

pytestmark = pytest.mark.slow


def monaifrac_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "monaifrac", *args]


def infer(trained, films, out_dir):
    check_rc(run_cmd(bundle_cmd("run", "--config_file", INFERENCE_JSON, "--input_files", json.dumps(films),
                                "--output_dir", str(out_dir), "--bundle_root", str(trained.bundle_root),
                                "--patch_size", "[64,64]")))
    return out_dir


@pytest.fixture(scope="module")
def scored(trained, tmp_path_factory):
    """Inference over every synthetic film, then score and report through the command line."""
    root = tmp_path_factory.mktemp("scored")
    films = sorted(str(p) for p in (trained.prepared.atlas / "images").rglob("*.jpg"))
    preds = infer(trained, films, root / "preds")
    score_out = check_rc(run_cmd(monaifrac_cmd("score", str(preds), "--truth", str(trained.prepared.atlas),
                                               "--out", str(root / "score"), "--bootstrap", "200")))
    report_out = check_rc(run_cmd(monaifrac_cmd("report", str(root / "score"), "--out", str(root / "report.html"))))
    return root, films, score_out + report_out


def test_score_files(scored):
    root, films, log = scored
    result = json.loads((root / "score" / "metrics.json").read_text())
    with (root / "score" / "per_film.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert result["films"] == len(rows) == len(films)
    assert result["fractured"] == sum(r["truth_fractured"] == "1" for r in rows) > 0
    assert result["normal"] > 0
    assert result["inputs"]["pred_kind"] == "labels"  # predictions.csv says so
    assert "roc_auc" in result["presence"]  # predictions.csv carries the scores
    assert sum(result["outcomes"].values()) == len(films)
    assert set(result["by_body_part"]) <= {"hand", "leg", "hip", "shoulder"} and result["by_body_part"]
    for r in rows:  # every prediction was scored at its film's size
        assert r["prediction"].endswith(f"{r['film']}.png")
    assert "metrics.json" in log and "report.html" in log


def test_report_is_self_contained(scored):
    root, films, _ = scored
    page = (root / "report.html").read_text()
    assert page.count('class="card ') == len(films)
    assert not re.search(r'(src|href)\s*=\s*"?(https?:)?//', page)  # nothing fetched at view time
    assert "<link" not in page and "@import" not in page
    assert page.count("data:image/jpeg;base64,") >= len(films)
    # worst first: outcomes appear in the order miss, false alarm, hit, true negative
    order = re.findall(r'data-outcome=(\w+)', page)
    ranks = [("miss", "false_alarm", "hit", "true_negative").index(o) for o in order]
    assert ranks == sorted(ranks)


def test_score_agrees_with_bundle_evaluate(trained, tmp_path):
    """Same weights, same validation films: evaluate.json and score give the same dice_pos,
    pooled Dice and HD95 (the scorer re-rasterises the polygons from the FracAtlas folder)."""
    items = trained.prepared.section("validation")
    bundle_root = tmp_path / "bundle"
    (bundle_root / "models").mkdir(parents=True)
    shutil.copy(trained.bundle_root / "models" / "model.pt", bundle_root / "models" / "model.pt")
    check_rc(run_cmd(bundle_cmd("run", "--config_file", f"['{TRAIN_JSON}','{EVALUATE_JSON}']",
                                "--dataset_dir", str(trained.prepared.dataset_dir), "--bundle_root", str(bundle_root),
                                "--patch_size", "[64,64]", "--num_workers", "0")))
    evaluated = json.loads((bundle_root / "eval" / "metrics.json").read_text())["metrics"]

    atlas = trained.prepared.atlas / "images"
    films = sorted(str(next(atlas.rglob(f"{d['id']}.jpg"))) for d in items)
    preds = infer(trained, films, tmp_path / "preds")
    from monaifrac.evaluation.score import score_predictions

    result = score_predictions(preds, trained.prepared.atlas, tmp_path / "score", n_boot=10)
    assert result["films"] == len(items)
    assert result["fracture"]["dice_pos"]["value"] == pytest.approx(evaluated["val_fracture_dice_pos"], abs=1e-5)
    assert result["fracture"]["dice"] == pytest.approx(evaluated["val_fracture_dice"], abs=1e-5)
    assert result["fracture"]["hd95_mean"] == pytest.approx(evaluated["val_fracture_hd95"], rel=1e-5)
    assert result["presence"]["roc_auc"]["value"] == pytest.approx(evaluated["val_presence_auc"], abs=1e-6)


def test_validation_logs_presence_curve_and_body_parts(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained.bundle_root / "eval"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert "val_presence_pr" in acc.Tags()["tensors"]
    assert len(acc.Tensors("val_presence_pr")) == 2  # one curve per validation epoch
    scalars = acc.Tags()["scalars"]
    assert "val_presence_auc" in scalars
    parts = {t.rsplit("_", 1)[1] for t in scalars if t.startswith("val_fracture_dice_pos_")}
    fractured_parts = {p for d in trained.prepared.section("validation") if d["fractured"]
                       for p in d["body_part"].split("+")}
    assert parts == fractured_parts & {"hand", "leg", "hip", "shoulder"}


# --- the page in a real browser -------------------------------------------------------------------

def chromium(browser: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=180)


def colour_pixels(png, exact) -> dict[str, int]:
    """Pixels of the screenshot tinted truth-green or prediction-magenta by the overlay blend
    (0.35 grey + 0.65 colour), leaving out the pure legend swatches."""
    from PIL import Image

    rgb = np.asarray(Image.open(png).convert("RGB")).astype(int)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    plain = np.zeros(r.shape, bool)
    for colour in exact:
        plain |= (r == colour[0]) & (g == colour[1]) & (b == colour[2])
    green = (g - r > 60) & (g - b > 60) & ~plain
    magenta = (r - g > 60) & (b - g > 60) & ~plain
    return {"green": int(green.sum()), "magenta": int(magenta.sum())}


def test_report_renders_and_filters_in_chromium(scored, tmp_path):
    from monaifrac.evaluation.report import BOTH_RGB, PRED_RGB, TRUTH_RGB

    root, films, _ = scored
    browser = find_chromium()
    page = (root / "report.html").as_uri()
    shot = tmp_path / "report.png"
    proc = chromium(browser, "--window-size=1300,2400", f"--screenshot={shot}", page)
    assert shot.is_file(), proc.stderr[-2000:]
    pixels = colour_pixels(shot, [TRUTH_RGB, PRED_RGB, BOTH_RGB])
    # the thumbnails rendered: the truth of the fractured films is drawn in green
    assert pixels["green"] > 500, pixels

    result = json.loads((root / "score" / "metrics.json").read_text())
    dom = chromium(browser, "--dump-dom", page).stdout
    assert f"{len(films)} of {len(films)} films shown" in dom
    part = next(iter(result["by_body_part"]))
    filtered = chromium(browser, "--dump-dom", f"{page}#part={part}&outcome=hit,miss").stdout
    cards = re.findall(r'<div class="card (\w+)" data-outcome="\w+" data-parts="([^"]*)"( hidden="")?', filtered)
    assert len(cards) == len(films)
    visible = [(o, parts) for o, parts, hidden in cards if not hidden]
    expected = [(o, parts) for o, parts, _ in cards if o in ("hit", "miss") and part in parts.split()]
    assert visible == expected and 0 < len(visible) < len(films)
    assert f"{len(visible)} of {len(films)} films shown" in filtered
    shutil.copy(shot, root / "report.png")  # kept beside the report for a person to look at
