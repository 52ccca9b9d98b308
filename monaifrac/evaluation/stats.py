"""Image-level statistics of the presence score, and bootstrap confidence intervals.

The AUC is MONAI's (:func:`monai.metrics.compute_roc_auc`); the curve is drawn here because
MONAI returns only its area. Confidence intervals are percentile bootstraps over films with
a fixed seed. For the AUC the fractured and normal films are resampled separately
(stratified), so that every resample has both classes and its AUC is defined; no library
the project uses offers that stratification.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from monai.metrics import compute_roc_auc


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve; NaN where ``labels`` hold only one class (no AUC exists)."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0 or y.min() == y.max():
        return float("nan")
    return float(compute_roc_auc(torch.as_tensor(np.asarray(scores, dtype=np.float64)), torch.as_tensor(y)))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> dict[str, list[float]]:
    """ROC points, one per distinct score, from (0, 0) to (1, 1).

    Returns:
        ``{"fpr": [...], "tpr": [...], "thresholds": [...]}``; point i counts films whose
        score is ≥ ``thresholds[i]`` as fractured (the first threshold is +inf).
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    thresholds = np.unique(s)[::-1]
    fpr, tpr, cut = [0.0], [0.0], [float("inf")]
    for t in thresholds:
        called = s >= t
        tpr.append(float((called & y).sum() / n_pos) if n_pos else 0.0)
        fpr.append(float((called & ~y).sum() / n_neg) if n_neg else 0.0)
        cut.append(float(t))
    return {"fpr": fpr, "tpr": tpr, "thresholds": cut}


def youden_threshold(labels: Sequence[int], scores: Sequence[float]) -> dict[str, float]:
    """The score threshold that maximises Youden's J = sensitivity + specificity − 1.

    For choosing a presence threshold on validation films (never on test films). Ties go to
    the higher threshold (fewer false alarms).

    Returns:
        ``{"threshold", "sensitivity", "specificity", "j"}``; NaNs where one class is absent.
    """
    y = np.asarray(labels, dtype=bool)
    if y.size == 0 or y.all() or not y.any():
        return {"threshold": float("nan"), "sensitivity": float("nan"), "specificity": float("nan"),
                "j": float("nan")}
    curve = roc_curve(labels, scores)
    # J rounded so that float noise (1 - 1/3 vs 2/3) does not break ties
    best = max(range(1, len(curve["thresholds"])), key=lambda i: (round(curve["tpr"][i] - curve["fpr"][i], 12),
                                                                   curve["thresholds"][i]))
    tpr, fpr = curve["tpr"][best], curve["fpr"][best]
    return {"threshold": curve["thresholds"][best], "sensitivity": tpr, "specificity": 1.0 - fpr, "j": tpr - fpr}


def confusion(labels: Sequence[int], called: Sequence[int]) -> dict[str, float | int]:
    """Counts and rates of a yes/no call against the truth.

    Returns:
        ``tp, fp, tn, fn`` and ``sensitivity`` (tp/(tp+fn)), ``specificity`` (tn/(tn+fp)),
        ``ppv`` (tp/(tp+fp)), each NaN where its denominator is 0.
    """
    y = np.asarray(labels, dtype=bool)
    c = np.asarray(called, dtype=bool)
    tp, fp = int((c & y).sum()), int((c & ~y).sum())
    tn, fn = int((~c & ~y).sum()), int((~c & y).sum())

    def rate(num: int, den: int) -> float:
        return num / den if den else float("nan")

    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "sensitivity": rate(tp, tp + fn),
            "specificity": rate(tn, tn + fp), "ppv": rate(tp, tp + fp)}


def bootstrap_ci(statistic: Callable[[np.ndarray], float], groups: Sequence[np.ndarray], n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of ``statistic`` over films.

    Args:
        statistic: takes an array of film indices (into the concatenation of ``groups``) and
            returns a number.
        groups: index arrays resampled separately (strata), e.g. ``[fractured, normal]``;
            one group for an ordinary bootstrap.
        n_boot: resamples; seed: of numpy's generator, so the interval is reproducible.

    Returns:
        ``[low, high]``; ``[nan, nan]`` when a group is empty.
    """
    groups = [np.asarray(g, dtype=np.int64) for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot, dtype=np.float64)
    for i in range(n_boot):
        idx = np.concatenate([g[rng.integers(0, g.size, g.size)] for g in groups])
        values[i] = statistic(idx)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return [float("nan"), float("nan")]
    alpha = (1.0 - level) / 2.0
    return [float(np.quantile(values, alpha)), float(np.quantile(values, 1.0 - alpha))]


def fit_presence_fusion(labels: Sequence[int], head: Sequence[float], mask: Sequence[float],
                        l2: float = 1e-3, iters: int = 50) -> list[float]:
    """The ``(a, b, c)`` of :func:`monaifrac.transforms.fuse_presence` that fit ``labels`` best.

    A logistic regression of fractured (1) / normal (0) on the logits of the presence output's
    probability and of the mask score, by Newton's method (iteratively reweighted least squares)
    with a small ridge ``l2`` on (a, b) so that separable validation sets keep finite weights.
    Fitted on validation films only; its outputs are calibrated probabilities on those films.
    """
    from monaifrac.transforms.post import _logit

    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0 or y.all() or not y.any():
        raise ValueError("fitting the fusion needs fractured and normal films")
    x = np.column_stack([[_logit(v) for v in head], [_logit(v) for v in mask], np.ones(len(y))])
    w = np.zeros(3)
    ridge = np.diag([l2, l2, 0.0]) * len(y)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) + ridge @ w
        hess = (x * (p * (1 - p))[:, None]).T @ x + ridge + 1e-9 * np.eye(3)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return [float(v) for v in w]

