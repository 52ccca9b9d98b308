"""``monaifrac score``: hand-computed figures on four hand-made films (monaifrac.evaluation.score).

Films are 20 x 30 (height x width); the truth is a prepared folder written here:

* A (hand, fractured): truth fracture rows 4-7 x cols 4-7 (16 px); predicted rows 4-7 x cols
  6-9 (16 px), overlapping in 8 px: Dice 2*8/32 = 0.5, IoU 8/24.
* B (leg, normal): nothing true, nothing predicted: Dice 1, HD95 0, a true negative.
* C (leg, normal): nothing true, 3 px predicted: a false alarm, Dice 0, HD95 = the diagonal.
* D (hand+shoulder, fractured): 16 px true, nothing predicted: a miss, Dice 0, HD95 = diagonal.
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from monaifrac.data.cases import DataError
from monaifrac.evaluation.score import score_predictions
from monaifrac.io import InputError, to_monai_frame, write_nifti, write_png

H, W = 20, 30
DIAG = math.sqrt(H * H + W * W)
PARTS = {"A": "hand", "B": "leg", "C": "leg", "D": "hand+shoulder"}


def truth_maps() -> dict[str, np.ndarray]:
    maps = {k: np.zeros((H, W), np.uint8) for k in "ABCD"}
    for k in maps:
        maps[k][12:16, :] = 1  # bone
    maps["A"][4:8, 4:8] = 2
    maps["D"][4:8, 10:14] = 2
    return maps


def pred_maps() -> dict[str, np.ndarray]:
    maps = {k: np.zeros((H, W), np.uint8) for k in "ABCD"}
    for k in maps:
        maps[k][12:16, :15] = 1  # half of the true bone
    maps["A"][4:8, 6:10] = 2
    maps["C"][1, 1:4] = 2
    return maps


@pytest.fixture
def truth_dir(tmp_path):
    root = tmp_path / "prepared"
    items = []
    rng = np.random.default_rng(0)
    for k, label in truth_maps().items():
        write_nifti(root / "images" / f"{k}.nii.gz", to_monai_frame(rng.integers(0, 255, (H, W), dtype=np.uint8)))
        write_nifti(root / "labels" / f"{k}.nii.gz", to_monai_frame(label))
        items.append({"id": k, "image": f"images/{k}.nii.gz", "label": f"labels/{k}.nii.gz",
                      "fractured": bool((label == 2).any()), "body_part": PARTS[k], "fold": -1})
    (root / "datalist.json").write_text(json.dumps({"training": [], "validation": items, "test": []}))
    return root


def write_preds(folder, maps, scores=None, binary=False):
    folder.mkdir(parents=True, exist_ok=True)
    for k, m in maps.items():
        write_png(folder / f"{k}.png", ((m == 2) * 255).astype(np.uint8) if binary else m)
        write_png(folder / f"{k}_overlay.png", np.zeros((H, W, 3), np.uint8))  # ignored by the scorer
    if scores:
        lines = ["film,fracture_score,fractured,fracture_area_px,label_file"]
        lines += [f"/films/{k}.jpg,{s},{int(s >= 0.5)},0,{folder / (k + '.png')}" for k, s in scores.items()]
        (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
    return folder


SCORES = {"A": 0.9, "B": 0.2, "C": 0.6, "D": 0.4}


@pytest.fixture
def scored(tmp_path, truth_dir):
    preds = write_preds(tmp_path / "preds", pred_maps(), SCORES)
    result = score_predictions(preds, truth_dir, tmp_path / "score", n_boot=200)
    with (tmp_path / "score" / "per_film.csv").open() as f:
        rows = {r["film"]: r for r in csv.DictReader(f)}
    return result, rows


def test_per_film_figures(scored):
    _, rows = scored
    assert {k: r["outcome"] for k, r in rows.items()} == {"A": "hit", "B": "true_negative", "C": "false_alarm",
                                                          "D": "miss"}
    assert float(rows["A"]["dice"]) == pytest.approx(0.5)
    assert float(rows["A"]["iou"]) == pytest.approx(8 / 24)
    assert 0 < float(rows["A"]["hd95"]) <= 2  # the prediction is the truth shifted by 2 px
    assert float(rows["B"]["dice"]) == 1 and float(rows["B"]["hd95"]) == 0  # empty truth, empty prediction
    assert float(rows["C"]["dice"]) == 0  # empty truth, false alarm
    assert float(rows["C"]["hd95"]) == pytest.approx(DIAG, rel=1e-5)
    assert float(rows["D"]["dice"]) == 0  # missed fracture
    assert float(rows["D"]["hd95"]) == pytest.approx(DIAG, rel=1e-5)
    assert (rows["A"]["truth_px"], rows["A"]["pred_px"], rows["A"]["tp"]) == ("16", "16", "8")
    assert (rows["A"]["height"], rows["A"]["width"]) == (str(H), str(W))


def test_pooled_and_summary_figures(scored, tmp_path):
    result, rows = scored
    f = result["fracture"]
    assert f["dice_pos"]["value"] == pytest.approx(0.25) and f["dice_pos"]["n"] == 2
    assert f["dice_hit"] == {"value": pytest.approx(0.5), "n": 1, "truth_px_median": 16}  # A found (Dice 0.5)
    # D missed: no fracture pixel in its map, and its score (0.4) under the 0.5 call
    assert f["missed"] == {"n": 1, "no_fracture_pixel": 1, "called_fractured": 0,
                           "truth_px_median": int(rows["D"]["truth_px"])}
    assert f["dice"] == pytest.approx(16 / 51)  # 2*8 / (19 predicted + 32 true)
    assert f["iou"] == pytest.approx(8 / 43)
    assert f["precision"] == pytest.approx(8 / 19) and f["recall"] == pytest.approx(8 / 32)
    assert f["dice_mean"] == pytest.approx((0.5 + 1 + 0 + 0) / 4)
    assert f["hd95_mean"] == pytest.approx((float(rows["A"]["hd95"]) + 0 + 2 * DIAG) / 4, rel=1e-5)
    lo, hi = f["dice_pos"]["ci95"]
    assert 0 <= lo <= 0.25 <= hi <= 0.5
    assert result["outcomes"] == {"miss": 1, "false_alarm": 1, "hit": 1, "true_negative": 1}
    # two fractured films pooled: hand holds A and D
    hand = result["by_body_part"]["hand"]
    assert (hand["films"], hand["fractured"]) == (2, 2)
    assert hand["fracture"]["dice"] == pytest.approx(16 / 48)
    assert set(result["by_body_part"]) == {"hand", "leg", "shoulder"}
    assert result["by_body_part"]["leg"]["fracture"]["dice"] == 0.0  # 3 false-alarm pixels, no truth
    bone = result["bone_pseudo_label_agreement"]
    assert bone["dice"] == pytest.approx(2 * 4 * 15 / (4 * 15 + 4 * 30))
    on_disk = json.loads((tmp_path / "score" / "metrics.json").read_text())
    assert on_disk["fracture"]["dice"] == pytest.approx(16 / 51)


def test_presence_figures(scored):
    result, _ = scored
    p = result["presence"]
    # predictions.csv calls A and C fractured: one hit, one false alarm, one miss, one true negative
    assert (p["tp"], p["fp"], p["tn"], p["fn"]) == (1, 1, 1, 1)
    assert p["sensitivity"] == p["specificity"] == p["ppv"] == pytest.approx(0.5)
    assert p["roc_auc"]["value"] == pytest.approx(3 / 4)  # .9>.2, .9>.6, .4>.2, .4<.6
    assert p["roc_curve"]["tpr"][-1] == 1.0 and p["roc_curve"]["fpr"][-1] == 1.0


def test_threshold_and_pixel_calls(tmp_path, truth_dir):
    preds = write_preds(tmp_path / "preds", pred_maps(), SCORES)
    p = score_predictions(preds, truth_dir, tmp_path / "s1", threshold=0.3, n_boot=10)["presence"]
    assert (p["tp"], p["fp"], p["tn"], p["fn"]) == (2, 1, 1, 0)
    bare = write_preds(tmp_path / "bare", pred_maps())
    r = score_predictions(bare, truth_dir, tmp_path / "s2", n_boot=10)
    assert "roc_auc" not in r["presence"]  # no scores, no AUC
    assert (r["presence"]["tp"], r["presence"]["fp"]) == (1, 1)  # any fracture pixel is a call


def test_binary_masks_give_the_same_fracture_figures(tmp_path, truth_dir, scored):
    result, _ = scored
    binary = write_preds(tmp_path / "binary", pred_maps(), binary=True)
    r = score_predictions(binary, truth_dir, tmp_path / "s", n_boot=200)
    assert r["inputs"]["pred_kind"] == "binary"
    for key in ("dice", "iou", "dice_mean", "hd95_mean"):
        assert r["fracture"][key] == pytest.approx(result["fracture"][key])
    assert "bone_pseudo_label_agreement" not in r


def test_bad_predictions_are_named(tmp_path, truth_dir):
    maps = pred_maps()
    maps["B"] = np.zeros((H + 1, W), np.uint8)
    preds = write_preds(tmp_path / "p1", maps, SCORES)
    with pytest.raises(InputError, match=r"B\.png.*never resized"):
        score_predictions(preds, truth_dir, tmp_path / "s1")
    assert not (tmp_path / "s1").exists()  # nothing half-written

    maps = pred_maps()
    maps["C"][0, 0] = 7
    with pytest.raises(InputError, match=r"C\.png.*7"):
        score_predictions(write_preds(tmp_path / "p2", maps, SCORES), truth_dir, tmp_path / "s2")

    preds = write_preds(tmp_path / "p3", pred_maps(), SCORES)
    write_png(preds / "Z.png", np.zeros((H, W), np.uint8))
    with pytest.raises(DataError, match="not in the truth folder.*Z"):
        score_predictions(preds, truth_dir, tmp_path / "s3")

    partial = write_preds(tmp_path / "p4", {k: v for k, v in pred_maps().items() if k != "D"})
    with pytest.raises(DataError, match="no prediction for 1 film.*D"):
        score_predictions(partial, truth_dir, tmp_path / "s4", split="validation", pred_kind="labels")
    # without a split the films that have a prediction are scored
    assert score_predictions(partial, truth_dir, tmp_path / "s5", n_boot=10)["films"] == 3

    ambiguous = {k: (v == 2).astype(np.uint8) for k, v in pred_maps().items()}
    with pytest.raises(DataError, match="--pred-kind"):
        score_predictions(write_preds(tmp_path / "p6", ambiguous), truth_dir, tmp_path / "s6")
