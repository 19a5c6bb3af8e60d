"""What ``python -m ingest`` prints: the dry run's plan, the summary table of an IBKR load, a CSV load's line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.csv_source import CsvLoadSummary
    from ingest.ibkr.gateway_errors import MarketDataRefusal
    from ingest.ibkr.loader import LoadSummary
    from ingest.ibkr.options import LoadOptions

MAX_DETAIL_ROWS = 25


def describe_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``2.1 h``, ``101 days``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:,.0f} days"


def _settings(options: LoadOptions) -> str:
    bar = options.bar
    months = f"{options.months} month{'s' if options.months != 1 else ''}"
    return f"{bar.bar_size} {bar.what_to_show} {'RTH' if bar.use_rth else 'all hours'}, {months}"


def format_plan(summary: LoadSummary, options: LoadOptions) -> str:
    """The dry run's output: per symbol, what would be requested and why."""
    lines = [
        f"dry run: {len(summary.results)} symbols, {_settings(options)}"
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
        n = plan.request_count
        first = plan.request(0).describe()
        what = first if n == 1 else f"{n} pages, newest {first}, oldest {plan.request(-1).describe()}"
        lines.append(f"{r.symbol:<{width}}  {n:>3} req{'s' if n > 1 else ' '}  {what}  <- {r.reason}")
    symbols = sum(1 for r in summary.results if r.plan and not r.plan.current)
    lines += ["", f"would request {summary.estimate.requests:,} historical request(s) for {symbols} symbol(s); "
              f"{len(summary.results) - symbols} current"]  # fmt: skip
    if summary.estimate.requests:
        lines.append(
            f"at least {describe_duration(summary.estimate.seconds)} under IBKR's pacing rules (gateway latency "
            "not counted)" + ("; too large to run without --confirm-large-plan" if summary.estimate.large else "")
        )
    lines += [f"ticker change? {contract.describe()}" for contract in summary.shared_contracts]
    return "\n".join(lines)


def format_summary(summary: LoadSummary, options: LoadOptions, *, show_all: bool = False) -> str:
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
        f"IBKR load {summary.load_id}: {len(summary.results)} symbols, {_settings(options)}, {summary.elapsed_s:.1f} s",
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
    if summary.unfinished and options.bar_size.intraday:
        lines.append(
            f"{summary.unfinished} bar(s) still in progress were not landed (not final yet; a run after they have "
            "ended fetches them)"
        )
    elif summary.unfinished:
        lines.append(
            f"{summary.unfinished} bar(s) of sessions still in progress were not landed (not final yet; "
            "the next run after the close fetches them)"
        )
    if summary.ahead:
        lines.append(
            f"{summary.ahead} bar(s) dated after this run's moment were not landed (the gateway's clock or data is "
            "ahead of this machine's; each lands once its session has ended)"
        )
    not_sessions = summary.not_sessions
    if not_sessions:
        lines.append(
            f"{sum(day.bars for _, day in not_sessions)} bar(s) dated on days without an exchange session were not "
            "landed, and no run ever lands them (if the gateway's other dates are a day off too, it writes them in "
            "another time zone):"
        )
        lines += [f"  {symbol}: {day.bars} bar(s): {day.reason}" for symbol, day in not_sessions[:MAX_DETAIL_ROWS]]
        if len(not_sessions) > MAX_DETAIL_ROWS:
            lines.append(f"  ... and {len(not_sessions) - MAX_DETAIL_ROWS} more days (the warnings name each)")
    for r in summary.readjusted:
        lines.append(f"{r.symbol}: {r.readjustment.describe()}; its whole window was fetched again")
    lines += [f"ticker change? {contract.describe()}" for contract in summary.shared_contracts]
    lines += _refusal_lines(summary)
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


def _refused(what: str, refusal: MarketDataRefusal, symbols: list[str]) -> str:
    named = ", ".join(symbols[:5]) + (f" and {len(symbols) - 5} more" if len(symbols) > 5 else "")
    return f"{what} (error {refusal.code}; {len(symbols)} symbol{'s' if len(symbols) > 1 else ''}: {named})"


def _advice(summary: LoadSummary) -> list[str]:
    """What to do about the run's market-data refusals, each piece of advice once."""
    return list(dict.fromkeys(refusal.advice() for refusal, _ in summary.refusals.values()))


def _refusal_lines(summary: LoadSummary) -> list[str]:
    """One line per thing IBKR's market-data entitlements refused (an exchange's permissions, a competing session):
    how many symbols it failed and a few of them; then what to do."""
    lines = [f"market data refused: {_refused(what, *refused)}" for what, refused in summary.refusals.items()]
    return lines + [f"what to do: {advice}" for advice in _advice(summary)]


def describe_refusals(summary: LoadSummary) -> str:
    """The one line of a run whose every failure IBKR's market-data entitlements caused."""
    refused = "; ".join(_refused(what, *refused) for what, refused in summary.refusals.items())
    return f"IBKR refused market data for every symbol that failed: {refused}: {' '.join(_advice(summary))}"


def format_csv_summary(summary: CsvLoadSummary) -> str:
    return (
        f"CSV load {summary.load_id}: {summary.files} file(s), {summary.symbols} symbol(s), {summary.rows} rows landed"
    )


def _shorten(text: str, limit: int = 110) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
