"""Wall and CPU time of one training epoch of the bundle, on a prepared dataset.

Usage: python scripts/bench_epoch.py PREPARED_DIR [--set ID=VALUE ...] [--threads N]

Runs ``bundle/configs/train.json`` for one epoch (into a temporary bundle root) with the
bundle's defaults (patch 256², batch 4 films × 4 patches) unless overridden, and prints,
separately: caching the deterministic transforms, the training epoch, and the validation
that follows it. CPU time is user + system of this process and its worker processes.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

from monai.bundle import ConfigWorkflow

from monaifrac.bundle import REPO_BUNDLE, parse_overrides

CONFIGS = REPO_BUNDLE / "configs"


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset_dir")
    parser.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {"max_epochs": 1, **parse_overrides(args.set)}
    with tempfile.TemporaryDirectory() as root:
        wf = ConfigWorkflow(config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
                            logging_file=str(CONFIGS / "logging.conf"), workflow_type="train",
                            dataset_dir=args.dataset_dir, bundle_root=root, **overrides)
        marks = [(time.perf_counter(), cpu_seconds())]
        wf.initialize()  # builds the trainer, so both datasets are cached here
        trainer = wf.parser.get_parsed_content("train#trainer")
        evaluator = wf.parser.get_parsed_content("validate#evaluator")
        marks.append((time.perf_counter(), cpu_seconds()))
        wf.run()
        marks.append((time.perf_counter(), cpu_seconds()))
        wf.finalize()
    val_wall = float(evaluator.state.times.get("COMPLETED") or 0.0)
    epoch_total_wall = marks[2][0] - marks[1][0]
    result = {
        "dataset_dir": args.dataset_dir,
        "overrides": overrides,
        "torch_threads": torch.get_num_threads(),
        "train_films": len(trainer.data_loader.dataset),
        "iterations": trainer.state.iteration,
        "validation_films": len(evaluator.data_loader.dataset),
        "cache_wall_s": round(marks[1][0] - marks[0][0], 1),
        "cache_cpu_s": round(marks[1][1] - marks[0][1], 1),
        "epoch_with_validation_wall_s": round(epoch_total_wall, 1),
        "epoch_with_validation_cpu_s": round(marks[2][1] - marks[1][1], 1),
        "validation_wall_s": round(val_wall, 1),
        "training_only_wall_s": round(epoch_total_wall - val_wall, 1),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
