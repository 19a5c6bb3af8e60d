"""``python -m ingest``: load bars into ``raw`` from IBKR (default) or from CSV files.

    python -m ingest                                  # IBKR, settings from .env, data/tensorwatchlist.csv
    python -m ingest --symbols AAPL "BRK B" --months 24 --dry-run
    python -m ingest --source csv bars/*.csv

Exit status: 0 every symbol landed, was current or had no data; 1 some symbols failed (see the table);
2 bad usage, configuration or input file; 3 no IB Gateway/TWS answers (or the connection was lost and
not restored); 4 the warehouse cannot be reached; 5 IBKR rejected a request as invalid (error 321).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

EXIT_OK = 0
EXIT_FAILED_SYMBOLS = 1
EXIT_USAGE = 2
EXIT_GATEWAY = 3
EXIT_WAREHOUSE = 4
EXIT_INVALID_REQUEST = 5

WHAT_TO_SHOW = ("TRADES", "ADJUSTED_LAST", "MIDPOINT", "BID", "ASK", "BID_ASK")

log = logging.getLogger("ingest")


def build_parser(config: dict[str, str] | None = None) -> argparse.ArgumentParser:
    from ingest.ibkr.pacing import DEFAULT_MAX_OPEN
    from ingest.watchlist import DEFAULT_WATCHLIST

    config = config or {}
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Load daily (or intraday) bars into the warehouse's raw schema, incrementally.",
        epilog="Exit status: 0 all landed/current/no data, 1 some symbols failed, 2 usage/config/input error, "
        "3 gateway unreachable or lost, 4 warehouse unreachable, 5 request rejected as invalid (321).",
    )
    parser.add_argument(
        "--source", choices=("ibkr", "csv"), default="ibkr", help="where bars come from (default: ibkr)"
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="CSV files (only with --source csv)")

    ibkr = parser.add_argument_group("IBKR source (gateway address from .env: IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID)")
    ibkr.add_argument(
        "--watchlist",
        type=Path,
        default=DEFAULT_WATCHLIST,
        help="CSV with symbol,primary_exchange (default: %(default)s)",
    )
    ibkr.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYM",
        help="load these symbols instead of the watchlist (quote 'BRK B'; commas also separate)",
    )
    ibkr.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N symbols")
    ibkr.add_argument(
        "--months", type=_positive_int, default=12, metavar="N", help="history window in calendar months (default: 12)"
    )
    ibkr.add_argument(
        "--bar-size",
        default=config.get("IBKR_BAR_SIZE") or "1 day",
        help="IBKR bar size, e.g. '1 day', '1 hour', '5 mins' (default: '%(default)s')",
    )
    ibkr.add_argument(
        "--what-to-show",
        type=str.upper,
        choices=WHAT_TO_SHOW,
        default=(config.get("IBKR_WHAT_TO_SHOW") or "TRADES").upper(),
        help="TRADES (split-adjusted) or ADJUSTED_LAST (split- and dividend-adjusted), ... (default: %(default)s)",
    )
    ibkr.add_argument(
        "--rth",
        action=argparse.BooleanOptionalAction,
        default=_bool(config.get("IBKR_USE_RTH"), True),
        help="regular trading hours only (default: --rth)",
    )
    ibkr.add_argument(
        "--full-refresh", action="store_true", help="fetch the whole window again, whatever the warehouse holds"
    )
    ibkr.add_argument(
        "--dry-run", action="store_true", help="print the plan (what would be requested per symbol, and why) and stop"
    )
    ibkr.add_argument(
        "--strict-pacing",
        action="store_true",
        help="also keep to IBKR's 60 requests per 10 minutes (always on for bars of 30 s or less)",
    )
    ibkr.add_argument(
        "--max-open",
        type=_positive_int,
        default=DEFAULT_MAX_OPEN,
        metavar="N",
        help="historical requests open at once, 1..50 (default: %(default)s)",
    )
    ibkr.add_argument("--host", help="override IBKR_HOST")
    ibkr.add_argument("--port", type=_positive_int, help="override IBKR_PORT")
    ibkr.add_argument("--client-id", type=int, help="override IBKR_CLIENT_ID")
    ibkr.add_argument(
        "--timeout",
        type=float,
        metavar="SEC",
        help="seconds one historical request may take (IBKR_REQUEST_TIMEOUT, default 60)",
    )

    out = parser.add_argument_group("output")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument(
        "--show-all", action="store_true", help="list every symbol in the summary, not only failures and no-data"
    )
    out.add_argument("-v", "--verbose", action="store_true", help="log each retry, reconnect and failure as it happens")
    return parser


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    from warehouse_db.settings import read_config

    stdout = stdout or sys.stdout
    config = read_config()
    parser = build_parser(config)
    args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    if args.source == "csv":
        return _run_csv(args, parser, stdout)
    if args.paths:
        parser.error("PATH arguments are only for --source csv")
    return _run_ibkr(args, config, parser, stdout)


# --- IBKR -----------------------------------------------------------------------------------------------


def _run_ibkr(args: argparse.Namespace, config: dict[str, str], parser: argparse.ArgumentParser, stdout: TextIO) -> int:
    import dataclasses

    import psycopg

    from ingest.ibkr.bar_sizes import BarSizeError, parse_bar_size
    from ingest.ibkr.config import IbkrConfigError, IbkrSettings
    from ingest.ibkr.fetcher import GatewayUnavailableError, quiet_client_logs
    from ingest.ibkr.loader import LoadOptions, WarehouseUnavailableError, load
    from ingest.landing import BarSettings
    from warehouse_db.errors import WarehouseError

    try:
        bar_size = parse_bar_size(args.bar_size)
    except BarSizeError as error:
        parser.error(str(error))
    if args.what_to_show == "ADJUSTED_LAST" and bar_size.intraday:
        parser.error(
            "ADJUSTED_LAST needs an empty endDateTime, so it cannot be paged: use --bar-size '1 day' or longer"
        )
    if args.max_open > 50:
        parser.error("--max-open: IBKR allows at most 50 open historical requests")
    try:
        ibkr = IbkrSettings.from_config(config)
    except IbkrConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    overrides = {
        k: v
        for k, v in (
            ("host", args.host),
            ("port", args.port),
            ("client_id", args.client_id),
            ("request_timeout_s", args.timeout),
        )
        if v is not None
    }
    ibkr = dataclasses.replace(ibkr, **overrides)
    try:
        entries = _select_entries(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE

    try:
        db = _resolve_warehouse()
    except WarehouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    except Exception as error:  # noqa: BLE001 - any failure to find or start the warehouse is exit 4
        print(f"error: cannot reach the warehouse: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE

    options = LoadOptions(
        entries=entries,
        bar=BarSettings(bar_size.text, args.what_to_show, args.rth),
        months=args.months,
        full_refresh=args.full_refresh,
        dry_run=args.dry_run,
        strict_pacing=args.strict_pacing,
        max_open=args.max_open,
        progress=not args.no_progress and not args.dry_run,
    )
    if not args.verbose:
        quiet_client_logs()
    log.info("IBKR load: %d symbols from %s into %s", len(entries), ibkr.describe(), db.describe())
    try:
        if options.progress:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                summary = load(db, ibkr, options)
        else:
            summary = load(db, ibkr, options)
    except GatewayUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_GATEWAY
    except (WarehouseUnavailableError, ConnectionError, WarehouseError, psycopg.Error) as error:
        print(f"error: warehouse: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE

    if args.dry_run:
        print(format_plan(summary, options), file=stdout)
        return EXIT_OK
    print(format_summary(summary, options, show_all=args.show_all), file=stdout)
    if summary.invalid_request:
        print(f"error: {summary.aborted}", file=sys.stderr)
        return EXIT_INVALID_REQUEST
    if summary.aborted:
        print(f"error: {summary.aborted}", file=sys.stderr)
        return EXIT_GATEWAY
    return EXIT_OK if summary.ok else EXIT_FAILED_SYMBOLS


def _select_entries(args: argparse.Namespace) -> list:
    from ingest.symbols import InvalidSymbolError, normalize_symbol
    from ingest.watchlist import WatchlistEntry, WatchlistError, load_watchlist

    if args.symbols:
        try:
            listed = {e.symbol: e for e in load_watchlist(args.watchlist)}
        except WatchlistError:
            listed = {}
        entries, seen = [], set()
        for raw in (part for item in args.symbols for part in item.split(",")):
            if not raw.strip():
                continue
            try:
                symbol = normalize_symbol(raw)
            except InvalidSymbolError as error:
                raise ValueError(f"--symbols: {error}") from None
            if symbol not in seen:
                seen.add(symbol)
                entries.append(listed.get(symbol) or WatchlistEntry(symbol=symbol, primary_exchange=""))
    else:
        try:
            entries = load_watchlist(args.watchlist)
        except WatchlistError as error:
            raise ValueError(str(error)) from None
    if args.limit:
        entries = entries[: args.limit]
    if not entries:
        raise ValueError("no symbols to load")
    return entries


def _resolve_warehouse():
    import warehouse_db

    return warehouse_db.resolve_settings()


def format_plan(summary, options) -> str:
    """The dry run's output: per symbol, what would be requested and why."""
    lines = [
        f"dry run: {len(summary.results)} symbols, {options.bar.bar_size} {options.bar.what_to_show} "
        f"{'RTH' if options.bar.use_rth else 'all hours'}, {options.months} months"
        + (", full refresh" if options.full_refresh else ""),
        f"pacing: {summary.pacing.describe()}" if summary.pacing else "",
        "",
    ]
    width = max(len(r.symbol) for r in summary.results)
    for r in summary.results:
        plan = r.plan
        if plan is None or plan.current:
            lines.append(f"{r.symbol:<{width}}  skip        {r.reason}")
            continue
        n = len(plan.requests)
        first = plan.requests[0].describe()
        what = first if n == 1 else f"{n} pages, newest {first}, oldest {plan.requests[-1].describe()}"
        lines.append(f"{r.symbol:<{width}}  {n:>3} req{'s' if n > 1 else ' '}  {what}  <- {r.reason}")
    requests = sum(len(r.plan.requests) for r in summary.results if r.plan)
    symbols = sum(1 for r in summary.results if r.plan and not r.plan.current)
    lines += [
        "",
        f"would request {requests} historical request(s) for {symbols} symbol(s); "
        f"{len(summary.results) - symbols} current",
    ]
    return "\n".join(line for line in lines if line is not None)


def format_summary(summary, options, *, show_all: bool = False) -> str:
    """The table printed at the end of a run."""
    counts = [
        ("requested", summary.requested, None),
        ("landed", summary.count("landed"), summary.rows),
        ("no data", summary.count("no_data"), None),
        ("skipped (current)", summary.count("current"), None),
        ("failed", summary.count("failed"), None),
    ]
    if summary.count("not_attempted"):
        counts.append(("not attempted", summary.count("not_attempted"), None))
    lines = [
        f"IBKR load {summary.load_id}: {len(summary.results)} symbols, "
        f"{options.bar.bar_size} {options.bar.what_to_show} "
        f"{'RTH' if options.bar.use_rth else 'all hours'}, {options.months} months, {summary.elapsed_s:.1f} s",
        "",
        f"{'':<18} {'symbols':>8} {'rows':>9}",
    ]
    for label, n, rows in counts:
        lines.append(f"{label:<18} {n:>8} {'' if rows is None else rows:>9}")
    stats = summary.gateway_stats
    if stats is not None:
        lines.append(
            f"\nhistorical requests {stats.historical_requests}, contract lookups {stats.contract_requests}, "
            f"pacing violations retried {stats.pacing_violations}, timeouts {stats.timeouts}, "
            f"reconnects {stats.reconnects}"
        )
    detail = [r for r in summary.results if show_all or r.status in ("failed", "no_data", "not_attempted")]
    hidden = 0
    if not show_all and len(detail) > MAX_DETAIL_ROWS:
        detail, hidden = detail[:MAX_DETAIL_ROWS], len(detail) - MAX_DETAIL_ROWS
    if detail:
        width = max(6, *(len(r.symbol) for r in detail))
        lines += ["", f"{'symbol':<{width}}  {'status':<13} {'rows':>6} {'code':>5}  message"]
        for r in detail:
            code = "" if r.error_code is None else str(r.error_code)
            message = r.error_message or (r.reason if r.status in ("current", "planned") else "")
            lines.append(f"{r.symbol:<{width}}  {r.status:<13} {r.rows:>6} {code:>5}  {_shorten(message)}")
        if hidden:
            lines.append(f"... and {hidden} more (--show-all lists them; raw.load_batches has every message)")
    if summary.aborted:
        lines += ["", f"run stopped early: {summary.aborted}"]
    return "\n".join(lines)


# --- CSV ------------------------------------------------------------------------------------------------


def _run_csv(args: argparse.Namespace, parser: argparse.ArgumentParser, stdout: TextIO) -> int:
    if not args.paths:
        parser.error("--source csv needs one or more CSV file paths")
    import psycopg

    from ingest.csv_source import CsvValidationError, load_csv_files
    from ingest.landing import ensure_landing_tables, new_load_id
    from warehouse_db import connect, ensure_provisioned
    from warehouse_db.errors import WarehouseError
    from warehouse_db.schemas import LOADER_ROLE

    try:
        db = _resolve_warehouse()
        ensure_provisioned(db, LOADER_ROLE)
        conn = connect(db, role=LOADER_ROLE)
    except WarehouseError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    except Exception as error:  # noqa: BLE001 - reported as one line, never a traceback
        print(f"error: cannot reach the warehouse: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    try:
        ensure_landing_tables(conn)
        summary = load_csv_files(conn, list(args.paths), new_load_id(), progress=not args.no_progress)
    except CsvValidationError as error:
        print(f"error: CSV rejected, nothing landed:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    except (WarehouseError, psycopg.Error) as error:
        print(f"error: warehouse: {error}", file=sys.stderr)
        return EXIT_WAREHOUSE
    finally:
        conn.close()
    print(
        f"CSV load {summary.load_id}: {summary.files} file(s), {summary.symbols} symbol(s), {summary.rows} rows landed",
        file=stdout,
    )
    return EXIT_OK


# --- helpers --------------------------------------------------------------------------------------------

MAX_DETAIL_ROWS = 25


def _shorten(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _bool(text: str | None, default: bool) -> bool:
    if text is None or not text.strip():
        return default
    return text.strip().lower() in ("1", "true", "yes", "on")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ingest").setLevel(logging.INFO if verbose else logging.WARNING)
