"""CSV landing: today's streaming path vs the in-memory path it replaced, on one 1.5 M-row file (about 86 MB).

Each run happens in a fresh process, so that its peak memory (max RSS, from the kernel) is its own; both land the
same file into ``raw`` of one scratch database of the embedded warehouse (emptied before each run). Targets:
streaming peak memory <= 300 MB, and its time within 1.3x of the in-memory path's.

    python bench/bench_csv.py [--rows 1500000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from command_line import OneLineParser, positive_int
from devtools.scratch_database import scratch_database
from devtools.synthetic_bars import symbol_names
from ingest.raw_tables import open_for_landing
from market_calendar import sessions_in_range
from warehouse_db import connect

MEMORY_TARGET_MB = 300
SPEED_TARGET = 1.3


def write_file(path: Path, rows: int, seed: int = 7) -> None:
    """``rows`` valid daily bars: 600 symbols over as many sessions as it takes (from 2000 on)."""
    symbols = symbol_names(600)
    sessions = [d.date().isoformat() for d in sessions_in_range("2000-01-03", date.today().isoformat())]
    per_symbol = -(-rows // len(symbols))
    rng = np.random.default_rng(seed)
    written = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["symbol", "date", "open", "high", "low", "close", "volume", "wap", "bar_count"])
        for symbol in symbols:
            n = min(per_symbol, rows - written)
            close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
            for k in range(n):
                c = round(float(close[k]), 2)
                out.writerow([symbol, sessions[k], c, round(c * 1.01, 2), round(c * 0.99, 2), c, 100000 + k, c, 500])
            written += n


def child(method: str, path: Path) -> None:
    """One run, inside its own process: print the seconds the load took."""
    with connect() as conn:
        started = time.perf_counter()
        if method == "in-memory":
            from _csv_in_memory_baseline import load

            rows = load(conn, path)
        else:
            from ingest.csv_source import load_csv_files
            from ingest.landing import new_load_id

            rows = load_csv_files(conn, [path], new_load_id(), progress=False).rows
        print(f"{time.perf_counter() - started:.3f} {rows}", flush=True)


def measure(method: str, path: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak MB, rows) of one run in a fresh process."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", method, "--path", str(path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{method} run failed:\n{err[-3000:]}")
    seconds, rows = out.split()
    return float(seconds), usage.ru_maxrss / 1024, int(rows)


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=positive_int, default=1_500_000)
    parser.add_argument("--repeats", type=positive_int, default=2, help="runs per method; the fastest time is reported")
    parser.add_argument("--child", choices=("in-memory", "streaming"), help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path)
        return 0

    with tempfile.TemporaryDirectory() as tmp, scratch_database("bench_csv") as db:
        path = Path(tmp) / "bars.csv"
        write_file(path, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.0f} MB", flush=True)
        open_for_landing(db).close()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("PG")}, **db.libpq_env(), "DATABASE_URL": ""}
        results: dict[str, list[tuple[float, float, int]]] = {"in-memory": [], "streaming": []}
        for _ in range(args.repeats):
            for method in results:
                with connect(db, autocommit=True) as conn:
                    conn.execute("truncate raw.ibkr_bars, raw.load_batches")
                    conn.execute("vacuum analyze raw.ibkr_bars")
                seconds, peak, rows = measure(method, path, env)
                assert rows == args.rows, (method, rows)
                results[method].append((seconds, peak, rows))
                print(f"{method:<10} {seconds:7.2f} s  peak {peak:7.0f} MB", flush=True)

    base_s, base_mb = min(r[0] for r in results["in-memory"]), max(r[1] for r in results["in-memory"])
    new_s, new_mb = min(r[0] for r in results["streaming"]), max(r[1] for r in results["streaming"])
    ratio = new_s / base_s
    print(
        f"\nstreaming vs in-memory: time {new_s:.2f} s vs {base_s:.2f} s = {ratio:.2f}x (target <= {SPEED_TARGET}x); "
        f"peak memory {new_mb:.0f} MB vs {base_mb:.0f} MB = {new_mb / base_mb:.2f}x (target <= {MEMORY_TARGET_MB} MB)"
    )
    return 0 if ratio <= SPEED_TARGET and new_mb <= MEMORY_TARGET_MB else 1


if __name__ == "__main__":
    raise SystemExit(main())
