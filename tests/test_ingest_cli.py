"""``python -m ingest`` on bad input: one line naming the setting, the documented exit status, no traceback, nothing
landed. The checks live with the settings they check, so calling the loader directly gets them too."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from ingest import cli
from ingest.exit_codes import TABLE_HEADER, ExitCode, markdown_table
from ingest.ibkr.config import IbkrConfigError, IbkrSettings
from ingest.ibkr.options import InvalidLoadOptions, LoadOptions
from ingest.raw_tables import BarSettings
from ingest.watchlist import WatchlistEntry
from warehouse_db.settings import REPO_ROOT

AAPL = [WatchlistEntry("AAPL", "NASDAQ")]


def documented_exit_table() -> str:
    """The exit-status table in the README or a docs page (whichever holds it)."""
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("**/*.md"))]
    for page in pages:
        if not page.exists():
            continue
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if line.startswith(f"| {TABLE_HEADER} |"):
                end = next((j for j in range(i, len(lines)) if not lines[j].startswith("|")), len(lines))
                return "\n".join(lines[i:end])
    raise AssertionError(f"no table headed '{TABLE_HEADER}' in README.md or docs/")


def test_the_documented_exit_statuses_are_the_enum():
    assert documented_exit_table() == markdown_table()


def test_help_and_docstring_list_every_exit_status(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_text = capsys.readouterr().out
    for code in ExitCode:
        assert re.search(rf"^\s*{code.value}\s+{re.escape(code.description[:20].replace('`', ''))}", help_text, re.M)
        assert f"{code.value}  {code.description.replace('`', '')}" in cli.__doc__


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "70000"], "port (IBKR_PORT, --port) 70000 is out of range 1..65535"),
        (["--port", "0"], "out of range 1..65535"),
        (["--client-id", "-1"], "client id (IBKR_CLIENT_ID, --client-id) -1 is out of range"),
        (
            ["--timeout", "-1"],
            "request timeout (IBKR_REQUEST_TIMEOUT, --timeout) -1 must be a number of seconds above 0",
        ),
        (["--timeout", "nan"], "must be a number of seconds above 0"),
        (["--timeout", "1e9"], "more than a day"),
        (["--months", "999999"], "months: 999999 is out of range 1..1200"),
        (["--months", "0"], "months: 0 is out of range"),
        (["--max-open", "51"], "max open: 51 is out of range 1..50"),
        (["--limit", "0"], "limit: 0 must be at least 1"),
        (["--bar-size", "7 mins"], "unknown bar size '7 mins'"),
        (["--what-to-show", "ADJUSTED_LAST", "--bar-size", "5 mins"], "ADJUSTED_LAST needs an empty endDateTime"),
        (["--symbols", "DROP;TABLE"], "--symbols: invalid symbol"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_is_contacted(argv, message, capsys):
    # A unit test: the conftest refuses any PostgreSQL connection, so the check happens before the warehouse.
    assert cli.main([*argv, "--symbols", "AAPL"] if "--symbols" not in argv else argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert "Traceback" not in err


def test_a_watchlist_that_is_a_directory_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["--watchlist", str(tmp_path)]) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}: is a directory, not a watchlist file\n"


def test_the_environment_is_checked_like_the_flags(monkeypatch, capsys):
    monkeypatch.setenv("IBKR_PORT", "70000")
    assert cli.main(["--symbols", "AAPL"]) == ExitCode.USAGE
    assert "IBKR_PORT=70000 is out of range 1..65535" in capsys.readouterr().err


def test_settings_check_themselves_when_built_directly():
    with pytest.raises(InvalidLoadOptions, match="ADJUSTED_LAST"):
        LoadOptions(entries=AAPL, bar=BarSettings("1 hour", "ADJUSTED_LAST"))
    with pytest.raises(InvalidLoadOptions, match="max open"):
        LoadOptions(entries=AAPL, max_open=51)
    with pytest.raises(InvalidLoadOptions, match="months"):
        LoadOptions(entries=AAPL, months=999_999)
    with pytest.raises(InvalidLoadOptions, match="no symbols"):
        LoadOptions(entries=[])
    with pytest.raises(InvalidLoadOptions, match="timezone-aware"):
        LoadOptions(entries=AAPL, now=datetime(2026, 1, 5))
    options = LoadOptions(entries=AAPL, bar=BarSettings("5 min", "trades"), now=datetime(2026, 1, 5, tzinfo=UTC))
    assert (options.bar.bar_size, options.bar.what_to_show) == ("5 mins", "TRADES")
    with pytest.raises(IbkrConfigError, match="port"):
        IbkrSettings(port=70000)
    with pytest.raises(IbkrConfigError, match="request timeout"):
        IbkrSettings(request_timeout_s=-1)
