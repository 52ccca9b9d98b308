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
