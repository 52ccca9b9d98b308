"""``monaifrac benchmark memory PREPARED_DIR``: training's peak memory, shipped against a change, side by side.

Runs ``monaifrac train PREPARED_DIR`` twice in fresh processes, one right after the other, for one epoch
of ``--iters`` iterations (the first ``--iters`` x batch_size films of one draw of the config's own
``train#sampler``, in a ``SubsetRandomSampler``), the whole training split cached, followed by the
epoch's validation over the whole validation split (whole films, metrics, checkpoint), as every real
epoch ends. Both start from the shipped weights (``init_from`` = bundle/models/model.pt, where it
exists): an untrained network marks fracture all over every film, and HD95 over such masks takes
minutes a film.

* **shipped**: train.json as it is (plus ``--set``);
* **compare**: the same plus ``--compare`` (default ``cache_rate=0``: no cache), so the ratio says what
  the cache costs, or what a change saves.

Memory is sampled every 0.2 s over the whole run (caching included) as the **sum of PSS** of the
training process and every descendant (:mod:`.processes`): forked workers share the cache's pages
copy-on-write, and PSS counts each shared page once across them. The project's goal (issue 10):
training on both shared FracAtlas folders with caching within 4 GiB; prepare both with ``monaifrac
prepare ../shared/data/fracatlas ../shared/data/fracatlas-normals --out PREPARED_DIR``. One run per
configuration (each takes minutes): the spread is that of reruns, about 0.1 GiB on the project's machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from monaifrac.benchmark import timing
from monaifrac.benchmark.processes import GIB, descendants, pss_rss_kib
from monaifrac.benchmark.tables import Report, Table, num, progress
from monaifrac.bundle import REPO_BUNDLE

SHIPPED = REPO_BUNDLE / "models" / "model.pt"
GOAL_GIB = 4.0


def add_arguments(p) -> None:
    p.add_argument("dataset_dir", help="a folder written by `monaifrac prepare`")
    p.add_argument("--iters", type=int, default=100, help="training iterations after caching (default 100)")
    p.add_argument("--num-workers", type=int, default=2, help="DataLoader and caching workers (default 2)")
    p.add_argument("--no-validation", action="store_true", help="skip the validation at the end of the epoch")
    p.add_argument("--set", nargs="+", default=[], metavar="ID=VALUE", help="overrides for both runs")
    p.add_argument("--compare", nargs="+", default=["cache_rate=0"], metavar="ID=VALUE",
                   help="overrides of the second run only (default: cache_rate=0)")


def run_training(dataset_dir: str, overrides: list[str], iters: int, workers: int, validate: bool) -> dict:
    """One training in a fresh process, its tree's memory sampled every 0.2 s."""
    with tempfile.TemporaryDirectory(prefix="monaifrac_benchmark_memory_") as root:
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
        start = timing.clock()
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            peak_pss = peak_rss_main = peak_procs = last_pss = 0
            peak_at = 0.0
            while proc.poll() is None:
                sizes = [pss_rss_kib(p) for p in descendants(proc.pid)]
                total = sum(s[0] for s in sizes)
                if total > peak_pss:
                    peak_pss, peak_at = total, timing.clock() - start
                last_pss = total or last_pss
                peak_rss_main = max(peak_rss_main, sizes[0][1])
                peak_procs = max(peak_procs, sum(1 for s in sizes if s[0]))
                time.sleep(0.2)
        wall = timing.clock() - start
        if proc.returncode != 0:
            raise RuntimeError(f"training failed ({proc.returncode}): {' '.join(cmd)}\n" + log.read_text()[-3000:])
    return {"overrides": overrides, "peak_pss_gib": peak_pss * 1024 / GIB, "peak_rss_main_gib": peak_rss_main * 1024
            / GIB, "processes": peak_procs, "peak_at_s": peak_at, "last_pss_gib": last_pss * 1024 / GIB,
            "wall_s": wall}


def main(args, report: Report) -> None:
    from monaifrac.data.cases import DataError

    path = Path(args.dataset_dir) / "datalist.json"
    try:
        datalist = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a prepared folder's datalist ({err})") from None
    films = {k: len(datalist.get(k, [])) for k in ("training", "validation")}
    validate = not args.no_validation
    progress(f"{args.dataset_dir}: {films['training']} training films, {films['validation']} validation films; "
             "shipped run")
    shipped = run_training(args.dataset_dir, args.set, args.iters, args.num_workers, validate)
    progress("compare run")
    compare = run_training(args.dataset_dir, args.set + args.compare, args.iters, args.num_workers, validate)
    ratio = shipped["peak_pss_gib"] / compare["peak_pss_gib"]
    report.results = {"dataset_dir": args.dataset_dir, "films": films, "iters": args.iters,
                      "num_workers": args.num_workers, "validation": validate, "shipped": shipped,
                      "compare": compare, "ratio": ratio}
    t = Table(f"training's peak memory: {films['training']} training + {films['validation']} validation films "
              f"cached, {args.iters} iterations" + (" + a validation" if validate else ""),
              ["run", "overrides", "peak PSS GiB", "at s", "of s", "main RSS GiB", "processes", "PSS at end GiB"],
              notes=[f"shipped / compare peak memory: {ratio:.2f}"])
    for name, r in (("shipped", shipped), ("compare", compare)):
        t.add(name, " ".join(r["overrides"]) or "(train.json)", num(r["peak_pss_gib"], 2), num(r["peak_at_s"], 0),
              num(r["wall_s"], 0), num(r["peak_rss_main_gib"], 2), str(r["processes"]), num(r["last_pss_gib"], 2))
    report.tables.append(t)
    report.goal(f"shipped <= {GOAL_GIB:.0f} GiB (on both FracAtlas folders)", f"{shipped['peak_pss_gib']:.2f} GiB",
                shipped["peak_pss_gib"] <= GOAL_GIB)
