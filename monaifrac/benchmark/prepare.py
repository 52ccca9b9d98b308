"""``monaifrac benchmark prepare [FRACATLAS_DIR]``: ``monaifrac prepare``'s throughput, one process against every
core available, side by side in one run (the goal: >= 50 films/s on 2 cores).

Each worker count prepares the same films (``--limit N``: the first N) into a temporary folder,
``--repeats`` times, the counts alternating which goes first; films/s is from the median run. Also the
median fracture fraction of fractured films, from the last run's report.
"""

from __future__ import annotations

import tempfile

from monaifrac.benchmark import timing
from monaifrac.benchmark.tables import Report, Table, num, progress, spread

GOAL_FILMS_PER_S = 50.0


def add_arguments(p) -> None:
    p.add_argument("fracatlas_dir", nargs="?", default=None,
                   help="a FracAtlas folder (default: $MONAIFRAC_FRACATLAS or the shared copy)")
    p.add_argument("--limit", type=int, default=None, help="only the first N films (every run)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each worker count (default 1)")


def main(args, report: Report) -> None:
    from monaifrac.data.cases import DataError
    from monaifrac.data.fracatlas import default_fracatlas_dir, read_fracatlas
    from monaifrac.data.prepare import available_cpus, prepare_cases

    root = args.fracatlas_dir or default_fracatlas_dir()
    if root is None:
        raise DataError("no FracAtlas folder: pass one or set MONAIFRAC_FRACATLAS")
    cases, problems = read_fracatlas(root)
    cases = cases[: args.limit] if args.limit else cases
    counts = sorted({1, available_cpus()})
    times: dict[int, list[float]] = {w: [] for w in counts}
    written, last = 0, {}
    for r in range(max(args.repeats, 1)):
        for workers in timing.rotations(counts, r):
            with tempfile.TemporaryDirectory(prefix="monaifrac_benchmark_prepare_") as out:
                start = timing.clock()
                last = prepare_cases(cases, problems, out, workers=workers, progress=False)
                times[workers].append(timing.clock() - start)
            written = last["cases_written"]
            progress(f"run {r + 1} {workers} worker(s): {written / times[workers][-1]:.1f} films/s")
    rows = {w: {"films": written, "seconds": timing.summary(t), "films_per_s": written / timing.summary(t)["median"]}
            for w, t in times.items()}
    report.results = {"source": str(root), "runs": rows, "speedup": rows[counts[-1]]["films_per_s"]
                      / rows[1]["films_per_s"], "median_fracture_fraction": last["fracture_fraction_of_film"]
                      .get("median")}
    t = Table(f"monaifrac prepare, {written} films of {root}", ["workers", "seconds", "films/s", "x 1 process"])
    for w, r in rows.items():
        t.add(str(w), spread(r["seconds"], 2), num(r["films_per_s"], 1), num(r["films_per_s"] / rows[1]["films_per_s"],
                                                                            2))
    t.notes.append(f"median fracture fraction of fractured films: {report.results['median_fracture_fraction']}")
    report.tables.append(t)
    best = rows[counts[-1]]["films_per_s"]
    report.goal(f"throughput with {counts[-1]} workers >= {GOAL_FILMS_PER_S:.0f} films/s on 2 cores",
                f"{best:.1f} films/s", best >= GOAL_FILMS_PER_S)
