"""What the benchmarks print about the machine they ran on (imported by scripts/bench_*.py)."""

from __future__ import annotations

import os
import platform
from typing import Iterator


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of ``/proc/PID/stat`` after "pid (comm) ": state, ppid, ...) of every live process.

    Nothing where there is no /proc; a process that ends while being read is skipped.
    """
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        yield int(entry), stat[stat.rfind(")") + 2:].split()


def group_rss_mb(pgid: int) -> tuple[float, int]:
    """(resident memory in MB, processes) of process group ``pgid``: the sum of ``VmRSS`` (``/proc/PID/status``)
    over its live processes (pages shared between them counted once per process; MB = 1024² bytes).

    A process started with ``start_new_session=True`` leads a group of its own: ``pgid`` is its pid, and the
    group holds it and every child it starts (unless one starts a session of its own). (0.0, 0) where there
    is no /proc or nothing of the group is alive.
    """
    total_kib = count = 0
    for pid, fields in proc_stats():
        if int(fields[2]) != pgid:
            continue
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
                    count += 1
                    break
        except OSError:
            continue
    return total_kib / 1024, count
