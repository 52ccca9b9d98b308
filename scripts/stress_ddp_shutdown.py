"""Count aborts at exit of 2-rank gloo DDP runs, with and without ``monaifrac.distributed.shutdown``.

Why this exists: with torch 2.13 on gloo, a DDP reducer that outlives its process group can
abort rank 1 at interpreter exit (SIGABRT, "terminate called without an active exception"),
which failed CI once in the ``multi_gpu_train.json`` test. The fault is rare on an idle machine,
so the script loads every core with busy loops (``--hogs``) while it launches ``torchrun`` runs
of a tiny DDP training, alternating the two shutdowns, and prints the failures of each.

    .venv/bin/python scripts/stress_ddp_shutdown.py --runs 50 --hogs 3

``--bundle`` launches the bundle's own command instead (train.json + multi_gpu_train.json,
one epoch on 16 synthetic films at 64 x 64 patches, as the test does) and counts its failures.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(mode: str) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="launches per shutdown mode")
    parser.add_argument("--hogs", type=int, default=3, help="busy-loop processes loading the CPU")
    parser.add_argument("--bundle", action="store_true", help="launch the bundle's torchrun command instead")
    parser.add_argument("--worker", choices=["plain", "monaifrac"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return

    tmp = Path(tempfile.mkdtemp(prefix="stress_ddp_"))
    if args.bundle:
        from monaifrac.data.prepare import prepare
        from monaifrac.data.synth import make_synthetic_fracatlas

        make_synthetic_fracatlas(tmp / "atlas", n=16, seed=0)
        prepare(tmp / "atlas", tmp / "prepared", workers=1, progress=False)
        launches = {"bundle": _bundle_cmd}
    else:
        launches = {mode: lambda tmp, mode=mode: [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                   "--nnodes=1", "--nproc_per_node=2", os.path.abspath(__file__),
                                                   "--worker", mode]
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
            print(f"after {i + 1} runs each: " + ", ".join(f"{m} {n} failed" for m, n in failures.items()), flush=True)
    finally:
        for h in hogs:
            h.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    labels = {"plain": "destroy_process_group only (model-zoo finalize)",
              "monaifrac": "monaifrac.distributed.shutdown",
              "bundle": "bundle command (multi_gpu_train.json as committed)"}
    for mode, n in failures.items():
        print(f"{labels[mode] + ':':52s} {n}/{args.runs} aborted")


def _bundle_cmd(tmp: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
            "-m", "monai.bundle", "run", "--config_file",
            "['bundle/configs/train.json','bundle/configs/multi_gpu_train.json']",
            "--dataset_dir", str(tmp / "prepared"), "--bundle_root", str(tmp / "bundle_root"), "--max_epochs", "1",
            "--patch_size", "[64,64]", "--num_workers", "0", "--batch_size", "2"]


if __name__ == "__main__":
    main()
