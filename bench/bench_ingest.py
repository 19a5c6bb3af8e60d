"""IBKR loader throughput: our concurrent loader vs the same loader limited to one request at a time.

150 symbols (the watchlist) x 5 years of daily bars (the default window; ``--months``) from the gateway simulator, which answers each
historical request after a fixed latency (default 1 s) and enforces IBKR's pacing rules for daily bars
(identical requests, 6 per contract in 2 s, 50 open; see docs/ingest.md, "Pacing"), counting every violation.

Runs, each against a fresh simulator and in the same scratch database of the embedded warehouse:

1. cold: an empty warehouse, so every contract is qualified first (150 contract-details + 150 historical);
2. concurrent: ``--full-refresh`` with the conIds now in raw (150 historical requests);
3. serial: the same, with ``--max-open 1`` (one request at a time): the baseline.

Prints the ratio serial / concurrent (target >= 10) and how close each concurrent run comes to the floor
that the client library's own throttle sets: messages / 45 per second + one latency.

    python bench/bench_ingest.py [--latency 1.0] [--limit 150] [--max-open 40] [--months 60]
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from command_line import OneLineParser, positive_int
from devtools.scratch_database import scratch_database
from gateway_simulator import SimulatorConfig, run_simulator_in_thread
from ingest.ibkr.client_library import quiet_client_logs
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.loader import LoadOptions, LoadSummary, load
from ingest.ibkr.pacing import DEFAULT_MAX_OPEN
from ingest.ibkr.planner import DEFAULT_MONTHS
from ingest.watchlist import load_watchlist
from warehouse_db import connect
from warehouse_db.provision import provision

CLIENT_THROTTLE_PER_S = 45.0
RESULTS = Path(__file__).resolve().parent / "results"


def measure(label: str, db, entries, *, latency: float, **options) -> dict:
    with run_simulator_in_thread(SimulatorConfig(latency_s=latency, enforce_pacing=True)) as sim:
        started = time.perf_counter()
        summary: LoadSummary = load(db, IbkrSettings(port=sim.port), LoadOptions(entries=entries, **options))
        elapsed = time.perf_counter() - started
        stats = sim.stats
        messages = stats.historical_requests + stats.contract_requests
        floor = messages / CLIENT_THROTTLE_PER_S + latency
        row = {
            "run": label,
            "seconds": round(elapsed, 2),
            "historical": stats.historical_requests,
            "contract_details": stats.contract_requests,
            "landed": summary.count("landed"),
            "failed": summary.count("failed"),
            "rows": summary.rows,
            "pacing_violations": stats.pacing_violations,
            "max_open": stats.max_open_historical,
            "floor_s": round(floor, 2),
            "floor_pct": round(100 * floor / elapsed, 1),
        }
    floor_text = f"floor {row['floor_s']:>5.2f} s ({row['floor_pct']:.0f}% of its speed)" if label != "serial" else ""
    print(
        f"{label:<11} {row['seconds']:>8.2f} s  {row['historical']:>4} hist {row['contract_details']:>4} cd  "
        f"landed {row['landed']:>3}  rows {row['rows']:>6}  violations {row['pacing_violations']}  "
        f"max open {row['max_open']:>2}  {floor_text}",
        flush=True,
    )
    return row


def main() -> int:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latency", type=float, default=1.0, help="simulated seconds per historical request (default 1)"
    )
    parser.add_argument("--limit", type=positive_int, default=150, help="symbols from the watchlist (default 150)")
    parser.add_argument(
        "--max-open", type=positive_int, default=DEFAULT_MAX_OPEN, help="the concurrent loader's open requests"
    )
    parser.add_argument(
        "--months", type=positive_int, default=DEFAULT_MONTHS, help="history window (default: the loader's)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    quiet_client_logs()
    entries = load_watchlist()[: args.limit]

    print(
        f"{len(entries)} symbols x {args.months} months of daily bars, {args.latency:g} s latency per historical request\n"
    )
    with scratch_database("bench_ingest") as db:
        with connect(db) as conn:
            provision(conn)
        window = {"latency": args.latency, "months": args.months}
        cold = measure("cold", db, entries, max_open=args.max_open, **window)
        concurrent = measure("concurrent", db, entries, max_open=args.max_open, full_refresh=True, **window)
        serial = measure("serial", db, entries, max_open=1, full_refresh=True, **window)

    ratio = serial["seconds"] / concurrent["seconds"]
    violations = sum(r["pacing_violations"] for r in (cold, concurrent, serial))
    print(
        f"\nratio serial / concurrent: {ratio:.1f}x (target >= 10x), pacing violations: {violations} (target 0)\n"
        f"concurrent vs the client-throttle floor "
        f"({concurrent['historical'] + concurrent['contract_details']} messages "
        f"/ {CLIENT_THROTTLE_PER_S:g} per s + {args.latency:g} s): {concurrent['floor_s']:.2f} s floor, "
        f"{concurrent['seconds']:.2f} s measured = {concurrent['floor_pct']:.0f}% of the floor's speed"
    )
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = RESULTS / f"bench_ingest_{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "latency_s": args.latency,
                "months": args.months,
                "symbols": len(entries),
                "ratio": round(ratio, 2),
                "runs": [cold, concurrent, serial],
            },
            indent=1,
        )
    )
    print(f"results: {out}")
    return 0 if ratio >= 10 and violations == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
