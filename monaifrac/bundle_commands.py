"""The commands that run the bundle: ``monaifrac train``, ``evaluate``, ``infer``, ``quantize``, ``average``, ``cv``.

Each is a pair, registered in :data:`COMMANDS`: ``add_<name>_arguments(parser)`` declares its
options (with :func:`monaifrac.bundle.add_bundle_options`, the options all of them share) and
imports nothing heavy; ``run_<name>(args)`` checks the paths the command line names
(:mod:`monaifrac.errors`, :func:`monaifrac.bundle.require_models`), then imports what the run
needs and starts it. So ``--help``, a bad option or a missing input answers before torch, MONAI
or any config is loaded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from monaifrac.bundle import ENGINES, add_bundle_options, require_models, run_bundle, run_options
from monaifrac.dicom.commands import dicom_kinds
from monaifrac.errors import InputError, require_exists, require_prepared

PREPARED_HELP = "a folder written by `monaifrac prepare`"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help=PREPARED_HELP)
    p.add_argument("--epochs", type=int, help="max_epochs")
    p.add_argument("--fold", type=int, help="cross-validation fold held out (-1: official split)")
    p.add_argument("--mode", choices=("supervised", "gan"), default="supervised",
                   help="gan: adversarial segmentation (adds configs/train_gan.json; set adv_weight=..., "
                        "adv_warmup_epochs=..., d_learning_rate=... with --set)")
    add_bundle_options(p, patches=True)


def run_train(args) -> int:
    require_prepared(args.dataset_dir)
    configs, overrides = run_options(args, dataset_dir=args.dataset_dir, max_epochs=args.epochs, fold=args.fold)
    run_bundle(["train"] + (["train_gan"] if args.mode == "gan" else []) + configs, bundle_root=args.bundle_root,
               **overrides)
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help=PREPARED_HELP)
    p.add_argument("--part", choices=("validation", "test", "train", "val"), help="datalist part (default validation)")
    p.add_argument("--model", help="weights to evaluate (default <bundle-root>/models/model.pt)")
    add_bundle_options(p)


def run_evaluate(args) -> int:
    require_prepared(args.dataset_dir)
    require_models([args.model])
    configs, overrides = run_options(args, dataset_dir=args.dataset_dir, eval_part=args.part, model_file=args.model)
    run_bundle(["train", "evaluate"] + configs, bundle_root=args.bundle_root, **overrides)
    return 0


def add_infer_arguments(p: argparse.ArgumentParser) -> None:
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
    add_bundle_options(p)


def run_infer(args) -> int:
    for path in args.inputs:
        require_exists(path)
    require_models([args.model, *(args.models or [])])
    inputs = args.inputs[0] if len(args.inputs) == 1 else list(args.inputs)
    configs, overrides = run_options(args, input_files=inputs, output_dir=args.output_dir, model_file=args.model,
                                     model_files=args.models, tta=True if args.tta else None,
                                     save_overlays=True if args.overlays else None,
                                     save_dicom=dicom_kinds(args.dicom),
                                     save_dicom_seg=True if args.dicom_seg else None, engine=args.engine)
    run_bundle(["inference"] + configs, bundle_root=args.bundle_root, **overrides)
    return 0


def add_quantize_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help=f"{PREPARED_HELP}: its training films calibrate")
    p.add_argument("--model", help="weights (default <bundle-root>/models/model.pt); the int8 file goes beside them "
                                   "as <stem>.<weights hash>.int8.onnx")
    p.add_argument("--films", type=int, help="calibration films, half fractured (default 48)")
    add_bundle_options(p)


def run_quantize(args) -> int:
    require_prepared(args.dataset_dir)
    require_models([args.model])
    configs, overrides = run_options(args, dataset_dir=args.dataset_dir, model_file=args.model,
                                     calibration_films=args.films)
    run_bundle(["inference", "quantize"] + configs, bundle_root=args.bundle_root, **overrides)
    return 0


def add_average_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", help="model.pt or checkpoint_epoch=N.pt files of one network")
    p.add_argument("--out", required=True, help="the averaged weights, a model.pt for --model or bundle/models")
    p.add_argument("--bn-data", metavar="DATASET_DIR", help="re-estimate the batch-norm statistics of the averaged "
                   "network on an epoch of this prepared folder's training films (configs/update_bn.json); "
                   "default: the statistics are averaged like the weights")
    add_bundle_options(p)


def run_average(args) -> int:
    for path in args.checkpoints:
        if not Path(path).is_file():
            raise InputError(path, "checkpoint not found")  # as monaifrac.checkpoints says it, before torch loads
    if args.bn_data:
        require_prepared(args.bn_data)

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
    # the averaged weights go to a temporary folder; the re-estimated ones, written atomically, to --out
    with tempfile.TemporaryDirectory(prefix="average-") as tmp:
        mean_file = Path(tmp) / "mean.pt"
        torch.save(state, mean_file)
        configs, overrides = run_options(args, dataset_dir=args.bn_data, model_file=str(mean_file),
                                         output_file=str(args.out))
        run_bundle(["train", "update_bn"] + configs, bundle_root=args.bundle_root, **overrides)
    print(f"wrote {args.out}: the mean of {len(args.checkpoints)} networks' weights, batch-norm statistics "
          f"re-estimated on the training films of {args.bn_data}")
    return 0


def add_cv_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", help=f"{PREPARED_HELP} (its training items carry folds)")
    p.add_argument("--folds", type=int, default=5, help="folds 0..N-1 (default 5)")
    p.add_argument("--out", required=True, help="fold_<k>/ bundle roots, cv_folds.csv and cv_summary.json")
    p.add_argument("--epochs", type=int, help="max_epochs of each fold")
    add_bundle_options(p, bundle_root=False, patches=True)  # each fold's bundle root is OUT/fold_<k>


def run_cv(args) -> int:
    require_prepared(args.dataset_dir)
    from monaifrac.crossval import FIGURES, run_cv as cross_validate

    configs, overrides = run_options(args, max_epochs=args.epochs)
    rows = cross_validate(args.dataset_dir, args.out, folds=args.folds, configs=tuple(configs), **overrides)
    print("fold  films  " + "  ".join(FIGURES))
    for r in rows:
        figures = ("–" if r[n] is None else f"{r[n]:.4f}" for n in FIGURES)
        print(f"{r['fold']:>4}  {r['films']:>5}  " + "  ".join(figures))
    print(f"wrote {Path(args.out) / 'cv_folds.csv'} and {Path(args.out) / 'cv_summary.json'}")
    return 0


#: name → (one line of help, add_arguments(parser), run(args) -> exit status), in the order ``--help`` lists them
COMMANDS = {
    "train": ("train the bundle (configs/train.json)", add_train_arguments, run_train),
    "evaluate": ("evaluate models/model.pt on a datalist part (configs/evaluate.json)", add_evaluate_arguments,
                 run_evaluate),
    "infer": ("label maps (and overlays) for films (configs/inference.json)", add_infer_arguments, run_infer),
    "quantize": ("the int8 ONNX file of the weights for --engine onnxruntime-int8, calibrated on training films "
                 "(configs/quantize.json)", add_quantize_arguments, run_quantize),
    "average": ("one network with the mean weights of several checkpoints of a run (stochastic weight averaging)",
                add_average_arguments, run_average),
    "cv": ("k-fold cross-validation: train and evaluate each fold, write a table", add_cv_arguments, run_cv),
}
