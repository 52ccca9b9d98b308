"""Peak memory of the bundle's training with its cache, against the same training with a change, side by side.

Usage: python scripts/bench_train_memory.py PREPARED_DIR [--iters 100] [--num-workers 2] [--no-validation]
                                            [--set ID=VALUE ...] [--compare ID=VALUE ...]

Runs ``monaifrac train PREPARED_DIR`` twice in fresh processes, one right after the other, for one
epoch of ``--iters`` iterations (the first ``--iters`` x batch_size films of one draw of the config's
own ``train#sampler``, by default every fractured film and as many normals, in a
``SubsetRandomSampler``; fewer where the draw holds fewer films), the whole training split cached,
followed by the epoch's validation
over the whole validation split (whole films, metrics, checkpoint), as every real epoch ends. Both
start from the shipped weights (``init_from`` = bundle/models/model.pt, where it exists): an untrained
network marks fracture all over every film, and HD95 over such masks takes many minutes a film.

* **shipped**: train.json as it is (plus ``--set``): ``CacheDataset`` with ``cache_rate`` 1 over the
  whole training split and the validation split, DataLoader workers, network, optimiser, trainer.
* **compare**: the same plus ``--compare`` (default ``cache_rate=0``: no cache, every film read and
  preprocessed again each time it is drawn), so the ratio says what the cache costs, or what a
  change to it saves.

Memory is sampled every 0.2 s over the whole run (caching included) as the **sum of PSS** of the
training process and every descendant (the DataLoader workers and CacheDataset's pool), read
from ``/proc/PID/smaps_rollup``: forked workers share the cache's pages copy-on-write, and PSS
counts each shared page once across the processes, where a sum of RSS would count it once per
process. The project's goal (issue 10): training on both shared FracAtlas folders with caching
within 4 GiB. Prepare both with
``monaifrac prepare ../shared/data/fracatlas ../shared/data/fracatlas-normals --out PREPARED_DIR``.
The last line is one JSON object with every figure and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model, proc_stats  # scripts/ is on sys.path when a script runs

GIB = 1024 ** 3
SHIPPED = Path(__file__).resolve().parents[1] / "bundle" / "models" / "model.pt"


def descendants(root: int) -> list[int]:
    """``root`` and every live process below it, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for pid, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def memory_kib(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB, (0, 0) once it is gone."""
    pss = rss = 0
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def run_training(dataset_dir: str, overrides: list[str], iters: int, workers: int, validate: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_train_memory_") as root:
        cmd = [sys.executable, "-m", "monaifrac", "train", dataset_dir, "--bundle-root", root, "--epochs", "1",
               # an epoch of `iters` batches drawn from the whole cached split, so that the loader's iterator
               # ends and its workers exit before validation, as at the end of a real epoch (a shortened
               # epoch_length would keep them alive, holding memory, through the validation)
               "--set", f"num_workers={workers}", "train#dataloader#shuffle=false",
               "train#dataloader#sampler=$torch.utils.data.SubsetRandomSampler("
               f"list(@train#sampler)[:{iters} * @batch_size])",
               f"val_interval={1 if validate else 1000000}", "early_stop_patience=1000000",
               *([f"init_from={SHIPPED}"] if SHIPPED.is_file() else []), *overrides]
        log = Path(root) / "train.log"
        start = time.perf_counter()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            peak_pss = peak_rss_main = peak_procs = last_pss = 0
            peak_at = 0.0
            while proc.poll() is None:
                pids = descendants(proc.pid)
                sizes = [memory_kib(p) for p in pids]
                total = sum(s[0] for s in sizes)
                if total > peak_pss:
                    peak_pss, peak_at = total, time.perf_counter() - start
                last_pss = total or last_pss
                peak_rss_main = max(peak_rss_main, sizes[0][1])
                peak_procs = max(peak_procs, sum(1 for s in sizes if s[0]))
                time.sleep(0.2)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"bench_train_memory: training failed ({proc.returncode}): {' '.join(cmd)}\n"
                     + log.read_text()[-3000:])
    return {"overrides": overrides, "peak_pss_gib": round(peak_pss * 1024 / GIB, 3),
            "peak_rss_main_gib": round(peak_rss_main * 1024 / GIB, 3), "processes": peak_procs,
            "peak_at_s": round(peak_at, 1), "last_pss_gib": round(last_pss * 1024 / GIB, 3), "wall_s": round(wall, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    parser.add_argument("--iters", type=int, default=100, help="training iterations after caching (default 100)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader and caching workers (default 2)")
    parser.add_argument("--no-validation", action="store_true", help="skip the validation at the end of the epoch")
    parser.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE", help="overrides for both runs")
    parser.add_argument("--compare", nargs="+", default=["cache_rate=0"], metavar="ID=VALUE",
                        help="overrides of the second run only (default: cache_rate=0)")
    args = parser.parse_args()

    datalist = json.loads((Path(args.dataset_dir) / "datalist.json").read_text())
    films = {k: len(datalist.get(k, [])) for k in ("training", "validation")}
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    except (ValueError, OSError):
        ram = float("nan")
    host = {"cpu": cpu_model(), "usable_cpus": len(os.sched_getaffinity(0)), "ram_gib": round(ram, 1)}
    print(f"machine: {host['cpu']}, {host['usable_cpus']} usable cores, {host['ram_gib']} GiB")
    print(f"data: {args.dataset_dir}: {films['training']} training films, {films['validation']} validation films")

    validate = not args.no_validation
    shipped = run_training(args.dataset_dir, args.set, args.iters, args.num_workers, validate)
    compare = run_training(args.dataset_dir, args.set + args.compare, args.iters, args.num_workers, validate)
    for name, r in (("shipped", shipped), ("compare", compare)):
        print(f"{name:<8} {' '.join(r['overrides']) or '(train.json)':<40} peak PSS {r['peak_pss_gib']:.2f} GiB "
              f"at {r['peak_at_s']:.0f} s of {r['wall_s']:.0f} s (main RSS {r['peak_rss_main_gib']:.2f} GiB, "
              f"{r['processes']} processes); at the end {r['last_pss_gib']:.2f} GiB")
    ratio = shipped["peak_pss_gib"] / compare["peak_pss_gib"]
    print(f"shipped / compare peak memory: {ratio:.2f}; goal: shipped <= 4 GiB on both FracAtlas folders")
    print(json.dumps({"machine": host, "films": films, "iters": args.iters, "num_workers": args.num_workers,
                      "validation": validate,
                      "shipped": shipped, "compare": compare, "ratio": round(ratio, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
