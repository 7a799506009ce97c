"""Timing helpers shared by the speed benchmarks: side-by-side, interleaved measurements."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import seqnlp  # noqa: E402,F401  (sets the oneDNN primitive cache size before torch is imported)


def timed(step, batches, seconds: float, count=lambda batch: batch["num_tokens"]) -> float:
    """Units per second of ``step`` cycling over ``batches`` for about ``seconds`` (after one warm-up call)."""
    step(batches[0])
    units, start, i = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = batches[i % len(batches)]
        step(batch)
        units += count(batch)
        i += 1
    return units / (time.perf_counter() - start)


def side_by_side(ours, theirs, batches, seconds: float, **kwargs) -> tuple[float, float]:
    """Mean throughput of ``ours`` and ``theirs``, measured ours, theirs, ours, theirs so load drift hits both alike."""
    half = seconds / 2
    a1, b1 = timed(ours, batches, half, **kwargs), timed(theirs, batches, half, **kwargs)
    a2, b2 = timed(ours, batches, half, **kwargs), timed(theirs, batches, half, **kwargs)
    return (a1 + a2) / 2, (b1 + b2) / 2
