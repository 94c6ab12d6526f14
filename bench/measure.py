"""Shared by the benchmarks: wall time and peak traced Python/numpy memory of one call."""
from __future__ import annotations

import time
import tracemalloc


def measured(fn, *args):
    """(result, seconds, peak bytes allocated while it ran)."""
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn(*args)
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak
