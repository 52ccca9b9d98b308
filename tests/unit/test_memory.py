"""trim_heap: freed heap pages go back to the operating system."""

from __future__ import annotations

import sys

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
