"""trim_heap: freed heap pages go back to the operating system; keep_freed_memory: large freed blocks stay for reuse."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from monaifrac.memory import _glibc, trim_heap


def rss_mib() -> float:
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="glibc's malloc_trim only")
def test_trim_heap_returns_freed_pages_held_below_a_live_allocation():
    # 4,000 blocks of 64 KiB come from the heap (below glibc's mmap threshold); every other one stays
    # alive, so the 2,000 freed ones are holes between live blocks that free() cannot give back:
    # their pages stay resident until malloc_trim returns them
    blocks = [bytearray(b"\x01" * 65536) for _ in range(4000)]
    kept = blocks[1::2]
    del blocks
    held = rss_mib()
    assert trim_heap() is True
    released = held - rss_mib()
    assert released > 80, f"RSS fell by {released:.0f} MiB only (2,000 x 64 KiB = 125 MiB freed)"
    assert all(b[0] == 1 for b in kept)


# each run is a fresh interpreter: glibc's settings are process-wide and would outlive the test
_CYCLES = textwrap.dedent("""
    import ctypes, resource, sys
    from monaifrac.memory import keep_freed_memory
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    if sys.argv[1] == "keep":
        assert keep_freed_memory() is True
    size = 64 << 20  # an activation of a training step: above glibc's own mmap threshold (32 MiB at most)
    def cycle():
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        cycle()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="glibc's mallopt only")
def test_keep_freed_memory_stops_a_large_block_being_faulted_in_again_each_cycle():
    faults = {mode: float(subprocess.run([sys.executable, "-c", _CYCLES, mode], capture_output=True, text=True,
                                          check=True).stdout.split()[-1]) for mode in ("default", "keep")}
    pages = (64 << 20) / 4096
    # glibc's default: a fresh mapping per malloc, every page faulted in on first touch
    assert faults["default"] > 0.5 * pages, faults
    assert faults["keep"] < 0.01 * pages, faults


# a training loop in miniature: each step allocates, writes and frees 256 MiB of heap (kept by
# keep_freed_memory, as a training step's activations are); each epoch's DataLoader forks a worker
_FORKED_WORKERS = textwrap.dedent("""
    import ctypes, os, sys
    import torch
    from ignite.engine import Engine
    from monaifrac.handlers import TrimHeapBeforeWorkers
    from monaifrac.memory import keep_freed_memory

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    BLOCK, BLOCKS = 32 << 20, 8

    def pss_mib(pid):
        return int(next(l for l in open(f"/proc/{pid}/smaps_rollup") if l.startswith("Pss:")).split()[1]) / 1024

    def tree_pss_mib():
        pids = [os.getpid()]
        for tid in os.listdir("/proc/self/task"):
            pids += [int(p) for p in open(f"/proc/self/task/{tid}/children").read().split()]
        return sum(pss_mib(p) for p in pids)

    def step(engine, batch):
        blocks = [libc.malloc(BLOCK) for _ in range(BLOCKS)]
        for b in blocks:
            ctypes.memset(b, 1, BLOCK)
        engine.state.pss.append(tree_pss_mib())  # the worker of this epoch is alive
        for b in blocks:
            libc.free(b)

    assert keep_freed_memory() is True
    loader = torch.utils.data.DataLoader(list(range(2)), batch_size=1, num_workers=1)
    engine = Engine(step)
    engine.state.pss = []
    if sys.argv[1] == "trim":
        TrimHeapBeforeWorkers().attach(engine)
    engine.run(loader, max_epochs=2)
    first, second = engine.state.pss[0], engine.state.pss[2]
    print(second - first)
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or _glibc() is None, reason="glibc's malloc_trim only")
def test_trim_before_workers_fork_keeps_freed_memory_from_being_counted_twice():
    growth = {mode: float(subprocess.run([sys.executable, "-c", _FORKED_WORKERS, mode], capture_output=True,
                                         text=True, check=True).stdout.split()[-1]) for mode in ("plain", "trim")}
    # without the trim the second epoch's worker shares the 256 MiB kept from the first epoch's steps,
    # and the step's writes copy every page of it: the process tree holds it twice
    assert growth["plain"] > 192, growth
    assert growth["trim"] < 32, growth
