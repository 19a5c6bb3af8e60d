"""Command line: ``python -m gateway_simulator --port N [options]``.

Prints ``simulator listening on 127.0.0.1:N`` to stdout (flushed) once ready, so a
parent process can read the real port when started with ``--port 0``; logs go to
stderr.  SIGTERM/SIGINT stop it cleanly with a one-line summary and exit code 0.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import math
import signal
import sys
from fractions import Fraction

from command_line import OneLineParser, positive_int
from market_calendar import EXCHANGE_TZ

from .contracts import VALID_EXCHANGES
from .server import GatewaySimulator, SimulatorConfig, Split

HOST = "127.0.0.1"  # never listen beyond loopback: this is a test double, not a gateway


def _date(text: str) -> dt.date:
    """YYYY-MM-DD and nothing else (Python would also take 20240104 and 2024-W02-5)."""
    try:
        if len(text) != 10 or text[4] != "-" or text[7] != "-":
            raise ValueError
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _moment(text: str) -> dt.datetime:
    """YYYY-MM-DDTHH:MM[:SS], in New York time unless an offset is given."""
    try:
        if len(text) < 16 or text[10] != "T":
            raise ValueError
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DDTHH:MM (New York time), got {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=EXCHANGE_TZ)


def _split(text: str) -> Split:
    """SYM:YYYY-MM-DD:RATIO, RATIO new shares per old share (10, 3/2; 1/10 for a 1-for-10 reverse split)."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected SYM:YYYY-MM-DD:RATIO, got {text!r}")
    symbol, day, ratio_text = parts
    try:
        ratio = float(Fraction(ratio_text))
        return Split(symbol.strip().upper(), _date(day), ratio)
    except (ValueError, ZeroDivisionError) as error:
        raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None


def _port(text: str) -> int:
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 (any free port) to 65535, got {text!r}")
    return port


MAX_LATENCY_S = 3600.0
"""The longest --latency: an hour, far past the loader's request timeout (60 s by default)."""


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    # Past an hour a reply would never come within any client's timeout (1e20: the simulator answered nothing, ever).
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_LATENCY_S):
        raise argparse.ArgumentTypeError(f"expected a number of seconds from 0 to {MAX_LATENCY_S:g}, got {text!r}")
    return seconds


PRIMARY_EXCHANGES = tuple(name for name in VALID_EXCHANGES.split(",") if name != "SMART")


def _primary_exchange(text: str) -> str:
    """An exchange a stock can list on; a misspelt one would refuse nothing and the run would look entitled."""
    if text.upper() not in PRIMARY_EXCHANGES:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PRIMARY_EXCHANGES)}, got {text!r}")
    return text.upper()


def _log_level(text: str) -> str:
    if not isinstance(logging.getLevelName(text.upper()), int):
        raise argparse.ArgumentTypeError(f"expected DEBUG, INFO, WARNING or ERROR, got {text!r}")
    return text.upper()


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    p = OneLineParser(
        prog="python -m gateway_simulator", description="Local IB Gateway simulator (TWS socket protocol)."
    )
    p.add_argument("--port", type=_port, required=True, help="TCP port on 127.0.0.1 (0 = any free port)")
    p.add_argument("--seed", type=int, default=7, help="seed of the deterministic bars (default 7)")
    p.add_argument(
        "--latency", type=_seconds, default=0.0, metavar="SEC", help="delay before each historical reply (default 0)"
    )
    p.add_argument(
        "--unknown",
        nargs="+",
        action="extend",
        default=[],
        metavar="SYM",
        help="symbols answered with error 200 (quote symbols with spaces)",
    )
    p.add_argument(
        "--no-permissions",
        nargs="+",
        action="extend",
        type=_primary_exchange,
        default=[],
        metavar="EXCHANGE",
        help="primary exchanges (NYSE, NASDAQ, ...) whose stocks' historical requests get error 162 'No market data "
        "permissions', as for a login without those subscriptions",
    )
    p.add_argument(
        "--competing-session",
        action="store_true",
        help="answer every historical request with error 10197, as while the username is live elsewhere",
    )
    p.add_argument(
        "--pacing-nth",
        nargs="+",
        action="extend",
        type=positive_int,  # 1-based: 0 would match no request, a silent no-op
        default=[],
        metavar="N",
        help="historical requests (1-based, arrival order) answered with a pacing violation",
    )
    p.add_argument(
        "--drop-nth",
        nargs="+",
        action="extend",
        type=positive_int,  # 1-based: 0 would match no request, a silent no-op
        default=[],
        metavar="N",
        help="historical requests on which the client's socket is closed abruptly",
    )
    p.add_argument(
        "--enforce-pacing",
        action="store_true",
        help="answer 162 exactly when IBKR's pacing rules are broken (the 10-minute rule: bars <= 30 s)",
    )
    p.add_argument(
        "--strict-pacing",
        action="store_true",
        help="with --enforce-pacing, apply the 60-per-10-minutes rule to every bar size",
    )
    p.add_argument(
        "--end-date",
        type=_date,
        default=None,
        metavar="YYYY-MM-DD",
        help="last session ever served; empty endDateTime means this day",
    )
    p.add_argument(
        "--now",
        type=_moment,
        default=None,
        metavar="YYYY-MM-DDTHH:MM",
        help="pin the simulator's clock (New York time): a session trading at that moment is served with its "
        "bars so far, as IBKR serves today's bar during the session",
    )
    p.add_argument(
        "--split",
        type=_split,
        action="append",
        default=[],
        metavar="SYM:YYYY-MM-DD:RATIO",
        help="a split on its ex-date (RATIO new shares per old share: 10, 3/2, 1/10 for a reverse split): from "
        "then on the symbol's whole history is served re-adjusted, as IBKR does for TRADES bars",
    )
    p.add_argument("--log-level", type=_log_level, default="INFO", help="logging level for stderr (default INFO)")
    return p


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """Translate parsed arguments into a :class:`SimulatorConfig`."""
    return SimulatorConfig(
        seed=args.seed,
        latency_s=args.latency,
        unknown_symbols=frozenset(s.upper() for s in args.unknown),
        pacing_nth=frozenset(args.pacing_nth),
        drop_nth=frozenset(args.drop_nth),
        enforce_pacing=args.enforce_pacing,
        strict_pacing=args.strict_pacing,
        end_date=args.end_date,
        now=args.now,
        splits=tuple(args.split),
        no_permissions=frozenset(args.no_permissions),
        competing_session=args.competing_session,
    )


async def serve(config: SimulatorConfig, port: int) -> int:
    """Run until SIGTERM/SIGINT, then print the summary."""
    sim = GatewaySimulator(config)
    await sim.start(HOST, port)
    print(f"simulator listening on {HOST}:{sim.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()
    st = sim.stats
    print(
        f"simulator stopped: served {st.historical_requests} historical and "
        f"{st.contract_requests} contract requests, {st.pacing_violations} pacing violations, "
        f"max {st.max_open_historical} open historical requests, "
        f"{st.dropped_connections} connections dropped",
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(serve(config_from_args(args), args.port))
    except OSError as error:  # the port is taken (or not ours to bind)
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
