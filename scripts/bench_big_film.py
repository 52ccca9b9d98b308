"""Time and peak memory of one 6000 x 6000 film: reading it, and labelling it with the bundle.

Usage: python scripts/bench_big_film.py [--side 6000] [--model bundle/models/model.pt] [--skip-inference]

Each measurement runs in a fresh process, so its peak resident memory (``ru_maxrss`` of that child)
is its own; start-up (imports, config parsing) is measured too, on a 48 x 32 film, and reported
beside it. The film is generated (tests/bad_inputs.make_huge_film: air, soft tissue, a bone bar; a
JPG of ~0.5 MB); nothing is downloaded. Inference is ``bundle/configs/inference.json`` as shipped
(the whole film in one pass up to 8 Mpx, a 2048-px sliding window above; bf16 autocast where the CPU has
bf16 units; no TTA) on the CPU unless CUDA is there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

READ = """
import json, resource, sys, time
t0 = time.perf_counter()
from monaifrac.io import read_radiograph
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t1 = time.perf_counter()
array, info = read_radiograph(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"shape": list(array.shape), "dtype": str(array.dtype), "import_s": t1 - t0, "read_s": t2 - t1,
                  "rss_after_import_mb": base / 1024,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(cmd: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS of the child in MB, its output). One child at a time, so RUSAGE_CHILDREN's
    maximum is this child's once it is the largest so far: each call is measured in its own process."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, proc.stdout


def infer(film: Path, out: Path, model: str) -> tuple[float, float]:
    # a wrapper process reports its own peak, so that the small run's peak does not hide the big one's
    # VmHWM, not ru_maxrss: on Linux a child's ru_maxrss starts from its parent's size at fork, so a large
    # benchmark process would set every child's figure; VmHWM belongs to the memory image exec created
    code = ("import runpy, sys; sys.argv = ['monai.bundle'] + sys.argv[1:]\n"
            "try:\n    runpy.run_module('monai.bundle', run_name='__main__')\n"
            "finally:\n    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
            "    print('PEAK_RSS_MB', int(hwm) / 1024)")
    cmd = [sys.executable, "-c", code, "run", "--config_file", str(REPO / "bundle/configs/inference.json"),
           "--input_files", str(film), "--output_dir", str(out), "--model_file", model,
           "--bundle_root", str(out / "root")]
    wall, _, stdout = run_child(cmd)
    peak = float(stdout.rsplit("PEAK_RSS_MB", 1)[1].split()[0])
    return wall, peak


def main(argv: list[str] | None = None) -> int:
    from tests.bad_inputs import make_huge_film
    from tests.conftest import draw_film, save_image

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=6000)
    parser.add_argument("--model", default=str(REPO / "bundle" / "models" / "model.pt"))
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        film = make_huge_film(tmp / f"huge_{args.side}.jpg", args.side)
        small = save_image(tmp / "small.jpg", draw_film())
        _, _, out = run_child([sys.executable, "-c", READ, str(film)])
        result = {"film": {"side": args.side, "jpg_mb": round(film.stat().st_size / 1e6, 2)},
                  "read": json.loads(out)}
        if not args.skip_inference:
            wall_small, peak_small = infer(small, tmp / "out_small", args.model)
            wall_big, peak_big = infer(film, tmp / "out_big", args.model)
            from PIL import Image

            label = Image.open(tmp / "out_big" / f"{film.stem}.png")
            result["inference"] = {"wall_s": round(wall_big, 1), "peak_rss_mb": round(peak_big),
                                   "startup_wall_s (48x32 film)": round(wall_small, 1),
                                   "startup_peak_rss_mb": round(peak_small), "label_size": list(label.size)}
        import platform

        import torch

        result["machine"] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                             "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
