"""Helpers shared by the benchmarks (scratch databases come from devtools.scratch_database)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
"""Where every benchmark writes its figures (git-ignored)."""


def best_of(repeats: int, run: Callable[[], None], reset: Callable[[], None]) -> float:
    """Fastest wall time of ``repeats`` runs, calling ``reset`` before each."""
    times = []
    for _ in range(repeats):
        reset()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def write_results(name: str, results: Any) -> Path:
    """``results`` as JSON in bench/results/<name>_<UTC time>.json; prints and returns the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}_{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"results: {path}")
    return path
