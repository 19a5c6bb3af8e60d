"""Run the loader's client code path -- connect, qualify, reqHistoricalData, error capture -- with whichever
client library is installed, and print what came back as JSON.

``tests/test_ingest_ibkr_compat.py`` runs it twice against one simulator: with ib_async (the project's
venv) and with ib_insync 0.9.86 (a venv of its own, cached under the system's temporary directory), and
expects the same answers. It uses :class:`ingest.ibkr.fetcher.IbkrSession` itself, not a copy, so the check
covers the real code.
Needs only the client library: nothing here imports psycopg or the warehouse.

    python -m ingest.ibkr.compat_check --port 4002 --symbols AAPL "BRK B" NOSUCH
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime
from typing import Any

from command_line import sigterm_interrupts
from ingest.exit_codes import ExitCode
from ingest.ibkr.client_library import client_library, quiet_client_logs
from ingest.ibkr.config import IbkrSettings
from ingest.ibkr.fetcher import IbkrSession
from ingest.ibkr.pacing import PacingLimiter, PacingPolicy

REQUESTS = (("daily", "1 M", "1 day", False), ("hourly", "2 D", "1 hour", True))
"""The historical requests made for each symbol: (report key, duration, bar size, intraday)."""


async def check(port: int, symbols: list[str], client_id: int) -> dict[str, Any]:
    library = client_library()
    quiet_client_logs()
    settings = IbkrSettings(host="127.0.0.1", port=port, client_id=client_id, request_timeout_s=20)
    limiter = PacingLimiter(PacingPolicy())
    report: dict[str, Any] = {
        "library": library.__name__,
        "version": getattr(library, "__version__", "?"),
        "symbols": {},
    }
    async with IbkrSession(settings, limiter, library=library) as session:
        for symbol in symbols:
            qualified = await session.qualify(symbol)
            entry: dict[str, Any] = {"con_id": None, "error_code": qualified.error_code}
            report["symbols"][symbol] = entry
            if qualified.contract is None:
                continue
            entry["con_id"] = qualified.contract.con_id
            entry["primary_exchange"] = qualified.contract.primary_exchange
            for name, duration, bar_size, intraday in REQUESTS:
                outcome = await session.fetch(
                    qualified.contract,
                    end="",
                    duration=duration,
                    bar_size=bar_size,
                    what_to_show="TRADES",
                    use_rth=True,
                    intraday=intraday,
                )
                entry[name] = _describe(outcome)
        report["pacing_violations"] = session.stats.pacing_violations
    return report


def _describe(outcome: Any) -> dict[str, Any]:
    bars = outcome.bars
    return {
        "status": outcome.status,
        "error_code": outcome.error_code,
        "bars": len(bars),
        "first": _stamp(bars[0].date) if bars else None,
        "last": _stamp(bars[-1].date) if bars else None,
        "closes": [b.close for b in bars],
        "aware": all(isinstance(b.date, datetime) and b.date.tzinfo is not None for b in bars)
        if bars and isinstance(bars[0].date, datetime)
        else None,
    }


def _stamp(value: date | datetime) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).isoformat()
    return value.isoformat()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.ibkr.compat_check")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--symbols", nargs="+", default=["AAPL", "BRK B"])
    parser.add_argument("--client-id", type=int, default=71)
    args = parser.parse_args(argv)
    try:
        with sigterm_interrupts():  # as ingest: kill or a timeout ends the check as Ctrl+C does
            report = asyncio.run(check(args.port, args.symbols, args.client_id))
    except KeyboardInterrupt:
        print("error: interrupted; the check did not finish, so there is no report", file=sys.stderr)
        return ExitCode.INTERRUPTED  # 130, as ingest's
    json.dump(report, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
