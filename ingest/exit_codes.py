"""The exit statuses of ``python -m ingest``, defined once.

The CLI's ``--help`` and docstring and the documentation's table are rendered from :class:`ExitCode`
(``tests/test_ingest_cli.py`` checks the docs against it). Adding one: add a member here with its description,
return it from ``ingest/cli.py``, and paste :func:`markdown_table`'s output into the docs.
"""

from __future__ import annotations

from enum import IntEnum

TABLE_HEADER = "`python -m ingest` exit status"
"""The first column's heading in the documentation's table (how the test finds the table)."""


class ExitCode(IntEnum):
    """Exit status of one ingest run; ``description`` says what it means."""

    description: str

    def __new__(cls, value: int, description: str) -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0, "every symbol landed, was current, or had no data"
    FAILED_SYMBOLS = 1, "some symbols failed (listed in the summary and in `raw.load_batches`)"
    USAGE = (
        2,
        (
            "bad usage, setting, `.env`, watchlist or CSV file (`file:line` shown), or a plan too large to run without "
            "`--confirm-large-plan`; nothing landed"
        ),
    )
    GATEWAY = 3, "no IB Gateway/TWS answers, or the connection was lost for good"
    WAREHOUSE = (
        4,
        "the warehouse cannot be reached, provisioned or written (a database not encoded UTF8, a read-only login, "
        "a statement past its statement_timeout)",
    )
    INVALID_REQUEST = (
        5,
        "IBKR rejected a bar request as invalid (error 321: its settings, which every symbol shares); the run stopped",
    )
    MARKET_DATA_REFUSED = (
        6,
        (
            "IBKR refused this login market data: another session of its username is live (10197, or 162 from a "
            "different IP address: the run stopped), or a missing subscription failed every symbol asked for (162 "
            '"No market data permissions", 354, 10089, 10090, 10168; where some landed, status 1); the summary says '
            "which and what to do"
        ),
    )
    BUSY = (
        7,
        "another ingest of the same bars (bar size, what to show, hours) is loading into this warehouse; nothing was "
        "requested: run again when it has ended",
    )
    INTERRUPTED = (
        130,
        "interrupted (Ctrl-C, SIGTERM from kill, or SIGHUP: the terminal hung up); every batch landed so far is complete, "
        "nothing partial landed",
    )


def plain_text() -> str:
    """One line per status, for ``--help`` and the module docstring."""
    return "\n".join(f"  {code.value:>3}  {code.description.replace('`', '')}" for code in ExitCode)


def markdown_table() -> str:
    """The documentation's table of exit statuses."""
    rows = [f"| {TABLE_HEADER} | meaning |", "|---|---|"]
    rows += [f"| {code.value} | {code.description} |" for code in ExitCode]
    return "\n".join(rows)
