"""``python -m ingest`` on bad input: one line naming the setting, the documented exit status, no traceback, nothing
landed. The checks live with the settings they check, so calling the loader directly gets them too."""

from __future__ import annotations

import re
import socket
from datetime import UTC, datetime

import pytest

from devtools.documented_tables import documented_table
from ingest import cli
from ingest.exit_codes import TABLE_HEADER, ExitCode, markdown_table
from ingest.ibkr.config import IbkrConfigError, IbkrSettings
from ingest.ibkr.options import InvalidLoadOptions, LoadOptions
from ingest.raw_tables import BarSettings
from ingest.watchlist import WatchlistEntry, select_entries
from warehouse_db import connect

AAPL = [WatchlistEntry("AAPL", "NASDAQ")]


def test_the_documented_exit_statuses_are_the_enum():
    assert documented_table(TABLE_HEADER) == markdown_table(), (
        "docs/ingest.md's exit status table is not ingest/exit_codes.py's: paste the output of "
        'python -c "from ingest.exit_codes import markdown_table; print(markdown_table())" over it'
    )


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


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--watchlist", "{tmp}/missing.csv"], "{tmp}/missing.csv: watchlist file not found"),
        # Any other reason the file cannot be opened (here a name longer than the file system allows).
        (
            ["--watchlist", "{tmp}/" + "w" * 300],
            "{tmp}/" + "w" * 300 + ": cannot read the watchlist: File name too long",
        ),
        # Only separators: nothing to load, said before the warehouse or the gateway is contacted.
        (["--symbols", ", ,"], "no symbols to load"),
    ],
)
def test_a_watchlist_that_cannot_be_read_or_no_symbol_is_one_line_and_exit_2(tmp_path, capsys, argv, says):
    assert cli.main([arg.format(tmp=tmp_path) for arg in argv]) == ExitCode.USAGE
    assert capsys.readouterr().err == f"error: {says.format(tmp=tmp_path)}\n"


def test_symbols_given_by_name_do_not_need_the_watchlist(tmp_path):
    """--symbols takes a listed symbol's exchange from the watchlist; without a readable one it goes on without it."""
    watchlist = tmp_path / "watchlist.csv"
    watchlist.write_text("symbol,primary_exchange\nAAPL,NASDAQ\n", encoding="utf-8")
    assert select_entries(watchlist, ["aapl,,MSFT", "AAPL"]) == [
        WatchlistEntry("AAPL", "NASDAQ"),
        WatchlistEntry("MSFT", ""),
    ]
    assert select_entries(tmp_path / "missing.csv", ["AAPL"]) == [WatchlistEntry("AAPL", "")]


def test_the_environment_is_checked_like_the_flags(monkeypatch, capsys):
    monkeypatch.setenv("IBKR_PORT", "70000")
    assert cli.main(["--symbols", "AAPL"]) == ExitCode.USAGE
    assert "IBKR_PORT=70000 is out of range 1..65535" in capsys.readouterr().err


@pytest.mark.parametrize(("value", "rth"), [("maybe", None), ("ture", None), ("no", False), (" On ", True)])
def test_a_yes_no_setting_that_is_neither_is_an_error_not_a_silent_no(monkeypatch, capsys, value, rth):
    monkeypatch.setenv("IBKR_USE_RTH", value)
    if rth is None:
        assert cli.main(["--symbols", "AAPL"]) == ExitCode.USAGE
        assert capsys.readouterr().err == f"error: IBKR_USE_RTH={value!r} is not true or false (1/0, yes/no, on/off)\n"
        with pytest.raises(SystemExit) as exit_:
            cli.main(["--help"])  # still answers
        assert exit_.value.code == 0
    else:
        assert cli.use_rth(cli.build_parser().parse_args([]), {"IBKR_USE_RTH": value}) is rth


@pytest.mark.parametrize(
    ("name", "value", "flag"),
    [
        ("IBKR_PORT", "gateway", ["--port", "4002"]),
        ("IBKR_HOST", "  ", ["--host", "127.0.0.1"]),
        ("IBKR_CLIENT_ID", "-1", ["--client-id", "5"]),
        ("IBKR_REQUEST_TIMEOUT", "0", ["--timeout", "5"]),
        ("IBKR_USE_RTH", "ture", ["--no-rth"]),
        ("IBKR_BAR_SIZE", "7 mins", ["--bar-size", "1 day"]),
        ("IBKR_WHAT_TO_SHOW", "NOPE", ["--what-to-show", "TRADES"]),
    ],
)
def test_a_flag_wins_over_its_variable_whose_bad_value_then_does_not_matter(monkeypatch, capsys, name, value, flag):
    monkeypatch.setenv(name, value)
    assert cli.main(["--symbols", "AAPL", "--dry-run"]) == ExitCode.USAGE  # the variable alone is checked
    assert name in capsys.readouterr().err  # and named
    # With the flag, the settings pass and the run goes on to the warehouse (which a unit test is refused: exit 4).
    assert cli.main([*flag, "--symbols", "AAPL", "--dry-run"]) == ExitCode.WAREHOUSE
    err = capsys.readouterr().err
    assert err.startswith("error: cannot reach the warehouse") and f"{name}=" not in err, err


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("IBKR_CONNECT_TIMEOUT", "abc", "IBKR_CONNECT_TIMEOUT='abc' is not a number of seconds"),
        ("IBKR_REQUEST_TIMEOUT", "abc", "IBKR_REQUEST_TIMEOUT='abc' is not a number of seconds"),
        ("IBKR_RECONNECT_TIMEOUT", "10s", "IBKR_RECONNECT_TIMEOUT='10s' is not a number of seconds"),
        ("IBKR_CONNECT_TIMEOUT", "nan", "IBKR_CONNECT_TIMEOUT='nan' must be a number of seconds above 0"),
        ("IBKR_REQUEST_TIMEOUT", "inf", "IBKR_REQUEST_TIMEOUT='inf' must be a number of seconds above 0"),
        ("IBKR_RECONNECT_TIMEOUT", "-5", "IBKR_RECONNECT_TIMEOUT='-5' must be a number of seconds above 0"),
        ("IBKR_CONNECT_TIMEOUT", "1e9", "IBKR_CONNECT_TIMEOUT='1e9' is more than a day (86400 s)"),
        ("IBKR_PORT", "4002.5", "IBKR_PORT='4002.5' is not an integer"),
        ("IBKR_PORT", "4002\nx", "IBKR_PORT='4002\\nx' is not an integer"),
        ("IBKR_CLIENT_ID", "abc", "IBKR_CLIENT_ID='abc' is not an integer"),
        ("IBKR_CLIENT_ID", "-1", "IBKR_CLIENT_ID=-1 is out of range 0..2147483647"),
        ("IBKR_HOST", " ", "the gateway host (IBKR_HOST, --host) is empty"),
        (
            "IBKR_HOST",
            "a..b",
            "the gateway host (IBKR_HOST, --host) is not a host name: a part between dots is empty or longer than 63 "
            "characters",
        ),
        (
            "IBKR_HOST",
            "http://me:s3cret@gw",
            "the gateway host (IBKR_HOST, --host) is not a host name or address: give the host alone, e.g. 127.0.0.1 "
            "(no scheme, user, password or path)",
        ),
        (
            "IBKR_WHAT_TO_SHOW",
            "NOPE",
            "IBKR_WHAT_TO_SHOW='NOPE': not one of TRADES, ADJUSTED_LAST, MIDPOINT, BID, ASK, BID_ASK",
        ),
        ("IBKR_USE_RTH", "ture", "IBKR_USE_RTH='ture' is not true or false (1/0, yes/no, on/off)"),
    ],
)
def test_each_bad_ibkr_variable_is_one_line_and_exit_2_before_the_warehouse(monkeypatch, capsys, name, value, says):
    """Through the command line's main, as `python -m ingest` runs it: the documented status 2 (a bad setting), one
    line naming the variable, and nothing tried (a good value goes on to the warehouse, which a unit test is refused: 4)."""
    monkeypatch.setenv(name, value)
    assert cli.main(["--symbols", "AAPL", "--no-progress"]) == ExitCode.USAGE == 2
    assert capsys.readouterr() == ("", f"error: {says}\n")
    monkeypatch.delenv(name)
    assert cli.main(["--symbols", "AAPL", "--no-progress"]) == ExitCode.WAREHOUSE


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_plan_too_large_is_refused_with_its_estimate_before_any_request(warehouse, monkeypatch, capsys):
    for name, value in {**warehouse.libpq_env(), "DATABASE_URL": "", "IBKR_PORT": str(free_port())}.items():
        monkeypatch.setenv(name, value)  # no gateway listens there: a refused plan never tries to connect
    argv = ["--symbols", "AAPL", "--bar-size", "1 secs", "--months", "600", "--no-progress"]
    assert cli.main(argv) == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: plan refused: the plan needs ") and err.count("\n") == 1, err
    requests = int(re.search(r"needs ([\d,]+) historical requests", err).group(1).replace(",", ""))
    assert requests > 800_000 and " days under IBKR's pacing rules" in err and "--confirm-large-plan" in err
    assert cli.main([*argv, "--dry-run"]) == ExitCode.OK
    assert "too large to run without --confirm-large-plan" in capsys.readouterr().out
    with connect(warehouse) as conn:
        assert conn.execute("select count(*) from raw.load_batches").fetchone() == (0,)


@pytest.mark.integration
def test_an_unreachable_warehouse_is_one_line_and_exit_4(tmp_path, monkeypatch, capsys):
    bars = tmp_path / "bars.csv"
    bars.write_text("symbol,date,open,high,low,close,volume\nAAPL,2025-03-03,1,2,0.5,1,5\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", f"postgresql://ingest:s3cret@127.0.0.1:{free_port()}/warehouse")
    assert cli.main(["--source", "csv", str(bars), "--no-progress"]) == ExitCode.WAREHOUSE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "s3cret" not in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--months", "abc"], "argument --months: invalid int value: 'abc'"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--source", "csv"], "--source csv needs one or more CSV file paths"),
        (["--source", "ibkr", "bars.csv"], "PATH arguments are only for --source csv"),
    ],
)
def test_a_usage_error_is_one_line_not_the_usage_block(capsys, argv, says):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err == f"error: {says}; see python -m ingest --help\n"


def test_a_dotenv_that_cannot_be_read_is_one_line_and_a_usage_error(monkeypatch, capsys):
    from warehouse_db import settings
    from warehouse_db.errors import ConfigFileError

    def unreadable(*args, **kwargs):
        raise ConfigFileError("/repo/.env:2: not UTF-8 (byte 0xff)")

    monkeypatch.setattr(settings, "read_config", unreadable)
    assert cli.main(["--dry-run"]) == ExitCode.USAGE
    assert capsys.readouterr().err == "error: /repo/.env:2: not UTF-8 (byte 0xff)\n"


def test_help_still_answers_when_the_dotenv_cannot_be_read(monkeypatch, capsys):
    from warehouse_db import settings
    from warehouse_db.errors import ConfigFileError

    def unreadable(*args, **kwargs):
        raise ConfigFileError("/repo/.env:2: not UTF-8 (byte 0xff)")

    monkeypatch.setattr(settings, "read_config", unreadable)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0 and "--watchlist" in capsys.readouterr().out
