"""Throughput of `monaifrac prepare` on the FracAtlas copy: 1 process vs all CPUs, in one run.

Usage: python scripts/bench_prepare.py [FRACATLAS_DIR] [--limit N]

Prints films/s for each worker count and the speed-up ratio, plus the median fracture
fraction of fractured films (from the report of the full run).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

from monaifrac.data.fracatlas import default_fracatlas_dir, read_fracatlas
from monaifrac.data.prepare import available_cpus, prepare_cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("fracatlas_dir", nargs="?", default=None)
    parser.add_argument("--limit", type=int, default=None, help="only the first N films (both runs)")
    args = parser.parse_args()
    root = args.fracatlas_dir or default_fracatlas_dir()
    if root is None:
        print("no FracAtlas folder: pass one or set MONAIFRAC_FRACATLAS", file=sys.stderr)
        return 2
    cases, problems = read_fracatlas(root)
    cases = cases[: args.limit] if args.limit else cases
    rows = {}
    for workers in sorted({1, available_cpus()}):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = prepare_cases(cases, problems, out, workers=workers, progress=False)
            seconds = time.perf_counter() - start
        rows[workers] = {"films": report["cases_written"], "seconds": round(seconds, 2),
                         "films_per_second": round(report["cases_written"] / seconds, 1)}
        last = report
    print(json.dumps({"source": str(root), "runs": rows}, indent=2))
    if len(rows) > 1:
        lo, hi = min(rows), max(rows)
        print(f"speed-up {hi} workers vs 1: {rows[hi]['films_per_second'] / rows[lo]['films_per_second']:.2f}x")
    print(f"throughput with {max(rows)} workers: {rows[max(rows)]['films_per_second']} films/s "
          f"(target >= 50 on 2 cores)")
    print(f"median fracture fraction of fractured films: {last['fracture_fraction_of_film'].get('median')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
