"""The benchmarks' one clock, warm-up and summary of repeated runs.

Every figure a benchmark prints is a set of samples taken with :func:`clock` (``time.perf_counter``,
after waiting for a GPU's queued work, so that a mark means the work before it is done) and
summarised by :func:`summary`: the **median**, with the quartiles and the extremes as its spread.

Why the median: on the machines this project runs on (2 shared cores, a training beside the
benchmark, a virtual CPU) the samples of one measurement are skewed to the right: a run is never
faster than the machine allows, but any run can be slowed by another process taking a core, a page
fault or a garbage collection. The mean moves with every such outlier, and the minimum describes a
machine nobody gets; the median is what half the runs beat, and it stays put when one run of five is
twice as slow. The quartiles (p25-p75) say how far to trust it: two figures whose spreads overlap
were not told apart by the run. Ratios (engine against engine, bundle against bare network) are
always of medians measured side by side in one run, alternating which goes first.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Sequence


def sync() -> None:
    """Wait for the GPU's queued work (nothing without CUDA, or where torch is not imported yet)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def clock() -> float:
    """Seconds on a monotonic clock (``time.perf_counter``), once the GPU's queued work is done."""
    sync()
    return time.perf_counter()


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values``, linear between order statistics (numpy's default)."""
    v = sorted(values)
    if not v:
        return float("nan")
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summary(samples: Sequence[float]) -> dict:
    """``{"median", "p25", "p75", "min", "max", "n"}`` of ``samples`` (seconds, or any unit); NaNs for none."""
    samples = [float(s) for s in samples]
    if not samples:
        nan = float("nan")
        return {"median": nan, "p25": nan, "p75": nan, "min": nan, "max": nan, "n": 0}
    return {"median": statistics.median(samples), "p25": quantile(samples, 0.25), "p75": quantile(samples, 0.75),
            "min": min(samples), "max": max(samples), "n": len(samples)}


def repeat(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after ``warmup`` calls that are not counted (first
    calls allocate, compile and fill caches)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return times


def rotations(names: Sequence[str], k: int) -> list[str]:
    """``names`` rotated by ``k``: the order of round or film ``k``, so that each goes first in turn
    (whatever runs first on a shared machine pays for caches and frequency changes the others then
    enjoy)."""
    k %= max(len(names), 1)
    return list(names[k:]) + list(names[:k])
