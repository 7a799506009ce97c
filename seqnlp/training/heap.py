"""The process's memory: glibc heap settings for training, handing freed pages back, resident-memory readings."""

from __future__ import annotations

import functools
import os
from pathlib import Path

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # mallopt options, from glibc's malloc.h


@functools.cache
def _libc():
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None  # not glibc


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc)."""
    import gc

    gc.collect()
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def configure_heap() -> None:
    """glibc settings for a training process whose tensors change shape every batch.

    By default glibc raises its mmap threshold to the size of any large block freed (up to 32 MB),
    so large activations end up on the heap, and it keeps up to twice that free on top of it; each
    thread also gets its own heap. With batches of ever-changing shapes the heaps fragment and a
    long run's resident memory creeps up epoch after epoch. Fixed thresholds (blocks of 8 MiB and more
    are mapped and unmapped on their own, at most 32 MiB kept free on top) and one heap for all threads
    slow that down to a trickle (docs/experiments.md); smaller thresholds cost speed (page faults).
    """
    libc = _libc()
    if libc is not None:
        for option, value in ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, 8 << 20), (M_TRIM_THRESHOLD, 32 << 20)):
            libc.mallopt(option, value)


def memory_mib() -> dict:
    """Resident memory of this process now and at its peak, in MiB (Linux; empty elsewhere)."""
    try:
        import resource  # POSIX only

        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (ImportError, OSError, IndexError, ValueError):
        return {}
    return {
        "rss_mib": round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
