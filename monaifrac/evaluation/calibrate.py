"""``monaifrac calibrate``: fit the fusion of the presence output and the mask on validation films.

An inference run of a network with a presence output writes both pieces of evidence per film
to ``predictions.csv`` (``presence_score``, ``mask_score``). Against the truth of the same films
this fits :func:`monaifrac.transforms.fuse_presence` (a logistic regression on the two logits,
:func:`monaifrac.evaluation.stats.fit_presence_fusion`), and reports the ROC-AUC of each piece
alone and of the fusion, each with its bootstrap interval, and the Youden threshold of the fused
score. The two numbers a bundle needs (``presence_fusion`` and ``presence_threshold``) are printed
as the ``--set`` arguments that use them, and written to ``calibration.json``.

Fit on validation films only: the figures it prints are in-sample for the fusion's three weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monaifrac.evaluation import stats
from monaifrac.evaluation.score import find_predictions, read_scores, select_films
from monaifrac.evaluation.truth import load_truth
from monaifrac.data.cases import DataError
from monaifrac.io import write_text
from monaifrac.transforms import fuse_presence

__all__ = ["calibrate_presence"]


def _auc_with_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int, seed: int) -> dict:
    """ROC-AUC and its stratified bootstrap interval (fractured and normal films resampled apart)."""
    groups = [np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)]
    return {"value": stats.roc_auc(labels.tolist(), scores.tolist()),
            "ci95": stats.bootstrap_ci(lambda idx: stats.roc_auc(labels[idx].tolist(), scores[idx].tolist()),
                                       groups, n_boot=n_boot, seed=seed)}


def calibrate_presence(pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path | None = None, *,
                       split: str | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Fit the presence fusion on the films of ``pred_dir`` (an inference run) against ``truth_dir``.

    Returns (and writes to ``<out_dir>/calibration.json`` when given) ``{"films", "fractured",
    "presence_fusion": [a, b, c], "presence_threshold", "auc": {"presence", "mask", "fused"},
    "youden": {...}}``.

    Raises:
        DataError: no ``predictions.csv``, or films without both scores (a network without a
        presence output has nothing to fuse), naming the file.
    """
    pred_dir = Path(pred_dir)
    scores = read_scores(pred_dir)
    if not scores:
        raise DataError(f"{pred_dir}: no predictions.csv (run `monaifrac infer` on the films first)")
    films = select_films(load_truth(truth_dir), find_predictions(pred_dir), split, pred_dir)
    lacking = [f.id for f in films if scores.get(f.id, {}).get("presence_score") is None
               or scores.get(f.id, {}).get("mask_score") is None]
    if lacking:
        raise DataError(f"{pred_dir / 'predictions.csv'}: no presence_score/mask_score for {len(lacking)} film(s), "
                        f"e.g. {', '.join(lacking[:5])} (a network without a presence output has nothing to fuse)")
    labels = np.array([int(bool((f.load()[1] == 2).any())) for f in films])
    head = np.array([scores[f.id]["presence_score"] for f in films])
    mask = np.array([scores[f.id]["mask_score"] for f in films])
    fusion = stats.fit_presence_fusion(labels, head, mask)
    fused = np.array([fuse_presence(h, m, fusion) for h, m in zip(head, mask)])
    youden = stats.youden_threshold(labels.tolist(), fused.tolist())
    result = {
        "predictions": str(pred_dir.resolve()), "truth": str(Path(truth_dir).resolve()), "split": split,
        "films": int(len(films)), "fractured": int(labels.sum()),
        "presence_fusion": fusion, "presence_threshold": youden["threshold"],
        "auc": {name: _auc_with_ci(labels, s, n_boot, seed)
                for name, s in (("presence", head), ("mask", mask), ("fused", fused))},
        "youden": youden,
        "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
    }
    if out_dir is not None:
        write_text(Path(out_dir) / "calibration.json", json.dumps(result, indent=2) + "\n")
    return result
