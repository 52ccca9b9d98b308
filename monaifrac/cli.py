"""The ``monaifrac`` command: parses arguments and calls one stage; no logic of its own."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monaifrac.data.cases import ON_ERROR_CHOICES, DataError
from monaifrac.io import InputError


def _cmd_prepare(args) -> int:
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


def _cmd_synth(args) -> int:
    from monaifrac.data.synth import make_synthetic_fracatlas

    summary = make_synthetic_fracatlas(args.out_dir, n=args.n, seed=args.seed)
    if args.dicom:
        from monaifrac.dicom.films import write_dicom_copies

        summary["dicom"] = write_dicom_copies(args.out_dir)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_preview(args) -> int:
    from monaifrac.data.preview import write_previews

    for path in write_previews(args.prepared_dir, n=args.n, ids=args.ids):
        print(path)
    return 0


def _bundle_overrides(args, **named) -> dict:
    from monaifrac.bundle import parse_overrides

    overrides = {k: v for k, v in named.items() if v is not None}
    overrides.update(parse_overrides(args.set))
    return overrides


def _cmd_train(args) -> int:
    from monaifrac.bundle import run_bundle

    configs = ["train"] + (["train_gan"] if args.mode == "gan" else []) + _variant_configs(args)
    run_bundle(configs, bundle_root=args.bundle_root,
               **_bundle_overrides(args, dataset_dir=args.dataset_dir, max_epochs=args.epochs, fold=args.fold,
                                   **_network_overrides(args)))
    return 0


def _cmd_evaluate(args) -> int:
    from monaifrac.bundle import run_bundle

    configs = ["train", "evaluate"] + _variant_configs(args)
    run_bundle(configs, bundle_root=args.bundle_root,
               **_bundle_overrides(args, dataset_dir=args.dataset_dir, eval_part=args.part, model_file=args.model,
                                   **_network_overrides(args)))
    return 0


def _cmd_infer(args) -> int:
    from monaifrac.bundle import run_bundle

    configs = ["inference"] + _variant_configs(args)
    inputs = args.inputs[0] if len(args.inputs) == 1 else list(args.inputs)
    run_bundle(configs, bundle_root=args.bundle_root,
               **_bundle_overrides(args, input_files=inputs, output_dir=args.output_dir, model_file=args.model,
                                   model_files=args.models, tta=True if args.tta else None,
                                   save_overlays=True if args.overlays else None,
                                   save_dicom=_dicom_kinds(args.dicom), save_dicom_seg=True if args.dicom_seg else None,
                                   engine=args.engine,
                                   **_network_overrides(args)))
    return 0


def _dicom_kinds(text: str | None) -> str | None:
    """``--dicom`` checked (one line for an unknown kind) and passed on as inference.json's ``save_dicom``."""
    if text is None:
        return None
    from monaifrac.dicom.results import parse_kinds

    try:
        return ",".join(parse_kinds(text)) or "none"
    except ValueError as err:
        raise InputError("--dicom", str(err)) from None


def _cmd_quantize(args) -> int:
    from monaifrac.bundle import run_bundle

    run_bundle(["inference", "quantize"] + _variant_configs(args), bundle_root=args.bundle_root,
               **_bundle_overrides(args, dataset_dir=args.dataset_dir, model_file=args.model,
                                   calibration_films=args.films, **_network_overrides(args)))
    return 0


def _cmd_pacs_push(args) -> int:
    from monaifrac.dicom.web import push

    stored = push(args.folder, args.url, user=args.user, password=args.password, films=args.films,
                  timeout=args.timeout, report=print)
    print(f"stored {len(stored)} instance(s) in {args.url}")
    return 0


def _cmd_pacs_pull(args) -> int:
    from monaifrac.dicom.web import pull

    written = pull(args.url, args.out, study=args.study, modalities=tuple(args.modality), user=args.user,
                   password=args.password, timeout=args.timeout, report=print)
    where = f"study {args.study}" if args.study else "all studies"
    print(f"pulled {len(written)} {'/'.join(args.modality)} instance(s) of {where} into {args.out}")
    return 0


def _cmd_pacs_watch(args) -> int:
    import logging

    from monaifrac.serving.watch import StateLocked, watch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s pacs-watch: %(message)s", stream=sys.stderr)
    for noisy in ("highdicom", "dicomweb_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    kinds = _dicom_kinds(args.dicom)
    if kinds == "none":
        raise InputError("--dicom", "pacs-watch needs at least one of sr, sc, seg")
    try:
        handled = watch(args.url, args.state, kinds=kinds, once=args.once,
                        bundle_root=args.bundle_root, model_file=args.model, configs=tuple(_variant_configs(args)),
                        user=args.user, password=args.password, timeout=args.timeout, poll=args.poll,
                        max_backoff=args.max_backoff, overrides=_bundle_overrides(args, **_network_overrides(args)),
                        ready=lambda: print("pacs-watch: ready", file=sys.stderr, flush=True))
    except StateLocked as err:
        raise InputError(args.state, str(err).split(": ", 1)[-1]) from None
    print(f"pacs-watch: handled {handled} film(s)", file=sys.stderr)
    return 0


def _cmd_cv(args) -> int:
    from monaifrac.crossval import FIGURES, run_cv

    rows = run_cv(args.dataset_dir, args.out, folds=args.folds, configs=tuple(_variant_configs(args)),
                  **_bundle_overrides(args, max_epochs=args.epochs, **_network_overrides(args)))
    print("fold  films  " + "  ".join(FIGURES))
    for r in rows:
        print(f"{r['fold']:>4}  {r['films']:>5}  " + "  ".join("–" if r[n] is None else f"{r[n]:.4f}" for n in FIGURES))
    print(f"wrote {Path(args.out) / 'cv_folds.csv'} and {Path(args.out) / 'cv_summary.json'}")
    return 0


def _cmd_check(args) -> int:
    from monaifrac.data.check import check_dataset

    result = check_dataset(args.dataset_dir, workers=args.workers)
    for problem in result["problems"]:
        print(problem)
    print(f"{result['datalist']}: {result['items']} item(s), {len(result['problems'])} problem(s)")
    return 0 if result["ok"] else 1


def _cmd_calibrate(args) -> int:
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


def _cmd_average(args) -> int:
    import tempfile

    import torch

    from monaifrac.checkpoints import average_weights
    from monaifrac.io import atomic_path

    state = average_weights(args.checkpoints)
    if not args.bn_data:
        with atomic_path(args.out) as tmp:
            torch.save(state, tmp)
        print(f"wrote {args.out}: the mean of {len(args.checkpoints)} networks' weights ({len(state)} tensors)")
        return 0
    from monaifrac.bundle import run_bundle

    # the averaged weights go to a temporary folder; the re-estimated ones, written atomically, to --out
    with tempfile.TemporaryDirectory(prefix="average-") as tmp:
        mean_file = Path(tmp) / "mean.pt"
        torch.save(state, mean_file)
        run_bundle(["train", "update_bn"] + _variant_configs(args), bundle_root=args.bundle_root,
                   **_bundle_overrides(args, dataset_dir=args.bn_data, model_file=str(mean_file),
                                       output_file=str(args.out), **_network_overrides(args)))
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} networks' weights, batch-norm statistics "
          f"re-estimated on the training films of {args.bn_data}")
    return 0


def _cmd_score(args) -> int:
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


def _cmd_report(args) -> int:
    from monaifrac.evaluation.report import write_report

    path = write_report(args.score_dir, args.out, max_films=args.max_films)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in any browser")
    return 0


def _cmd_export_nnunet(args) -> int:
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


#: monaifrac.networks.onnx.ENGINES, spelled out so that building the parser imports no torch
ENGINES = ("torch", "onnxruntime", "onnxruntime-int8")
NETWORKS = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "unet", "basic_unet")


def _variant_configs(args) -> list[str]:
    """The override files the options select, in the order they apply."""
    return ([args.network] if args.network in ("unet", "basic_unet") else []) + \
        (["patches"] if getattr(args, "patches", False) else []) + \
        (["sliding_window"] if getattr(args, "sliding_window", False) else [])


def _network_overrides(args) -> dict:
    """The default network with another EfficientNet-Lite backbone: only the ``backbone`` id changes."""
    return {"backbone": args.network} if args.network.startswith("efficientnet-lite") and \
        args.network != "efficientnet-lite0" else {}


def _add_bundle_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle-root", help="where models/ and eval/ are (default: the bundle of this repository)")
    p.add_argument("--network", choices=NETWORKS, default="efficientnet-lite0",
                   help="network definition: the default, an EfficientNet-Lite U-Net with a presence output "
                        "(lite1/lite2 set its backbone), or the earlier UNet/BasicUNet (adds configs/<name>.json; "
                        "their weights load only with it)")
    p.add_argument("--sliding-window", action="store_true",
                   help="see each film through 256 x 256 windows instead of whole (adds configs/sliding_window.json)")
    p.add_argument("--set", nargs="+", metavar="ID=VALUE", help="other config overrides, e.g. patch_size=[128,128]")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="monaifrac", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("prepare", help="FracAtlas (and/or Labelme) folder → NIfTI pairs + datalist.json")
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
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("synth", help="write a synthetic dataset in the FracAtlas layout")
    p.add_argument("out_dir")
    p.add_argument("--n", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dicom", action="store_true", help="also write the films as DX DICOM files in OUT_DIR/dicom/ "
                                                        "(the first MONOCHROME1, the second with a pixel spacing)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("preview", help="PNG overlays of prepared cases (previews/<id>.png)")
    p.add_argument("prepared_dir")
    p.add_argument("--n", type=int, default=8, help="how many (fractured first) when no --ids")
    p.add_argument("--ids", nargs="+", help="case ids to preview")
    p.set_defaults(func=_cmd_preview)

    p = sub.add_parser("train", help="train the bundle (configs/train.json)")
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    p.add_argument("--epochs", type=int, help="max_epochs")
    p.add_argument("--fold", type=int, help="cross-validation fold held out (-1: official split)")
    p.add_argument("--mode", choices=("supervised", "gan"), default="supervised",
                   help="gan: adversarial segmentation (adds configs/train_gan.json; set adv_weight=..., "
                        "adv_warmup_epochs=..., d_learning_rate=... with --set)")
    p.add_argument("--patches", action="store_true",
                   help="train on random patches (patch_size, num_samples, crop_ratios) instead of whole films "
                        "(adds configs/patches.json)")
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="evaluate models/model.pt on a datalist part (configs/evaluate.json)")
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    p.add_argument("--part", choices=("validation", "test", "train", "val"), help="datalist part (default validation)")
    p.add_argument("--model", help="weights to evaluate (default <bundle-root>/models/model.pt)")
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("infer", help="label maps (and overlays) for films (configs/inference.json)")
    p.add_argument("inputs", nargs="+", help="a folder of films, or film files (JPG/PNG/DICOM/NIfTI)")
    p.add_argument("--output-dir", required=True, help="where <stem>.png (and <stem>_overlay.png) go")
    p.add_argument("--overlays", action="store_true", help="also write <stem>_overlay.png, the film with the labels "
                                                           "drawn on it (costs about a fifth of the inference time)")
    p.add_argument("--model", help="weights (default <bundle-root>/models/model.pt)")
    p.add_argument("--models", nargs="+", metavar="PT", help="an ensemble: several weights files of the same network, "
                                                             "their class probabilities averaged")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation (probabilities averaged over "
                                                      "the film and its left-right and up-down flips)")
    p.add_argument("--dicom", metavar="KINDS", nargs="?", const="sr,sc",
                   help="also write, for each DICOM film, DICOM objects of its study for the PACS, named by a comma "
                        "list: sr (<stem>.sr.dcm, a Structured Report: score, call, fracture outlines), sc "
                        "(<stem>.sc.dcm, a Secondary Capture: the film with fractures outlined and a banner; every "
                        "viewer shows it), seg (<stem>.seg.dcm, a pixel-exact Segmentation; OHIF 3.10 cannot show "
                        "it on a film). --dicom alone: sr,sc")
    p.add_argument("--dicom-seg", action="store_true", help="also write <stem>.seg.dcm for each DICOM film: a DICOM "
                                                            "Segmentation (bone, fracture) of the film, for the PACS "
                                                            "(the same as seg in --dicom)")
    p.add_argument("--engine", choices=ENGINES,
                   help="what runs the network: onnxruntime (the default on a CPU: faster; the ONNX file is exported "
                        "once per weights and cached beside them), torch (the default on a GPU and under bf16) or "
                        "onnxruntime-int8 (the weights' int8 file, made by `monaifrac quantize`)")
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser("quantize", help="the int8 ONNX file of the weights for --engine onnxruntime-int8, "
                                        "calibrated on training films (configs/quantize.json)")
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`: its training films calibrate")
    p.add_argument("--model", help="weights (default <bundle-root>/models/model.pt); the int8 file goes beside them "
                                   "as <stem>.<weights hash>.int8.onnx")
    p.add_argument("--films", type=int, help="calibration films, half fractured (default 48)")
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("check", help="integrity check of a prepared dataset (what training runs first)")
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    p.add_argument("--workers", type=int, default=2, help="reading threads")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("cv", help="k-fold cross-validation: train and evaluate each fold, write a table")
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare` (its training items carry folds)")
    p.add_argument("--folds", type=int, default=5, help="folds 0..N-1 (default 5)")
    p.add_argument("--out", required=True, help="fold_<k>/ bundle roots, cv_folds.csv and cv_summary.json")
    p.add_argument("--epochs", type=int, help="max_epochs of each fold")
    p.add_argument("--network", choices=NETWORKS, default="efficientnet-lite0", help="network definition")
    p.add_argument("--patches", action="store_true", help="train on patches instead of whole films")
    p.add_argument("--set", nargs="+", metavar="ID=VALUE", help="config overrides for every fold's runs")
    p.set_defaults(func=_cmd_cv)

    p = sub.add_parser("calibrate", help="fit the fusion of the presence output and the mask score on an "
                                         "inference run of validation films (predictions.csv)")
    p.add_argument("pred_dir", help="an inference output folder: label maps and predictions.csv with presence_score "
                                    "and mask_score")
    p.add_argument("--truth", required=True, help="FracAtlas-layout folder or a folder written by `monaifrac prepare`")
    p.add_argument("--split", help="use only the films of this split (each must have a prediction)")
    p.add_argument("--out", help="folder for calibration.json")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the AUC intervals")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("average", help="one network with the mean weights of several checkpoints of a run "
                                       "(stochastic weight averaging)")
    p.add_argument("checkpoints", nargs="+", help="model.pt or checkpoint_epoch=N.pt files of one network")
    p.add_argument("--out", required=True, help="the averaged weights, a model.pt for --model or bundle/models")
    p.add_argument("--bn-data", metavar="DATASET_DIR", help="re-estimate the batch-norm statistics of the averaged "
                   "network on an epoch of this prepared folder's training films (configs/update_bn.json); "
                   "default: the statistics are averaged like the weights")
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_average)

    p = sub.add_parser("score", help="score label maps (and predictions.csv) against a FracAtlas-layout folder")
    p.add_argument("pred_dir", help="<film id>.png label maps {0,1,2} or binary fracture masks, optional predictions.csv")
    p.add_argument("--truth", required=True, help="FracAtlas-layout folder or a folder written by `monaifrac prepare`")
    p.add_argument("--out", required=True, help="where metrics.json and per_film.csv go")
    p.add_argument("--split", help="score exactly this split (FracAtlas train/valid/test, or a datalist section)")
    p.add_argument("--pred-kind", choices=("auto", "labels", "binary"), default="auto",
                   help="label maps or binary fracture masks (auto: decided from predictions.csv and the values)")
    p.add_argument("--threshold", type=float, help="presence threshold on fracture_score (default: the 'fractured' "
                                                   "column of predictions.csv, else any fracture pixel)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser("report", help="self-contained HTML report of a score folder")
    p.add_argument("score_dir", help="a folder written by `monaifrac score`")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--max-films", type=int, help="cards for the worst N films only (default: all)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export-nnunet", help="a prepared folder → raw nnU-Net v2 dataset (PNG) with the same split")
    p.add_argument("prepared_dir", help="a folder written by `monaifrac prepare`")
    p.add_argument("out", help="where Dataset<ID>_<NAME>/ goes, normally $nnUNet_raw (created if needed)")
    p.add_argument("--id", type=int, required=True, help="nnU-Net dataset id, 1..999 (custom datasets 500..999)")
    p.add_argument("--name", default="Fracture", help="nnU-Net dataset name (default Fracture)")
    p.set_defaults(func=_cmd_export_nnunet)

    p = sub.add_parser("pacs-push", help="store the DICOM results of a folder (*.sr.dcm, *.sc.dcm, *.seg.dcm) in a "
                                         "PACS by DICOMweb STOW-RS")
    p.add_argument("folder", help="an inference output folder written with --dicom (or --dicom-seg)")
    p.add_argument("--films", action="store_true", help="also store the folder's other DICOM files (films)")
    _add_pacs_options(p)
    p.set_defaults(func=_cmd_pacs_push)

    p = sub.add_parser("pacs-pull", help="retrieve the DX films of a PACS (all studies, or one) by DICOMweb into a "
                                         "folder, as <SOPInstanceUID>.dcm")
    p.add_argument("--out", required=True, help="folder for the films (created; files of the same instance replaced)")
    p.add_argument("--study", help="Study Instance UID (default: every study)")
    p.add_argument("--modality", nargs="+", default=["DX"], help="series modalities to retrieve (default DX)")
    _add_pacs_options(p)
    p.set_defaults(func=_cmd_pacs_pull)

    p = sub.add_parser("pacs-watch", help="give every new DX/CR film of a PACS its DICOM results (SR and SC by "
                                          "default) in its study, by DICOMweb, each film once; runs until stopped")
    p.add_argument("--state", required=True, help="folder of the watcher's state (films.jsonl: the films handled; "
                                                  "keep it across restarts)")
    p.add_argument("--dicom", metavar="KINDS", default="sr,sc", help="which objects, as for infer (default sr,sc)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between two looks for new films (default 0.5)")
    p.add_argument("--max-backoff", type=float, default=30.0,
                   help="the longest wait between tries while the PACS is down (default 30 s)")
    p.add_argument("--once", action="store_true", help="handle the films there now, then exit")
    p.add_argument("--model", help="weights (default <bundle-root>/models/model.pt)")
    _add_pacs_options(p)
    _add_bundle_options(p)
    p.set_defaults(func=_cmd_pacs_watch)

    return parser


def _add_pacs_options(p: argparse.ArgumentParser) -> None:
    from monaifrac.dicom.web import DEFAULT_TIMEOUT

    p.add_argument("--url", required=True, help="the DICOMweb root, e.g. http://127.0.0.1:8042/dicom-web")
    p.add_argument("--user", help="PACS user (default: $MONAIFRAC_PACS_USER)")
    p.add_argument("--password", help="PACS password (default: $MONAIFRAC_PACS_PASSWORD, the better place: a "
                                      "command line is visible to other users)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for the PACS, per request (default {DEFAULT_TIMEOUT:g})")


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RuntimeError as err:
        # MONAI wraps a config expression's error ("Failed to evaluate ...") around ours, e.g. a
        # missing datalist.json; show the user the cause, not the parser's traceback.
        from monaifrac.handlers import TrainingDiverged
        from monaifrac.networks.onnx import EngineError

        cause = _root_cause(err)
        if not isinstance(cause, (OSError, DataError, InputError, ValueError, TrainingDiverged, EngineError)):
            raise
    except (OSError, DataError, InputError) as err:
        cause = err
    # bad input (a missing or unreadable file, a bad dataset) exits 2; the machine failing us
    # (a full disk, a read-only folder) exits 1; either way one line naming the file
    print(f"monaifrac {args.command}: error: {cause}", file=sys.stderr)
    return 1 if isinstance(cause, OSError) and not isinstance(cause, FileNotFoundError) else 2


if __name__ == "__main__":
    sys.exit(main())
