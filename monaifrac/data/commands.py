"""The data stage's commands: ``monaifrac prepare``, ``synth``, ``preview``, ``check``, ``export-nnunet``.

Each is a pair, registered in :data:`COMMANDS`: ``add_<name>_arguments(parser)`` declares its
options and imports nothing heavy; ``run_<name>(args)`` checks the paths the command line names,
then imports the stage (numpy, MONAI's readers: seconds) and runs it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monaifrac.data.cases import ON_ERROR_CHOICES, DataError
from monaifrac.errors import require_prepared

PREPARED_HELP = "a folder written by `monaifrac prepare`"


def add_prepare_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("fracatlas_dirs", nargs="*", metavar="FRACATLAS_DIR",
                   help="folder(s) in the official FracAtlas layout, e.g. the main copy and a folder of extra "
                        "normal films; film ids must be unique across them")
    p.add_argument("--out", required=True, help="output folder (created; files in it are replaced)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds over training (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split of non-fractured films and of the folds")
    p.add_argument("--on-error", choices=ON_ERROR_CHOICES, default="fail",
                   help="fail: stop at the first bad file; skip: leave bad cases out and list them in the report")
    p.add_argument("--labelme", help="folder of Labelme JSON files to import (merged by film id)")
    p.add_argument("--labelme-map", help="JSON mapping of Labelme label names to classes, e.g. {\"bone\": 1}")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all CPUs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_prepare(args) -> int:
    # the readers' own words (monaifrac.data.fracatlas, .labelme), said before they are imported
    for folder in args.fracatlas_dirs:
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: not a folder")
    if args.labelme and not Path(args.labelme).is_dir():
        raise DataError(f"{args.labelme}: Labelme folder not found")
    if args.labelme_map and not Path(args.labelme_map).is_file():
        raise DataError(f"{args.labelme_map}: mapping file not found")
    from monaifrac.data.prepare import prepare

    report = prepare(args.fracatlas_dirs or None, args.out, labelme=args.labelme, labelme_map=args.labelme_map,
                     folds=args.folds, seed=args.seed, on_error=args.on_error, workers=args.workers,
                     progress=not args.quiet)
    summary = {k: report[k] for k in ("cases_written", "fractured", "non_fractured", "polygons", "sections",
                                       "label_values", "films_per_second")}
    summary["skipped"] = len(report["skipped"])
    summary["warnings"] = len(report["warnings"])
    summary["median_fracture_fraction"] = report["fracture_fraction_of_film"].get("median")
    print(json.dumps(summary, indent=2))
    print(f"wrote {Path(args.out) / 'datalist.json'} and {Path(args.out) / 'prepare_report.json'}")
    return 0


def add_synth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dicom", action="store_true", help="also write the films as DX DICOM files in OUT_DIR/dicom/ "
                                                        "(the first MONOCHROME1, the second with a pixel spacing)")


def run_synth(args) -> int:
    from monaifrac.data.synth import make_synthetic_fracatlas

    summary = make_synthetic_fracatlas(args.out_dir, n=args.n, seed=args.seed)
    if args.dicom:
        from monaifrac.dicom.films import write_dicom_copies

        summary["dicom"] = write_dicom_copies(args.out_dir)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def add_preview_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared_dir")
    p.add_argument("--n", type=int, default=8, help="how many (fractured first) when no --ids")
    p.add_argument("--ids", nargs="+", help="case ids to preview")


def run_preview(args) -> int:
    require_prepared(args.prepared_dir)
    from monaifrac.data.preview import write_previews

    for path in write_previews(args.prepared_dir, n=args.n, ids=args.ids):
        print(path)
    return 0


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help=PREPARED_HELP)
    p.add_argument("--workers", type=int, default=2, help="reading threads")


def run_check(args) -> int:
    require_prepared(args.dataset_dir)
    from monaifrac.data.check import check_dataset

    result = check_dataset(args.dataset_dir, workers=args.workers)
    for problem in result["problems"]:
        print(problem)
    print(f"{result['datalist']}: {result['items']} item(s), {len(result['problems'])} problem(s)")
    return 0 if result["ok"] else 1


def add_export_nnunet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prepared_dir", help=PREPARED_HELP)
    p.add_argument("out", help="where Dataset<ID>_<NAME>/ goes, normally $nnUNet_raw (created if needed)")
    p.add_argument("--id", type=int, required=True, help="nnU-Net dataset id, 1..999 (custom datasets 500..999)")
    p.add_argument("--name", default="Fracture", help="nnU-Net dataset name (default Fracture)")


def run_export_nnunet(args) -> int:
    require_prepared(args.prepared_dir)
    from monaifrac.data.nnunet import export_nnunet

    summary = export_nnunet(args.prepared_dir, args.out, dataset_id=args.id, name=args.name)
    print(json.dumps(summary, indent=2))
    name = summary["dataset_name"]
    print(f"wrote {summary['dataset_dir']}" + (" (replacing the earlier export)" if summary["replaced"] else ""))
    print(f"nnU-Net reads the split from $nnUNet_preprocessed/{name}/splits_final.json; recent releases (2.8.1 "
          f"does) copy it there from the raw folder in nnUNetv2_plan_and_preprocess, older ones need it copied:\n"
          f"  mkdir -p \"$nnUNet_preprocessed/{name}\" && "
          f"cp {summary['splits_final']} \"$nnUNet_preprocessed/{name}/\"\n"
          f"fold 0 is the official split; fold k+1 is monaifrac's cross-validation fold k")
    if summary["replaced"]:
        print(f"after a re-export, delete $nnUNet_preprocessed/{name} before planning again")
    return 0


#: name → (one line of help, add_arguments(parser), run(args) -> exit status), in the order ``--help`` lists them
COMMANDS = {
    "prepare": ("FracAtlas (and/or Labelme) folder → NIfTI pairs + datalist.json", add_prepare_arguments,
                run_prepare),
    "synth": ("write a synthetic dataset in the FracAtlas layout", add_synth_arguments, run_synth),
    "preview": ("PNG overlays of prepared cases (previews/<id>.png)", add_preview_arguments, run_preview),
    "check": ("integrity check of a prepared dataset (what training runs first)", add_check_arguments, run_check),
    "export-nnunet": ("a prepared folder → raw nnU-Net v2 dataset (PNG) with the same split",
                      add_export_nnunet_arguments, run_export_nnunet),
}
