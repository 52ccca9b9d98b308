"""monaifrac.evaluation.stats: AUC, ROC points, confusion rates and bootstrap intervals, by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monaifrac.evaluation import stats


def test_auc_of_a_hand_made_score_list():
    # positives 0.9, 0.4, 0.35; negatives 0.8, 0.3, 0.1. Of the 9 (pos, neg) pairs the positive
    # scores higher in 7: (.9>.8,.3,.1), (.4>.3,.1), (.35>.3,.1); so AUC = 7/9.
    labels = [1, 0, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.4, 0.35, 0.3, 0.1]
    assert stats.roc_auc(labels, scores) == pytest.approx(7 / 9)


def test_auc_counts_a_tie_as_half():
    assert stats.roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    assert stats.roc_auc([1, 1, 0], [0.7, 0.5, 0.5]) == pytest.approx(0.75)


def test_auc_undefined_with_one_class():
    assert math.isnan(stats.roc_auc([1, 1], [0.2, 0.9]))
    assert math.isnan(stats.roc_auc([], []))


def test_roc_curve_points():
    curve = stats.roc_curve([1, 0, 1, 0], [0.9, 0.6, 0.6, 0.1])
    assert curve["thresholds"] == [math.inf, 0.9, 0.6, 0.1]
    assert curve["tpr"] == [0.0, 0.5, 1.0, 1.0]
    assert curve["fpr"] == [0.0, 0.0, 0.5, 1.0]
    # trapezoids under these points give the same area as the AUC
    assert np.trapezoid(curve["tpr"], curve["fpr"]) == pytest.approx(stats.roc_auc([1, 0, 1, 0], [0.9, 0.6, 0.6, 0.1]))


def test_confusion_rates():
    c = stats.confusion([1, 1, 1, 0, 0], [1, 0, 1, 1, 0])
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (2, 1, 1, 1)
    assert c["sensitivity"] == pytest.approx(2 / 3)
    assert c["specificity"] == pytest.approx(1 / 2)
    assert c["ppv"] == pytest.approx(2 / 3)
    assert math.isnan(stats.confusion([0, 0], [0, 0])["sensitivity"])


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    values = np.array([0.1, 0.9, 0.4, 0.5, 0.3, 0.7, 0.2, 0.8])
    ci = stats.bootstrap_ci(lambda idx: float(values[idx].mean()), [np.arange(8)], n_boot=500, seed=3)
    assert ci == stats.bootstrap_ci(lambda idx: float(values[idx].mean()), [np.arange(8)], n_boot=500, seed=3)
    assert ci[0] < values.mean() < ci[1]
    assert values.min() <= ci[0] and ci[1] <= values.max()
    # a constant statistic has a zero-width interval
    assert stats.bootstrap_ci(lambda idx: 1.0, [np.arange(8)], n_boot=50) == [1.0, 1.0]


def test_stratified_bootstrap_keeps_both_classes():
    labels = np.array([1] * 3 + [0] * 30)
    scores = np.linspace(0, 1, 33)
    seen = []
    ci = stats.bootstrap_ci(lambda idx: seen.append(set(labels[idx].tolist())) or stats.roc_auc(labels[idx], scores[idx]),
                            [np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)], n_boot=200)
    assert all(s == {0, 1} for s in seen)  # every resample can have an AUC
    assert not any(math.isnan(v) for v in ci)
    assert stats.bootstrap_ci(lambda idx: 0.0, [np.arange(3), np.array([], dtype=int)]) == [pytest.approx(math.nan,
                                                                                                  nan_ok=True)] * 2


def test_youden_threshold():
    # at 0.6: tpr 2/3 (0.9, 0.6 called), fpr 0 -> J 2/3; at 0.4: tpr 1, fpr 1/3 -> J 2/3; tie -> higher threshold
    labels = [1, 1, 0, 1, 0, 0]
    scores = [0.9, 0.6, 0.5, 0.4, 0.2, 0.1]
    best = stats.youden_threshold(labels, scores)
    assert best["threshold"] == 0.6 and best["j"] == pytest.approx(2 / 3)
    assert best["sensitivity"] == pytest.approx(2 / 3) and best["specificity"] == 1.0
    assert stats.youden_threshold([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2])["threshold"] == 0.8  # perfect split
    assert math.isnan(stats.youden_threshold([1, 1], [0.3, 0.4])["threshold"])
