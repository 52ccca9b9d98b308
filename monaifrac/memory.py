"""When freed heap memory goes back to the operating system (glibc's ``malloc_trim`` and ``mallopt``)."""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # musl and other libcs: no malloc_trim to call
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def trim_heap() -> bool:
    """Return the free pages of every malloc arena to the operating system.

    Why: ``CacheDataset`` fills its cache from a thread pool, and every thread's arena keeps the
    transients it freed (decoded films, percentile buffers, the large scans' intermediate copies).
    On both FracAtlas folders that is about 0.7 GiB of resident memory above the live cache, which
    the forked DataLoader workers then map as well. Training calls this once, after caching.

    Returns:
        True where glibc's ``malloc_trim(0)`` ran, False where the C library has none (not Linux, musl).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def keep_freed_memory(mmap_threshold: int = 256 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Keep freed blocks in the heap for the next iteration instead of unmapping and faulting them in again.

    Why: glibc serves a block above its mmap threshold (at most 32 MiB by its own adjustment) with a
    fresh ``mmap`` and unmaps it on free; a training step of 16 patches of 256 x 256 allocates
    activations and gradients of 33-67 MB, so every iteration faulted them in anew: about 50,000
    page faults and 0.14 cores in the kernel per iteration (``monaifrac benchmark train``). With
    blocks up to ``mmap_threshold`` served from the heap and up to ``trim_threshold`` of free heap
    top kept, the next iteration reuses the same pages. Peak memory is unchanged in kind (the
    freed blocks were part of the peak already); resident memory after a peak stays nearer to it.
    Training calls this after :func:`trim_heap`, so the caching's transients are gone first.

    Args:
        mmap_threshold: bytes; blocks at least this large still get their own mapping.
        trim_threshold: bytes of free memory at the top of the heap kept before trimming.

    Returns:
        True where glibc accepted both settings, False where the C library has no ``mallopt``.
    """
    libc = _glibc()
    if libc is None:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
