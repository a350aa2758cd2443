"""What the benchmark scripts share: the median of repeated runs (timings never go in tests)."""

from __future__ import annotations

import statistics
import time


def timed(fn, runs: int) -> tuple[float, object]:
    """Median wall time in seconds of ``runs`` calls of ``fn``, and the last call's result."""
    times, result = [], None
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result
