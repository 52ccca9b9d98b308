"""The evaluation stage's commands: ``monaifrac score``, ``calibrate``, ``report``.

Each is a pair, registered in :data:`COMMANDS`: ``add_<name>_arguments(parser)`` declares its
options and imports nothing heavy; ``run_<name>(args)`` checks the paths the command line names,
then imports the stage (torch, MONAI's metrics: seconds) and runs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monaifrac.errors import require_exists

TRUTH_HELP = "FracAtlas-layout folder or a folder written by `monaifrac prepare`"


def add_score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir",
                   help="<film id>.png label maps {0,1,2} or binary fracture masks, optional predictions.csv")
    p.add_argument("--truth", required=True, help=TRUTH_HELP)
    p.add_argument("--out", required=True, help="where metrics.json and per_film.csv go")
    p.add_argument("--split", help="score exactly this split (FracAtlas train/valid/test, or a datalist section)")
    p.add_argument("--pred-kind", choices=("auto", "labels", "binary"), default="auto",
                   help="label maps or binary fracture masks (auto: decided from predictions.csv and the values)")
    p.add_argument("--threshold", type=float, help="presence threshold on fracture_score (default: the 'fractured' "
                                                   "column of predictions.csv, else any fracture pixel)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")


def run_score(args) -> int:
    require_exists(args.pred_dir)
    require_exists(args.truth)
    from monaifrac.evaluation.score import score_predictions

    result = score_predictions(args.pred_dir, args.truth, args.out, split=args.split, pred_kind=args.pred_kind,
                               threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed)
    f, p = result["fracture"], result["presence"]
    summary = {"films": result["films"], "fractured": result["fractured"], "normal": result["normal"],
               "dice_pos": f["dice_pos"]["value"], "dice_pos_ci95": f["dice_pos"]["ci95"],
               "dice_hit": f["dice_hit"]["value"], "dice": f["dice"],
               "iou": f["iou"], "hd95_mean": f["hd95_mean"],
               "roc_auc": p.get("roc_auc", {}).get("value"), "sensitivity": p["sensitivity"],
               "specificity": p["specificity"], "outcomes": result["outcomes"]}
    print(json.dumps(summary, indent=2, default=str))
    print(f"wrote {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'per_film.csv'}")
    return 0


def add_calibrate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir", help="an inference output folder: label maps and predictions.csv with presence_score "
                                    "and mask_score")
    p.add_argument("--truth", required=True, help=TRUTH_HELP)
    p.add_argument("--split", help="use only the films of this split (each must have a prediction)")
    p.add_argument("--out", help="folder for calibration.json")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the AUC intervals")


def run_calibrate(args) -> int:
    require_exists(args.pred_dir)
    require_exists(args.truth)
    from monaifrac.evaluation.calibrate import calibrate_presence

    r = calibrate_presence(args.pred_dir, args.truth, args.out, split=args.split, n_boot=args.bootstrap)
    auc = {k: f"{v['value']:.4f} [{v['ci95'][0]:.4f}, {v['ci95'][1]:.4f}]" for k, v in r["auc"].items()}
    print(json.dumps({"films": r["films"], "fractured": r["fractured"], "roc_auc": auc,
                      "youden": r["youden"]}, indent=2))
    fusion = ",".join(f"{v:.6g}" for v in r["presence_fusion"])
    print(f"use: --set presence_fusion=[{fusion}] presence_threshold={r['presence_threshold']:.6g}")
    if args.out:
        print(f"wrote {Path(args.out) / 'calibration.json'}")
    return 0


def add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("score_dir", help="a folder written by `monaifrac score`")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--max-films", type=int, help="cards for the worst N films only (default: all)")


def run_report(args) -> int:
    require_exists(args.score_dir)
    from monaifrac.evaluation.report import write_report

    path = write_report(args.score_dir, args.out, max_films=args.max_films)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser")
    return 0


#: name → (one line of help, add_arguments(parser), run(args) -> exit status), in the order ``--help`` lists them
COMMANDS = {
    "score": ("score label maps (and predictions.csv) against a FracAtlas-layout folder", add_score_arguments,
              run_score),
    "calibrate": ("fit the fusion of the presence output and the mask score on an inference run of validation films "
                  "(predictions.csv)", add_calibrate_arguments, run_calibrate),
    "report": ("self-contained HTML report of a score folder", add_report_arguments, run_report),
}
