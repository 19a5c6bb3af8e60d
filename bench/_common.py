"""Helpers shared by the benchmarks (scratch databases come from devtools.scratch_database)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_of(repeats: int, run: Callable[[], None], reset: Callable[[], None]) -> float:
    """Fastest wall time of ``repeats`` runs, calling ``reset`` before each."""
    times = []
    for _ in range(repeats):
        reset()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
