"""``python -m ingest``: load bars into ``raw`` from IBKR (default) or from CSV files.

    python -m ingest                                  # IBKR, settings from .env, data/tensorwatchlist.csv
    python -m ingest --symbols AAPL "BRK B" --months 24 --dry-run
    python -m ingest --source csv bars/*.csv

This module only parses flags and prints: the settings check themselves (:class:`ingest.ibkr.options.LoadOptions`,
:class:`ingest.ibkr.config.IbkrSettings`), the sources do the work (:mod:`ingest.ibkr.loader`,
:mod:`ingest.csv_source`) and :mod:`ingest.report` formats what is printed. Every failure a user can cause ends
in one line on stderr and an exit status of :class:`ingest.exit_codes.ExitCode`:

{exit_codes}
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TextIO

from command_line import (
    OneLineParser,
    outlives_its_reader,
    path_argument,
    quiet_asyncio_after_an_interrupt,
    sigterm_interrupts,
)
from ingest import exit_codes
from ingest.exit_codes import ExitCode

if TYPE_CHECKING:
    from ingest.raw_tables import BarSettings

__doc__ = __doc__.format(exit_codes=exit_codes.plain_text())

log = logging.getLogger("ingest")


def build_parser() -> argparse.ArgumentParser:
    """The command line alone: settings that have an environment variable too are resolved after parsing (a flag
    given wins, and its variable is then not read)."""
    from ingest.ibkr.options import WHAT_TO_SHOW
    from ingest.ibkr.pacing import DEFAULT_MAX_OPEN
    from ingest.ibkr.planner import DEFAULT_MONTHS
    from ingest.raw_tables import BarSettings
    from ingest.watchlist import DEFAULT_WATCHLIST

    default_bars = BarSettings()  # BarSettings defines the defaults; the help quotes them so that it cannot drift
    parser = OneLineParser(
        prog="python -m ingest",
        description="Load daily (or intraday) bars into the warehouse's raw schema, incrementally.",
        epilog="exit status:\n" + exit_codes.plain_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", choices=("ibkr", "csv"), default="ibkr", help="where bars come from (default: ibkr)"
    )
    parser.add_argument(
        "paths", nargs="*", type=path_argument, metavar="PATH", help="CSV files (only with --source csv)"
    )

    ibkr = parser.add_argument_group("IBKR source (gateway address from .env: IBKR_HOST, IBKR_PORT, IBKR_CLIENT_ID)")
    ibkr.add_argument(
        "--watchlist",
        type=path_argument,
        default=DEFAULT_WATCHLIST,
        help="CSV with symbol,primary_exchange (default: %(default)s)",
    )
    ibkr.add_argument(
        "--symbols",
        nargs="+",
        metavar="SYM",
        help="load these symbols instead of the watchlist (quote 'BRK B'; commas also separate)",
    )
    ibkr.add_argument("--limit", type=int, metavar="N", help="only the first N symbols")
    ibkr.add_argument(
        "--months",
        type=int,
        default=DEFAULT_MONTHS,
        metavar="N",
        help="history window in calendar months (default: %(default)s, five years)",
    )
    ibkr.add_argument(
        "--bar-size",
        help=f"IBKR bar size, e.g. '1 day', '1 hour', '5 mins' (default: IBKR_BAR_SIZE, else '{default_bars.bar_size}')",
    )
    ibkr.add_argument(
        "--what-to-show",
        type=str.upper,
        choices=WHAT_TO_SHOW,
        help="TRADES (split-adjusted) or ADJUSTED_LAST (split- and dividend-adjusted), ... "
        f"(default: IBKR_WHAT_TO_SHOW, else {default_bars.what_to_show})",
    )
    ibkr.add_argument(
        "--rth",
        action=argparse.BooleanOptionalAction,
        help="regular trading hours only (default: IBKR_USE_RTH, else --rth)",
    )
    ibkr.add_argument(
        "--full-refresh", action="store_true", help="fetch the whole window again, whatever the warehouse holds"
    )
    ibkr.add_argument(
        "--dry-run", action="store_true", help="print the plan (what would be requested per symbol, and why) and stop"
    )
    ibkr.add_argument(
        "--confirm-large-plan",
        action="store_true",
        help="run a plan of more than 10,000 requests or more than an hour under IBKR's pacing rules "
        "(refused otherwise, with the estimate)",
    )
    ibkr.add_argument(
        "--strict-pacing",
        action="store_true",
        help="also keep to IBKR's 60 requests per 10 minutes (always on for bars of 30 s or less)",
    )
    ibkr.add_argument(
        "--max-open",
        type=int,
        default=DEFAULT_MAX_OPEN,
        metavar="N",
        help="historical requests open at once, 1..50 (default: %(default)s)",
    )
    ibkr.add_argument("--host", help="override IBKR_HOST")
    ibkr.add_argument("--port", type=int, help="override IBKR_PORT")
    ibkr.add_argument("--client-id", type=int, help="override IBKR_CLIENT_ID")
    ibkr.add_argument(
        "--timeout",
        type=float,
        metavar="SEC",
        help="seconds one historical request may take (IBKR_REQUEST_TIMEOUT, default 60)",
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--no-progress", action="store_true", help="no progress bar (there is none when stderr is not a terminal)"
    )
    out.add_argument(
        "--show-all", action="store_true", help="list every symbol in the summary, not only failures and no-data"
    )
    out.add_argument("-v", "--verbose", action="store_true", help="log each retry, reconnect and failure as it happens")
    return parser


@outlives_its_reader
def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    import psycopg

    from warehouse_db.errors import ConfigFileError, WarehouseError, server_error_line
    from warehouse_db.settings import read_config

    stdout = stdout or sys.stdout
    parser = build_parser()
    args = parser.parse_args(argv)  # --help answers even when .env is unreadable
    try:
        config = read_config()
    except ConfigFileError as error:
        return _fail(ExitCode.USAGE, str(error))
    _setup_logging(args.verbose)
    try:
        with sigterm_interrupts():  # kill, a timeout or a scheduler ends a load as Ctrl+C does
            if args.source == "csv":
                if not args.paths:
                    parser.error("--source csv needs one or more CSV file paths")
                return _run_csv(args, stdout)
            if args.paths:
                parser.error("PATH arguments are only for --source csv")
            return _run_ibkr(args, config, stdout)
    except WarehouseError as error:
        return _fail(ExitCode.WAREHOUSE, f"warehouse: {error}")
    except psycopg.Error as error:
        return _fail(ExitCode.WAREHOUSE, f"warehouse: {server_error_line(error)}")
    except KeyboardInterrupt:
        return _fail(ExitCode.INTERRUPTED, "interrupted; every batch landed so far is complete, nothing partial landed")


# --- IBKR -----------------------------------------------------------------------------------------------


def _run_ibkr(args: argparse.Namespace, config: dict[str, str], stdout: TextIO) -> int:
    from ingest.ibkr.client_library import quiet_client_logs
    from ingest.ibkr.config import IbkrConfigError, IbkrSettings
    from ingest.ibkr.loader import PlanTooLargeError, load
    from ingest.ibkr.options import InvalidLoadOptions, LoadOptions
    from ingest.ibkr.session_types import GatewayUnavailableError
    from ingest.raw_tables import AnotherLoadRunning
    from ingest.report import describe_refusals, format_plan, format_summary
    from ingest.watchlist import DEFAULT_WATCHLIST, WatchlistError, select_entries

    try:
        ibkr = IbkrSettings.from_config(
            config, host=args.host, port=args.port, client_id=args.client_id, request_timeout_s=args.timeout
        )
        given = args.watchlist != DEFAULT_WATCHLIST  # beside --symbols, a watchlist named must be readable
        entries = select_entries(args.watchlist, args.symbols, args.limit, watchlist_given=given)
        options = LoadOptions(
            entries=entries,
            bar=bar_settings(args, config),
            months=args.months,
            full_refresh=args.full_refresh,
            dry_run=args.dry_run,
            strict_pacing=args.strict_pacing,
            max_open=args.max_open,
            confirm_large_plan=args.confirm_large_plan,
            progress=_show_progress(args) and not args.dry_run,
        )
    except (IbkrConfigError, WatchlistError, InvalidLoadOptions) as error:
        return _fail(ExitCode.USAGE, str(error))

    db = _resolve_warehouse()
    if db is None:
        return ExitCode.WAREHOUSE
    if not args.verbose:
        quiet_client_logs()
    log.info("IBKR load: %d symbols from %s into %s", len(options.entries), ibkr.describe(), db.describe())
    try:
        if options.progress:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                summary = load(db, ibkr, options)
        else:
            summary = load(db, ibkr, options)
    except GatewayUnavailableError as error:
        return _fail(ExitCode.GATEWAY, str(error))
    except PlanTooLargeError as error:
        return _fail(ExitCode.USAGE, f"plan refused: {error}")
    except AnotherLoadRunning as error:
        return _fail(ExitCode.BUSY, str(error))

    if args.dry_run:
        print(format_plan(summary, options), file=stdout)
        return ExitCode.OK
    print(format_summary(summary, options, show_all=args.show_all), file=stdout)
    if summary.invalid_request:
        return _fail(ExitCode.INVALID_REQUEST, summary.aborted)
    if summary.market_data_refused is not None:
        return _fail(ExitCode.MARKET_DATA_REFUSED, summary.aborted)
    if summary.refused_everything:
        return _fail(ExitCode.MARKET_DATA_REFUSED, describe_refusals(summary))
    if summary.aborted:
        return _fail(ExitCode.GATEWAY, summary.aborted)
    return ExitCode.OK if summary.ok else ExitCode.FAILED_SYMBOLS


# --- CSV ------------------------------------------------------------------------------------------------


def _run_csv(args: argparse.Namespace, stdout: TextIO) -> int:
    from ingest.csv_source import CsvValidationError, load_csv
    from ingest.report import format_csv_summary

    db = _resolve_warehouse()
    if db is None:
        return ExitCode.WAREHOUSE
    try:
        summary = load_csv(db, list(args.paths), progress=_show_progress(args))
    except CsvValidationError as error:
        problems = f"{error.total} problem{'s' if error.total > 1 else ''}"
        return _fail(ExitCode.USAGE, f"CSV rejected ({problems}), nothing landed:\n{error}")
    print(format_csv_summary(summary), file=stdout)
    return ExitCode.OK


# --- helpers --------------------------------------------------------------------------------------------


def _resolve_warehouse():
    """The configured warehouse's settings (the embedded one is started if need be), or None after saying why."""
    import warehouse_db

    try:
        return warehouse_db.resolve_settings()
    except Exception as error:  # noqa: BLE001 - any failure to find or start the warehouse is one line, exit 4
        _fail(ExitCode.WAREHOUSE, f"cannot reach the warehouse: {error}")
        return None


def _show_progress(args: argparse.Namespace) -> bool:
    """A progress bar redraws one terminal line; in a log file or a pipe it would be a line per update."""
    return not args.no_progress and sys.stderr.isatty()


def _fail(code: ExitCode, message: str | None) -> ExitCode:
    print(f"error: {message}", file=sys.stderr)
    return code


def bar_settings(args: argparse.Namespace, config: dict[str, str]) -> BarSettings:
    """What bars to ask for: each flag given, else its variable (IBKR_BAR_SIZE, IBKR_WHAT_TO_SHOW, IBKR_USE_RTH), else
    the default. A value from a variable is checked here, so that its error names the variable."""
    from ingest.ibkr.bar_sizes import parse_bar_size
    from ingest.ibkr.options import WHAT_TO_SHOW
    from ingest.raw_tables import BarSettings

    def known_what_to_show(text: str) -> None:
        if text.strip().upper() not in WHAT_TO_SHOW:
            raise ValueError(f"not one of {', '.join(WHAT_TO_SHOW)}")

    defaults = BarSettings()
    bar_size = args.bar_size or _checked(config, "IBKR_BAR_SIZE", defaults.bar_size, parse_bar_size)
    what_to_show = args.what_to_show or _checked(config, "IBKR_WHAT_TO_SHOW", defaults.what_to_show, known_what_to_show)
    return BarSettings(bar_size, what_to_show.strip().upper(), use_rth(args, config))


def _checked(config: dict[str, str], name: str, default: str, check: Callable[[str], object]) -> str:
    from ingest.ibkr.config import IbkrConfigError

    text = (config.get(name) or "").strip()
    if not text:
        return default
    try:
        check(text)
    except ValueError as error:
        raise IbkrConfigError(f"{name}={config[name]!r}: {error}") from None
    return text


def use_rth(args: argparse.Namespace, config: dict[str, str]) -> bool:
    """--rth/--no-rth, else IBKR_USE_RTH, else regular hours: a flag given makes the variable unread (and any typo in
    it harmless), as --host/--port/--client-id/--timeout do for theirs."""
    from ingest.raw_tables import BarSettings

    return args.rth if args.rth is not None else _bool(config, "IBKR_USE_RTH", BarSettings().use_rth)


def _bool(config: dict[str, str], name: str, default: bool) -> bool:
    """A yes/no setting; anything else is an error, not a silent "no" (IBKR_USE_RTH=ture would load all hours)."""
    from ingest.ibkr.config import IbkrConfigError

    text = (config.get(name) or "").strip().lower()
    if not text:
        return default
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise IbkrConfigError(f"{name}={config[name]!r} is not true or false (1/0, yes/no, on/off)")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("ingest").setLevel(logging.INFO if verbose else logging.WARNING)
    quiet_asyncio_after_an_interrupt()
