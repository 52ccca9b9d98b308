"""Score a folder of predictions against a truth folder: ``metrics.json`` + ``per_film.csv``.

Predictions (``PRED_DIR``):

* ``<id>.png`` per film: a label map with values {0, 1, 2} (``inference.json`` writes these)
  or a binary fracture mask ({0, 1} or {0, 255}); ``*_overlay.png`` files are ignored.
* optionally ``predictions.csv`` (``inference.json`` writes it) with ``film`` and
  ``fracture_score`` (and ``fractured``): the presence score, from which the ROC-AUC comes.

Every prediction must have the size of its film as displayed (EXIF applied); a prediction of
another size is an error naming it, never resized. Every figure is defined once, in
:mod:`monaifrac.metrics` (segmentation) and :mod:`monaifrac.evaluation.stats` (presence).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch

from monaifrac import metrics
from monaifrac.data.cases import DataError
from monaifrac.data.fracatlas import BODY_PARTS
from monaifrac.evaluation import stats
from monaifrac.evaluation.truth import TruthFilm, load_truth
from monaifrac.io import InputError, read_label_map, write_json, write_text
from monaifrac.io import film_stem

logger = logging.getLogger(__name__)

PRED_KINDS = ("auto", "labels", "binary")
PRED_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
PREDICTIONS_CSV = "predictions.csv"
METRICS_JSON, PER_FILM_CSV = "metrics.json", "per_film.csv"
OUTCOMES = ("miss", "false_alarm", "hit", "true_negative")
PER_FILM_COLUMNS = ("film", "body_part", "split", "height", "width", "truth_fractured", "truth_px", "pred_px",
                    "tp", "dice", "iou", "hd95", "fracture_score", "called_fractured", "outcome", "bone_dice",
                    "bone_iou", "image", "prediction")
FRACTURE, BONE = 2, 1


def find_predictions(pred_dir: Path) -> dict[str, Path]:
    """``{film id: label file}`` of a predictions folder (overlays and other files left out)."""
    if not pred_dir.is_dir():
        raise DataError(f"{pred_dir}: not a folder of predictions")
    found = {}
    for path in sorted(pred_dir.iterdir()):
        name = path.name.lower()
        if path.is_file() and name.endswith(PRED_SUFFIXES) and not film_stem(path.name).endswith("_overlay"):
            found[film_stem(path.name)] = path
    return found


def read_scores(pred_dir: Path) -> dict[str, dict]:
    """``predictions.csv`` as ``{film id: {"fracture_score": float, "fractured": int | None,
    "presence_score": float | None, "mask_score": float | None}}``; empty when the file is absent."""
    path = pred_dir / PREDICTIONS_CSV
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "film" not in reader.fieldnames or "fracture_score" not in reader.fieldnames:
                raise DataError(f"{path}: needs the columns film and fracture_score, has {reader.fieldnames}")
            scores = {}
            for line, row in enumerate(reader, start=2):
                try:
                    value = float(row["fracture_score"])
                except (TypeError, ValueError):
                    raise DataError(f"{path}: line {line}: fracture_score {row['fracture_score']!r} "
                                    f"is not a number") from None
                if not math.isfinite(value):
                    raise DataError(f"{path}: line {line}: fracture_score is {value}")
                called = row.get("fractured")
                scores[film_stem(row["film"])] = {
                    "fracture_score": value,
                    "fractured": int(called) if called not in (None, "") else None,
                    **{key: _optional_score(row.get(key), path, line, key) for key in ("presence_score", "mask_score")},
                }
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a text CSV ({err})") from None
    return scores


def _optional_score(text: str | None, path: Path, line: int, column: str) -> float | None:
    """A score column that a network without a presence output leaves empty."""
    if text in (None, ""):
        return None
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}: line {line}: {column} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{path}: line {line}: {column} is {value}")
    return value


def detect_kind(pred_files: dict[str, Path], has_scores: bool) -> str:
    """``labels`` or ``binary`` for a whole predictions folder.

    A folder with ``predictions.csv`` (monaifrac's inference) holds label maps; otherwise a
    value 2 anywhere means label maps and a value 255 binary masks. A folder of {0, 1} maps
    alone is ambiguous (bone-only label maps or binary masks) and is refused.
    """
    if has_scores:
        return "labels"
    seen: set[int] = set()
    for path in pred_files.values():
        seen.update(int(v) for v in np.unique(read_label_map(path)))
        if 2 in seen:
            return "labels"
        if 255 in seen:
            return "binary"
    raise DataError(f"cannot tell whether the predictions in {next(iter(pred_files.values())).parent} are label maps "
                    f"or binary fracture masks (values {sorted(seen)}): pass --pred-kind labels or binary")


def prediction_masks(pred: np.ndarray, kind: str, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    values = set(int(v) for v in np.unique(pred))
    if kind == "labels":
        if not values <= {0, 1, 2}:
            raise InputError(path, f"label map values {sorted(values)} are not within {{0, 1, 2}}")
        return pred == FRACTURE, pred == BONE
    if len(values - {0}) > 1:
        raise InputError(path, f"binary mask values {sorted(values)}: expected 0 and one other value")
    return pred > 0, None


def score_film(film: TruthFilm, pred_path: Path, kind: str, score: dict | None) -> dict:
    """All per-film figures of one film (a row of ``per_film.csv`` plus the pooled counts)."""
    image, label = film.load()
    pred = read_label_map(pred_path)
    if pred.shape != label.shape:
        raise InputError(pred_path, f"prediction is {pred.shape[1]}x{pred.shape[0]} (width x height) but the film "
                                    f"{film.image} is {label.shape[1]}x{label.shape[0]} as displayed; "
                                    f"predictions are never resized")
    frac_p, bone_p = prediction_masks(pred, kind, pred_path)
    p, t = torch.from_numpy(frac_p), torch.from_numpy(label == FRACTURE)
    row = {
        "film": film.id, "body_part": film.body_part, "split": film.split or "",
        "height": label.shape[0], "width": label.shape[1],
        "truth_fractured": int(bool(t.any())), "truth_px": int(t.sum()), "pred_px": int(p.sum()),
        "tp": int((p & t).sum()),
        "dice": metrics.score(p, t, "dice_mean"), "iou": metrics.score(p, t, "iou_mean"),
        "hd95": metrics.score(p, t, "hd95"),
        "fracture_score": None if score is None else score["fracture_score"],
        "image": str(film.image), "prediction": str(pred_path),
        "_pairs": {k: metrics.counts(p, t, k) for k in metrics.POOLED},
        "_body_parts": film.body_parts,
    }
    if bone_p is not None:
        bp, bt = torch.from_numpy(bone_p), torch.from_numpy(label == BONE)
        row["bone_dice"] = metrics.score(bp, bt, "dice_mean")
        row["bone_iou"] = metrics.score(bp, bt, "iou_mean")
        row["_bone_pairs"] = {k: metrics.counts(bp, bt, k) for k in ("dice", "iou")}
    return row


def _call(row: dict, score: dict | None, threshold: float | None) -> int:
    """Does the model call this film fractured? The score against ``threshold`` when both are
    given, else predictions.csv's ``fractured``, else any fracture pixel predicted."""
    if score is not None and threshold is not None:
        return int(score["fracture_score"] >= threshold)
    if score is not None and score.get("fractured") is not None:
        return int(score["fractured"])
    return int(row["pred_px"] > 0)


def _outcome(row: dict) -> str:
    """What the label map shows, film by film: a fractured film is a hit when the prediction
    overlaps its fracture, else a miss; a normal film with any fracture pixel is a false
    alarm. (The image-level call, which the presence figures use, may differ.)"""
    if row["truth_fractured"]:
        return "hit" if row["tp"] > 0 else "miss"
    return "false_alarm" if row["pred_px"] > 0 else "true_negative"


def _mean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def _median(values) -> float:
    values = list(values)
    return float(np.median(values)) if values else float("nan")


def summarise(rows: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Every figure over ``rows`` (one group of films): fracture segmentation, presence, bone."""
    pos = [r for r in rows if r["truth_fractured"]]
    neg = [r for r in rows if not r["truth_fractured"]]
    dice_pos = np.array([r["dice"] for r in pos], dtype=np.float64)
    hits, missed = [r for r in pos if r["tp"] > 0], [r for r in pos if r["tp"] == 0]
    out: dict = {"films": len(rows), "fractured": len(pos), "normal": len(neg)}
    fracture = {
        "dice_pos": {"value": float(dice_pos.mean()) if pos else 0.0, "n": len(pos),
                     "ci95": stats.bootstrap_ci(lambda idx: float(dice_pos[idx].mean()), [np.arange(len(pos))],
                                                n_boot, seed)},
        "dice_mean": _mean(r["dice"] for r in rows),
        "iou_mean": _mean(r["iou"] for r in rows),
        "hd95_mean": _mean(r["hd95"] for r in rows),
        "hd95_median": float(np.median([r["hd95"] for r in rows])) if rows else float("nan"),
        "hd95_mean_fractured": _mean(r["hd95"] for r in pos),
        # dice_pos = (hits / fractured films) x dice_hit: how often the fracture is found at all, apart from
        # how well a found one is outlined
        "dice_hit": {"value": _mean(r["dice"] for r in hits), "n": len(hits),
                     "truth_px_median": _median(r["truth_px"] for r in hits)},
        # the fractured films missed (no overlap): how many got no fracture pixel at all, how many the
        # image-level call still found, and how large their fractures are
        "missed": {"n": len(missed), "no_fracture_pixel": sum(r["pred_px"] == 0 for r in missed),
                   "called_fractured": sum(bool(r["called_fractured"]) for r in missed),
                   "truth_px_median": _median(r["truth_px"] for r in missed)},
    }
    for kind in metrics.POOLED:
        fracture[kind] = metrics.pooled([r["_pairs"][kind] for r in rows])
    out["fracture"] = fracture

    labels = np.array([r["truth_fractured"] for r in rows], dtype=np.int64)
    called = np.array([r["called_fractured"] for r in rows], dtype=np.int64)
    presence: dict = {"from": "called_fractured", **stats.confusion(labels, called)}
    scored = [r["fracture_score"] is not None for r in rows]
    if rows and all(scored):
        scores = np.array([r["fracture_score"] for r in rows], dtype=np.float64)
        idx_pos, idx_neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        presence["roc_auc"] = {
            "value": stats.roc_auc(labels, scores),
            "ci95": stats.bootstrap_ci(lambda idx: stats.roc_auc(labels[idx], scores[idx]), [idx_pos, idx_neg],
                                       n_boot, seed),
        }
        presence["roc_curve"] = stats.roc_curve(labels, scores)
        presence["youden"] = stats.youden_threshold(labels, scores)
    out["presence"] = presence

    bone_rows = [r for r in rows if "_bone_pairs" in r]
    if bone_rows:
        out["bone_pseudo_label_agreement"] = {
            "note": "agreement with the Li-threshold bone pseudo-label, not with expert bone outlines",
            "dice": metrics.pooled([r["_bone_pairs"]["dice"] for r in bone_rows]),
            "iou": metrics.pooled([r["_bone_pairs"]["iou"] for r in bone_rows]),
            "dice_mean": _mean(r["bone_dice"] for r in bone_rows),
        }
    return out


def select_films(truth: list[TruthFilm], preds: dict[str, Path], split: str | None,
                 pred_dir: Path) -> list[TruthFilm]:
    """The truth films a prediction folder is scored on: those of ``split`` (each must have a prediction),
    or, without a split, every truth film that has one.

    Raises:
        DataError: a prediction for a film the truth folder lacks, a split with no film or with a film
            left unpredicted, or no prediction for any film; the message names ``pred_dir``.
    """
    by_id = {f.id: f for f in truth}
    unknown = sorted(set(preds) - set(by_id))
    if unknown:
        raise DataError(f"{pred_dir}: {len(unknown)} prediction(s) for films not in the truth folder, e.g. "
                        f"{', '.join(unknown[:5])}")
    if split:
        films = [f for f in truth if f.split == split]
        if not films:
            raise DataError(f"no film of the truth folder is in split {split!r} "
                            f"(splits there: {sorted({f.split or '' for f in truth})})")
        missing = [f.id for f in films if f.id not in preds]
        if missing:
            raise DataError(f"{pred_dir}: no prediction for {len(missing)} film(s) of split {split!r}, e.g. "
                            f"{', '.join(missing[:5])}")
        return films
    films = [f for f in truth if f.id in preds]
    if not films:
        raise DataError(f"{pred_dir}: no prediction (<film id>.png) for any film of the truth folder")
    return films


def score_predictions(pred_dir: str | Path, truth_dir: str | Path, out_dir: str | Path, *, split: str | None = None,
                      pred_kind: str = "auto", threshold: float | None = None, n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """Score ``pred_dir`` against ``truth_dir`` and write ``metrics.json`` and ``per_film.csv``.

    Args:
        pred_dir: label maps / binary masks named ``<film id>.png``, optionally ``predictions.csv``.
        truth_dir: a FracAtlas-layout folder or a prepared folder (see :mod:`.truth`).
        out_dir: where the two files go (created).
        split: score only the films of this split (``train``/``valid``/``test`` of FracAtlas, a
            datalist section of a prepared folder); each of them must have a prediction.
            Without it, every film that has a prediction is scored.
        pred_kind: ``labels``, ``binary`` or ``auto`` (see :func:`detect_kind`).
        threshold: presence threshold on ``fracture_score``; default: predictions.csv's
            ``fractured`` column, else "any fracture pixel".
        n_boot, seed: bootstrap resamples for the 95 % intervals, and their seed.

    Returns:
        the content of ``metrics.json``.

    Raises:
        DataError / InputError: naming the file and the problem; nothing is written then.
    """
    if pred_kind not in PRED_KINDS:
        raise ValueError(f"pred_kind must be one of {PRED_KINDS}, got {pred_kind!r}")
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    preds = find_predictions(pred_dir)
    scores = read_scores(pred_dir)
    films = select_films(load_truth(truth_dir), preds, split, pred_dir)
    preds = {f.id: preds[f.id] for f in films}
    kind = detect_kind(preds, bool(scores)) if pred_kind == "auto" else pred_kind
    if scores:
        unscored = [f.id for f in films if f.id not in scores]
        if unscored:
            raise DataError(f"{pred_dir / PREDICTIONS_CSV}: no fracture_score for {len(unscored)} film(s), e.g. "
                            f"{', '.join(unscored[:5])}")

    rows = []
    for film in films:
        score = scores.get(film.id)
        row = score_film(film, preds[film.id], kind, score)
        row["called_fractured"] = _call(row, score, threshold)
        row["outcome"] = _outcome(row)
        rows.append(row)

    result = {
        "inputs": {"predictions": str(pred_dir.resolve()), "truth": str(Path(truth_dir).resolve()),
                   "split": split, "pred_kind": kind, "threshold": threshold,
                   "presence_call": ("fracture_score >= threshold" if threshold is not None and scores else
                                     "predictions.csv 'fractured'" if scores else "any fracture pixel predicted"),
                   "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95}},
        "outcomes": {o: sum(r["outcome"] == o for r in rows) for o in OUTCOMES},
        **summarise(rows, n_boot, seed),
        "by_body_part": {},
    }
    for part in BODY_PARTS:
        group = [r for r in rows if part in r["_body_parts"]]
        if group:
            result["by_body_part"][part] = summarise(group, n_boot, seed)

    write_text(out_dir / PER_FILM_CSV, per_film_csv(rows))
    write_json(out_dir / METRICS_JSON, _finite(result))
    logger.info("scored %d film(s): %s", len(rows), out_dir / METRICS_JSON)
    return result


def per_film_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=PER_FILM_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in PER_FILM_COLUMNS})
    return buffer.getvalue()


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def _finite(obj):
    """JSON has no NaN: undefined figures (a rate with a zero denominator) become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def read_score_dir(score_dir: str | Path) -> tuple[dict, list[dict]]:
    """``(metrics, per-film rows)`` of a folder written by :func:`score_predictions`."""
    score_dir = Path(score_dir)
    path = score_dir / METRICS_JSON
    if not path.is_file():
        raise DataError(f"{path}: not found; run `monaifrac score PRED_DIR --truth DATA_DIR --out {score_dir}` first")
    try:
        result = json.loads(path.read_text())
        with (score_dir / PER_FILM_CSV).open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError as err:
        raise DataError(f"{err.filename}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    return result, rows
