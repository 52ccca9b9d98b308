"""Memory of processes, read from Linux's /proc (nothing, or zeros, where there is no /proc).

RSS counts every page a process maps once per process; PSS (``smaps_rollup``) shares a page between
the processes that map it, so a sum of PSS over a process tree counts each page once: the figure
for forked workers that share a cache copy-on-write. MB and GiB are 1024² and 1024³ bytes.
"""

from __future__ import annotations

import os
from typing import Iterator

GIB = 1024 ** 3


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the fields of ``/proc/PID/stat`` after "pid (comm) ": state, ppid, pgrp, ...) of every live process.

    A process that ends while being read is skipped.
    """
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except OSError:
            continue
        yield int(entry), stat[stat.rfind(")") + 2:].split()


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


def status_kib(pid: int | str, key: str) -> int:
    """A ``/proc/PID/status`` field in KiB (``VmRSS``, ``VmHWM``, ...); 0 once the process is gone."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_rss_kib(pid: int) -> tuple[int, int]:
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


def group_rss_mb(pgid: int) -> tuple[float, int]:
    """(resident memory in MB, processes) of process group ``pgid``: the sum of ``VmRSS`` over its live processes.

    A process started with ``start_new_session=True`` leads a group of its own: ``pgid`` is its pid, and the
    group holds it and every child it starts (unless one starts a session of its own).
    """
    total_kib = count = 0
    for pid, fields in proc_stats():
        if int(fields[2]) == pgid:
            kib = status_kib(pid, "VmRSS")
            if kib:
                total_kib, count = total_kib + kib, count + 1
    return total_kib / 1024, count


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory (``VmHWM``) afresh from its current RSS; False where Linux's
    ``clear_refs`` is not writable (then :func:`peak_rss_mb` is the peak since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` since the start or the last :func:`reset_peak_rss`
    (``ru_maxrss`` where there is no /proc)."""
    kib = status_kib("self", "VmHWM")
    if not kib:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024
