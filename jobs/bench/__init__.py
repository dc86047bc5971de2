"""Benchmarks: each prints its targets as ratios against a baseline measured in the same run.

Timings on shared machines are noisy, so nothing here asserts; ``make bench`` prints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls, after one warm-up call (JIT, caches, workers)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
