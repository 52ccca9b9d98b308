"""``monaifrac benchmark ddp-shutdown``: aborts at exit of 2-rank gloo DDP runs, with and without
``monaifrac.distributed.shutdown``, counted side by side.

Why this exists: with torch 2.13 on gloo, a DDP reducer that outlives its process group can abort rank
1 at interpreter exit (SIGABRT, "terminate called without an active exception"), which failed CI once in
the ``multi_gpu_train.json`` test. The fault is rare on an idle machine, so the benchmark loads every
core with busy loops (``--hogs``) while it launches ``torchrun`` runs of a tiny DDP training, alternating
the two shutdowns, and reports the failures of each::

    monaifrac benchmark ddp-shutdown --runs 50 --hogs 3

``--bundle`` launches the bundle's own command instead (train.json + multi_gpu_train.json, one epoch on
16 synthetic films at 64 x 64 patches, as the test does) and counts its failures.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from monaifrac.benchmark.tables import Report, Table, progress
from monaifrac.bundle import REPO_BUNDLE

REPO = REPO_BUNDLE.parent
LABELS = {"plain": "destroy_process_group only (model-zoo finalize)", "monaifrac": "monaifrac.distributed.shutdown",
          "bundle": "bundle command (multi_gpu_train.json as committed)"}


def add_arguments(p) -> None:
    p.add_argument("--runs", type=int, default=50, help="launches per shutdown mode (default 50)")
    p.add_argument("--hogs", type=int, default=3, help="busy-loop processes loading the CPU (default 3)")
    p.add_argument("--bundle", action="store_true", help="launch the bundle's torchrun command instead")


def worker(mode: str) -> None:
    """One rank of the tiny DDP training (run by torchrun: ``python -m monaifrac.benchmark.ddp_shutdown MODE``)."""
    import torch
    import torch.distributed as dist

    from monaifrac.distributed import shutdown

    dist.init_process_group("gloo")
    net = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(1, 3, 3))
    opt = torch.optim.SGD(net.parameters(), 0.1)
    for _ in range(3):
        loss = net(torch.randn(2, 1, 32, 32)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if mode == "monaifrac":
        shutdown(net)
    else:  # what the model-zoo configs do: destroy the group, keep the network
        dist.barrier()
        dist.destroy_process_group()


def _hog(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2", *args]


def _bundle_cmd(tmp: Path) -> list[str]:
    return _torchrun("-m", "monai.bundle", "run", "--config_file",
                     "['bundle/configs/train.json','bundle/configs/multi_gpu_train.json']",
                     "--dataset_dir", str(tmp / "prepared"), "--bundle_root", str(tmp / "bundle_root"),
                     "--max_epochs", "1", "--patch_size", "[64,64]", "--num_workers", "0", "--batch_size", "2")


def main(args, report: Report) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="monaifrac_benchmark_ddp_"))
    if args.bundle:
        from monaifrac.data.prepare import prepare
        from monaifrac.data.synth import make_synthetic_fracatlas

        make_synthetic_fracatlas(tmp / "atlas", n=16, seed=0)
        prepare(tmp / "atlas", tmp / "prepared", workers=1, progress=False)
        launches = {"bundle": _bundle_cmd}
    else:
        launches = {mode: lambda tmp, mode=mode: _torchrun(os.path.abspath(__file__), mode)
                    for mode in ("plain", "monaifrac")}
    hogs = [mp.Process(target=_hog, args=(time.time() + 3600,), daemon=True) for _ in range(args.hogs)]
    for h in hogs:
        h.start()
    failures = dict.fromkeys(launches, 0)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        for i in range(args.runs):
            for mode, make_cmd in launches.items():
                shutil.rmtree(tmp / "bundle_root", ignore_errors=True)
                proc = subprocess.run(make_cmd(tmp), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env, timeout=300)
                failures[mode] += proc.returncode != 0
            progress(f"after {i + 1} runs each: " + ", ".join(f"{m} {n} failed" for m, n in failures.items()))
    finally:
        for h in hogs:
            h.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    report.results = {"runs": args.runs, "hogs": args.hogs, "failures": failures}
    t = Table(f"2-rank gloo DDP runs, {args.runs} each, {args.hogs} busy loops beside them", ["shutdown", "aborted"])
    for mode, n in failures.items():
        t.add(LABELS[mode], f"{n}/{args.runs}")
    report.tables.append(t)


if __name__ == "__main__":  # a rank under torchrun
    worker(sys.argv[1])
