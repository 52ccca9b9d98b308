"""The presence score of a network with a presence output: fusion with the mask's score (fit and use),
``monaifrac calibrate``, and gating the fracture class by the call."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monaifrac.data.cases import DataError
from monaifrac.evaluation.calibrate import calibrate_presence
from monaifrac.evaluation.stats import fit_presence_fusion, roc_auc
from monaifrac.transforms import (ArgMax, FractureScore, FractureScored, GateFractured, ThresholdFractured,
                                  fuse_presence)
from tests.unit.test_score import pred_maps, truth_dir, write_preds  # noqa: F401  (fixture)


def test_fusion_is_a_logistic_regression_on_the_two_logits():
    assert fuse_presence(0.5, 0.5, [1.0, 1.0, 0.0]) == pytest.approx(0.5)
    assert fuse_presence(0.9, 0.5, [1.0, 0.0, 0.0]) == pytest.approx(0.9)  # the head alone
    assert fuse_presence(0.2, 0.7, [0.0, 1.0, 0.0]) == pytest.approx(0.7)  # the mask alone
    assert fuse_presence(1.0, 0.0, [1.0, 1.0, 0.0]) == pytest.approx(0.5)  # clipped logits stay finite


def test_fit_recovers_the_weights_that_made_the_labels():
    rng = np.random.default_rng(0)
    n = 4000
    head, mask = rng.uniform(0.02, 0.98, n), rng.uniform(0.02, 0.98, n)
    true = [1.5, 0.5, -0.3]
    p = np.array([fuse_presence(h, m, true) for h, m in zip(head, mask)])
    labels = (rng.uniform(size=n) < p).astype(int)
    fitted = fit_presence_fusion(labels, head, mask, l2=0.0)
    assert np.allclose(fitted, true, atol=0.15), fitted
    fused = [fuse_presence(h, m, fitted) for h, m in zip(head, mask)]
    assert abs(np.mean(fused) - labels.mean()) < 1e-6  # calibrated: the mean probability is the prevalence
    assert roc_auc(labels, fused) > max(roc_auc(labels, head), roc_auc(labels, mask))
    with pytest.raises(ValueError, match="fractured and normal"):
        fit_presence_fusion([1, 1], [0.5, 0.6], [0.5, 0.6])


def test_fracture_scored_fuses_where_the_film_has_a_presence_output():
    pred = torch.randn(3, 8, 8)
    mask = FractureScore()(pred)
    plain = FractureScored("pred")({"pred": pred})
    assert plain["fracture_score"] == plain["mask_score"] == pytest.approx(mask)  # no presence output
    no_fusion = FractureScored("pred")({"pred": pred, "presence_score": 0.9})
    assert no_fusion["fracture_score"] == pytest.approx(mask)  # no fusion weights: the mask's score
    fused = FractureScored("pred", fusion=[2.0, 0.5, -1.0])({"pred": pred, "presence_score": 0.9})
    assert fused["fracture_score"] == pytest.approx(fuse_presence(0.9, mask, [2.0, 0.5, -1.0]))
    assert fused["mask_score"] == pytest.approx(mask)
    with pytest.raises(ValueError, match="fusion"):
        FractureScored("pred", fusion=[1.0, 2.0])


def test_gate_removes_the_fracture_class_of_films_called_normal():
    pred = torch.zeros(3, 4, 4)
    pred[1] = 1.0
    pred[2, :2] = 5.0  # fracture wins on the first two rows, bone elsewhere
    gate = GateFractured("pred", threshold=0.5)
    kept = gate({"pred": pred, "fracture_score": 0.7})["pred"]
    assert torch.equal(kept, pred)
    gated = gate({"pred": pred, "fracture_score": 0.3})["pred"]
    assert int((gated.argmax(0) == 2).sum()) == 0 and bool((gated.argmax(0) == 1).all())
    assert torch.equal(pred[2, :2], torch.full((2, 4), 5.0))  # the input is not changed in place


def test_fracture_threshold_labels_fracture_where_its_probability_reaches_it():
    pred = torch.zeros(3, 2, 4)
    pred[1] = 1.0
    pred[2, 0] = torch.tensor([-3.0, 0.0, 1.2, 2.0])  # p(fracture) 0.01, 0.21, 0.47, 0.67 on row 0
    prob = torch.softmax(pred, dim=0)[2]
    for t in (0.1, 0.3, 0.5):
        labels = ArgMax()(ThresholdFractured("pred", threshold=t)({"pred": pred})["pred"])[0]
        assert torch.equal(labels == 2, prob >= t), t
        assert bool((labels[prob < t] == 1).all())  # elsewhere the better of background and bone
    assert int((ArgMax()(pred)[0] == 2).sum()) == 2  # the argmax alone: 0.47 and 0.67
    # after the gate a film called normal stays without fracture pixels at any threshold
    gated = GateFractured("pred", threshold=0.5)({"pred": pred, "fracture_score": 0.2})
    assert int((ArgMax()(ThresholdFractured("pred", threshold=0.01)(gated)["pred"]) == 2).sum()) == 0
    with pytest.raises(ValueError, match="fracture threshold"):
        ThresholdFractured("pred", threshold=0.0)


def _write_scores(folder, rows):
    lines = ["film,fracture_score,fractured,fracture_area_px,label_file,presence_score,mask_score"]
    lines += [f"/films/{k}.jpg,{f},{int(f >= 0.5)},0,{folder / (k + '.png')},{h},{m}" for k, (f, h, m) in rows.items()]
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")


def test_calibrate_fits_the_fusion_on_an_inference_run(tmp_path, truth_dir):  # noqa: F811
    preds = write_preds(tmp_path / "preds", pred_maps())
    # A and D fractured: the head separates them, the mask's score does not
    _write_scores(preds, {"A": (0.5, 0.9, 0.6), "B": (0.5, 0.1, 0.7), "C": (0.5, 0.2, 0.2), "D": (0.5, 0.8, 0.3)})
    result = calibrate_presence(preds, truth_dir, tmp_path / "cal", n_boot=50)
    assert (result["films"], result["fractured"]) == (4, 2)
    assert result["auc"]["presence"]["value"] == 1.0 and result["auc"]["mask"]["value"] == 0.5
    assert result["auc"]["fused"]["value"] == 1.0
    a, b, _ = result["presence_fusion"]
    assert a > abs(b)  # the evidence that separates weighs more
    assert 0 < result["presence_threshold"] < 1 and result["youden"]["j"] == 1.0
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["presence_fusion"] == result["presence_fusion"]


def test_calibrate_needs_both_scores(tmp_path, truth_dir):  # noqa: F811
    preds = write_preds(tmp_path / "preds", pred_maps(), {"A": 0.9, "B": 0.2, "C": 0.6, "D": 0.4})  # a UNet's run
    with pytest.raises(DataError, match="no presence_score/mask_score for 4 film"):
        calibrate_presence(preds, truth_dir)
    with pytest.raises(DataError, match="no predictions.csv"):
        calibrate_presence(write_preds(tmp_path / "bare", pred_maps()), truth_dir)
