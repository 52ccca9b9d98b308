"""k-fold cross-validation of the bundle (``monaifrac cv``): train each fold, evaluate it, tabulate.

Fold k trains on the ``training`` items whose ``fold`` is not k and is evaluated on those whose
``fold`` is k (:func:`monaifrac.datalist.load_split`), so the official ``validation`` section
stays untouched. Each fold is an ordinary bundle run with its own ``bundle_root``
(``OUT/fold_<k>/models``, ``OUT/fold_<k>/eval``); the table is ``OUT/cv_folds.csv`` and
``OUT/cv_summary.json`` (mean and sample standard deviation of every figure).

A fold whose ``OUT/fold_<k>/eval/metrics.json`` exists is not run again, so an interrupted
cross-validation continues where it stopped; delete that file to redo a fold.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import statistics
from pathlib import Path

from monaifrac.bundle import run_bundle
from monaifrac.data.cases import DataError
from monaifrac.io import write_json, write_text

logger = logging.getLogger(__name__)
FIGURES = ("val_fracture_dice_pos", "val_fracture_dice", "val_fracture_iou", "val_fracture_hd95", "val_presence_auc",
           "val_bone_dice")


def available_folds(dataset_dir: str | Path) -> list[int]:
    path = Path(dataset_dir) / "datalist.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `monaifrac prepare FRACATLAS_DIR --out {dataset_dir}` first")
    return sorted({int(d.get("fold", -1)) for d in json.loads(path.read_text()).get("training", [])} - {-1})


def run_cv(dataset_dir: str | Path, out_dir: str | Path, folds: int = 5, configs: tuple[str, ...] = (),
           **overrides) -> list[dict]:
    """Train and evaluate folds 0..folds-1; returns one row of figures per fold.

    Args:
        dataset_dir: a prepared folder whose ``training`` items carry ``fold`` indices.
        out_dir: one ``fold_<k>`` bundle root per fold, and the tables.
        folds: how many folds to run (the datalist must have them).
        configs: extra override configs (e.g. ``("basic_unet",)``), applied to training and
            evaluation alike.
        overrides: bundle ids for both runs (``max_epochs``, ``patch_size``, ...).

    Raises:
        DataError: no datalist, or fewer folds in it than asked for.
    """
    have = available_folds(dataset_dir)
    if folds < 2 or any(k not in have for k in range(folds)):
        raise DataError(f"{Path(dataset_dir) / 'datalist.json'}: asked for folds 0..{folds - 1}, the datalist has "
                         f"{have or 'none'} (prepare with --folds {folds})")
    out_dir = Path(out_dir)
    rows = []
    for k in range(folds):
        root = out_dir / f"fold_{k}"
        metrics_file = root / "eval" / "metrics.json"
        if metrics_file.is_file():
            logger.info("fold %d: already evaluated in %s; kept", k, metrics_file)
        else:
            logger.info("fold %d of %d: training into %s", k, folds, root)
            run_bundle(["train", *configs], bundle_root=root, dataset_dir=str(dataset_dir), fold=k, **overrides)
            eval_overrides = {key: v for key, v in overrides.items() if key != "max_epochs"}
            run_bundle(["train", "evaluate", *configs], bundle_root=root, dataset_dir=str(dataset_dir), fold=k,
                       eval_part="val", **eval_overrides)
        report = json.loads(metrics_file.read_text())
        row = {"fold": k, "films": report.get("films")}
        row.update({name: report["metrics"].get(name) for name in FIGURES})
        rows.append(row)
    write_text(out_dir / "cv_folds.csv", _csv(rows))
    write_json(out_dir / "cv_summary.json", summarise(rows))
    return rows


def summarise(rows: list[dict]) -> dict:
    """Mean and sample standard deviation of each figure over folds (figures a fold lacks are skipped)."""
    summary = {"folds": len(rows)}
    for name in FIGURES:
        values = [float(r[name]) for r in rows if r.get(name) is not None]
        if values:
            summary[name] = {"mean": statistics.fmean(values),
                             "sd": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}
    return summary


def _csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("fold", "films", *FIGURES), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
