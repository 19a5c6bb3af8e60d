"""The CSV source: valid files land through the landing path; bad files are rejected whole, naming file:line."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from ingest import cli
from ingest.csv_source import (
    PRICE_BOUNDS,
    VOLUME_MAX,
    CsvValidationError,
    Problems,
    display_path,
    load_csv_files,
    read_csv_bars,
)
from ingest.exit_codes import ExitCode
from ingest.landing import new_load_id
from ingest.sessions import FinalBars
from market_calendar import EXCHANGE_TZ as NY
from warehouse_db import connect
from warehouse_db.settings import REPO_ROOT, ConnectionSettings

HEADER = "symbol,date,open,high,low,close,volume,wap,bar_count\n"
GOOD_ROWS = (
    "AAPL,2025-03-03,241.79,244.03,236.11,238.03,47184000,239.5,500123\n"
    "AAPL,2025-03-04,237.71,240.07,234.68,235.93,53798100,237.1,600321\n"
    "BRK.B,2025-03-03,528.00,533.10,525.50,530.25,4100000,,\n"
    "brk b,2025-03-04,531.00,535.00,529.00,534.00,3900000,,\n"
)


def write(tmp_path: Path, content: bytes | str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def counts(settings: ConnectionSettings) -> tuple[int, int]:
    with connect(settings) as conn:
        bars = conn.execute("select count(*) from raw.ibkr_bars").fetchone()[0]
        batches = conn.execute("select count(*) from raw.load_batches").fetchone()[0]
    return bars, batches


def test_valid_file_lands_with_normalised_symbols_and_one_batch_per_symbol(warehouse, tmp_path):
    path = write(tmp_path, HEADER + GOOD_ROWS)
    with connect(warehouse) as conn:
        summary = load_csv_files(conn, [path], new_load_id(), progress=False)
        symbols = conn.execute("select symbol, count(*) from raw.ibkr_bars group by symbol order by symbol").fetchall()
        batches = conn.execute(
            "select symbol, status, row_count, source from raw.load_batches order by symbol"
        ).fetchall()
        midnight = conn.execute(
            "select distinct (bar_time at time zone 'America/New_York')::time from raw.ibkr_bars"
        ).fetchall()
    assert (summary.files, summary.symbols, summary.rows) == (1, 2, 4)
    assert symbols == [("AAPL", 2), ("BRK B", 2)]
    assert batches == [("AAPL", "ok", 2, "csv"), ("BRK B", "ok", 2, "csv")]
    assert [str(t) for (t,) in midnight] == ["00:00:00"]


def test_byte_order_mark_is_accepted(warehouse, tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbf" + (HEADER + GOOD_ROWS).encode())
    with connect(warehouse) as conn:
        assert load_csv_files(conn, [path], new_load_id(), progress=False).rows == 4


def test_landing_the_same_file_twice_is_safe_and_each_run_has_its_own_load(warehouse, tmp_path):
    path = write(tmp_path, HEADER + GOOD_ROWS)
    with connect(warehouse) as conn:
        first, second = new_load_id(), new_load_id()
        load_csv_files(conn, [path], first, progress=False)
        load_csv_files(conn, [path], second, progress=False)
        loads = conn.execute(
            "select load_id, count(*) from raw.load_batches group by load_id order by count(*)"
        ).fetchall()
        bars_per_load = conn.execute("select load_id, count(*) from raw.ibkr_bars group by load_id").fetchall()
    assert {load for load, _ in loads} == {first, second}
    assert [n for _, n in loads] == [2, 2]
    assert sorted(n for _, n in bars_per_load) == [4, 4]


BAD_FILES = {
    # "CAFÉ" saved by a Windows tool in cp1252: É is the single byte 0xC9.
    "cp1252 bytes": (
        (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,\n").encode() + b"CAF\xc9,2025-03-03,1,2,0.5,1,5,,\n",
        "not UTF-8",
        3,
    ),
    "NUL byte": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,\nAAPL,2025-03-04,1,2\x00,0.5,1,5,,\n", "NUL", 3),
    "NaN price": (HEADER + "AAPL,2025-03-03,nan,2,0.5,1,5,,\n", "finite", 2),
    "inf price": (HEADER + "AAPL,2025-03-03,1,inf,0.5,1,5,,\n", "finite", 2),
    "negative price": (HEADER + "AAPL,2025-03-03,1,2,-0.5,1,5,,\n", "> 0", 2),
    "zero price": (HEADER + "AAPL,2025-03-03,1,2,0.5,0,5,,\n", "> 0", 2),
    # Finite and positive, but beyond staging's bounds: it landed in append-only raw and failed dbt's staging test
    # (prices_positive_and_finite, volume_finite_not_negative) on every build after.
    "price above the staging bound": (
        HEADER + "AAPL,2025-03-03,1,2e15,0.5,1,5,,\n",
        "high is '2e15'; prices must lie within 1e-8 .. 1e15",
        2,
    ),
    "price below the staging bound": (
        HEADER + "AAPL,2025-03-03,1e-9,2,1e-9,1,5,,\n",
        "open is '1e-9'; prices must lie within 1e-8 .. 1e15",
        2,
    ),
    "volume above the staging bound": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,2e18,,\n", "'2e18' is above 1e18", 2),
    "high below low": (HEADER + "AAPL,2025-03-03,1,0.4,0.5,1,5,,\n", "high 0.4 < low 0.5", 2),
    "close above high": (HEADER + "AAPL,2025-03-03,1,2,0.5,2.5,5,,\n", "within", 2),
    "negative volume": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,-5,,\n", "volume", 2),
    "impossible date": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,\nAAPL,2025-02-30,1,2,0.5,1,5,,\n", "2025-02-30", 3),
    "future date": (HEADER + "AAPL,2999-01-04,1,2,0.5,1,5,,\n", "future", 2),
    # A bar on a day without a session would fail dbt's calendar test on every build: raw cannot take it back.
    "holiday": (HEADER + "AAPL,2025-07-03,1,2,0.5,1,5,,\nAAPL,2025-07-04,1,2,0.5,1,5,,\n", "holiday", 3),
    "Saturday": (HEADER + "AAPL,2025-03-08,1,2,0.5,1,5,,\n", "2025-03-08 is a Saturday", 2),
    "before the calendar": (HEADER + "AAPL,1999-12-31,1,2,0.5,1,5,,\n", "before 2000-01-01", 2),
    "missing column": ("symbol,date,open,high,low,volume\nAAPL,2025-03-03,1,2,0.5,5\n", "missing column(s) close", 1),
    "empty file": ("", "empty", 1),
    "header only": (HEADER, "no bars", 2),
    "price not a number": (HEADER + "AAPL,2025-03-03,one,2,0.5,1,5,,\n", "open 'one' is not a number", 2),
    "empty volume": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,,,\n", "volume is empty", 2),
    "unknown column": (HEADER.replace("wap", "vwap") + "AAPL,2025-03-03,1,2,0.5,1,5,,\n", "unknown column(s) vwap", 1),
    "column twice": ("symbol,date,open,high,low,close,volume,close\n", "a column appears twice", 1),
    # A quote inside an unquoted field: the csv module (strict) refuses the line rather than guess.
    "malformed CSV": (HEADER + 'AAPL,2025-03-03,1,2,0.5,1,5,,\nAAPL,"2025-03-04"x,1,2,0.5,1,5,,\n', "malformed CSV", 3),
    "SQL in a symbol": (HEADER + "X'); drop table raw.ibkr_bars; --,2025-03-03,1,2,0.5,1,5,,\n", "invalid symbol", 2),
    "duplicate bar": (HEADER + "AAPL,2025-03-05,1,2,0.5,1,5,,\nAAPL,2025-03-05,1,2,0.5,1.5,5,,\n", "duplicate", 3),
    "too many fields": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,,extra\n", "fields", 2),
    "compact date": (HEADER + "AAPL,20250303,1,2,0.5,1,5,,\n", "'20250303' is not a YYYY-MM-DD date", 2),
    "week date": (HEADER + "AAPL,2025-W10-1,1,2,0.5,1,5,,\n", "'2025-W10-1' is not a YYYY-MM-DD date", 2),
    "negative wap": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,-1,\n", "wap -1.0 must lie within [low 0.5, high 2.0]", 2),
    "wap above high": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,2.5,\n", "wap 2.5 must lie within", 2),
    "negative bar_count": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,1,-5\n", "bar_count -5 is out of range 0..2^63-1", 2),
    "fractional bar_count": (
        HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,1,1.5\n",
        "bar_count '1.5' is not a whole number",
        2,
    ),
    "negative con_id": (
        "symbol,date,open,high,low,close,volume,con_id\nAAPL,2025-03-03,1,2,0.5,1,5,-3\n",
        "con_id -3 is out of range 1..2^63-1",
        2,
    ),  # fmt: skip
    # Valid Python, but beyond bigint: this was an OverflowError traceback after the good file had committed.
    "con_id beyond bigint": (
        "symbol,date,open,high,low,close,volume,con_id\nAAPL,2025-03-03,1,2,0.5,1,5,9223372036854775808\n",
        "con_id 9223372036854775808 is out of range",
        2,
    ),  # fmt: skip
}


def test_the_price_and_volume_bounds_are_staging_s(tmp_path):
    """The loader refuses what dbt's staging tests would refuse on every build after (raw is append-only)."""
    tests = {
        test["expression_is_true"]["name"]: test["expression_is_true"]["arguments"]["expression"]
        for test in yaml.safe_load((REPO_ROOT / "warehouse/models/staging/stg_ibkr__bars.yml").read_text())["models"][
            0
        ]["data_tests"]
        if "expression_is_true" in test
    }
    prices = tests["stg_ibkr__bars_prices_positive_and_finite"]
    assert prices == "least(open, high, low, close) >= 1e-8 and greatest(open, high, low, close) <= 1e15"
    assert PRICE_BOUNDS == (1e-8, 1e15)
    assert tests["stg_ibkr__bars_volume_finite_not_negative"] == "volume is null or (volume >= 0 and volume <= 1e18)"
    assert VOLUME_MAX == 1e18
    # The bounds themselves land.
    path = write(tmp_path, HEADER + "AAPL,2025-03-03,1e-8,1e15,1e-8,1e15,1e18,,\n")
    problems = Problems()
    ((_, bar),) = read_csv_bars(path, problems, FinalBars(datetime.now(UTC)))
    assert (bar.low, bar.high, bar.volume, problems.kept) == (1e-8, 1e15, 1e18, [])


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_rejected_naming_file_and_line_and_nothing_lands(warehouse, tmp_path, case):
    content, reason, line = BAD_FILES[case]
    good = write(tmp_path, HEADER + GOOD_ROWS, name="good.csv")
    bad = write(tmp_path, content, name="bad.csv")
    with connect(warehouse) as conn, pytest.raises(CsvValidationError) as raised:
        # The good file comes first: a run with any bad file must still land nothing at all.
        load_csv_files(conn, [good, bad], new_load_id(), progress=False)
    message = str(raised.value)
    assert f"{bad}:{line}:" in message, message
    assert reason in message, message
    assert str(good) not in message
    assert counts(warehouse) == (0, 0)
    with connect(warehouse) as conn:  # the injection attempt did not drop anything
        assert conn.execute("select to_regclass('raw.ibkr_bars') is not null").fetchone()[0]


def test_a_bar_in_two_files_of_a_run_is_refused_naming_both(warehouse, tmp_path):
    """Both versions would land with the same ingested_at and load_id: which one dbt keeps would be left to chance."""
    good = write(tmp_path, HEADER + GOOD_ROWS, name="good.csv")
    revised = write(tmp_path, HEADER + "AAPL,2025-03-04,237.71,240.07,234.68,236.50,53798100,,\n", name="revised.csv")
    with connect(warehouse) as conn, pytest.raises(CsvValidationError) as raised:
        load_csv_files(conn, [good, revised], new_load_id(), progress=False)
    assert f"{revised}:2: duplicate bar for AAPL on 2025-03-04 (first on {good}:3)" in str(raised.value)
    assert counts(warehouse) == (0, 0)


def test_every_bad_line_of_a_file_is_reported(tmp_path):
    path = write(
        tmp_path,
        HEADER + "AAPL,2025-03-03,nan,2,0.5,1,5,,\nAAPL,2025-03-04,1,2,0.5,1,5,,\nMSFT,2025-13-01,1,2,0.5,1,5,,\n",
    )
    problems = Problems()
    good = list(read_csv_bars(path, problems, FinalBars(datetime.now(UTC))))
    assert [line for line, _ in good] == [3]
    assert [error.split(": ")[0] for error in problems.kept] == [f"{path}:2", f"{path}:4"]


def test_blank_lines_are_skipped_and_lines_keep_their_numbers_in_the_file(tmp_path):
    rows = GOOD_ROWS.splitlines(keepends=True)
    path = write(tmp_path, HEADER + rows[0] + "\n" + rows[1] + "\r\n" + "AAPL,2025-03-05,1,2,3,1,5,,\n\n")
    problems = Problems()
    good = list(read_csv_bars(path, problems, FinalBars(datetime.now(UTC))))
    assert [line for line, _ in good] == [2, 4]
    assert problems.kept == [f"{path}:6: high 2.0 < low 3.0"]


def test_a_trade_count_beyond_2_to_the_31_lands_exactly(warehouse, tmp_path):
    path = write(tmp_path, HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,1,5000000000\n")
    with connect(warehouse) as conn:
        assert load_csv_files(conn, [path], new_load_id(), progress=False).rows == 1
        assert conn.execute("select bar_count from raw.ibkr_bars").fetchone() == (5_000_000_000,)


def test_the_optional_exchange_and_currency_columns_land_and_an_empty_one_is_null(warehouse, tmp_path):
    path = write(
        tmp_path,
        "symbol,date,open,high,low,close,volume,exchange,currency\n"
        "AAPL,2025-03-03,1,2,0.5,1,5, NASDAQ ,USD\nAAPL,2025-03-04,1,2,0.5,1,5,,\n",
    )
    with connect(warehouse) as conn:
        assert load_csv_files(conn, [path], new_load_id(), progress=False).rows == 2
        assert conn.execute("select exchange, currency from raw.ibkr_bars order by bar_time").fetchall() == [
            ("NASDAQ", "USD"),
            (None, None),
        ]


def test_a_bar_of_a_session_still_trading_is_refused(warehouse, tmp_path):
    path = write(tmp_path, HEADER + "AAPL,2026-11-23,1,2,0.5,1,5,,\nAAPL,2026-11-24,1,2,0.5,1,5,,\n")
    trading = datetime(2026, 11, 24, 11, 30, tzinfo=NY)
    with connect(warehouse) as conn, pytest.raises(CsvValidationError) as raised:
        load_csv_files(conn, [path], new_load_id(), progress=False, now=trading)
    assert (
        str(raised.value)
        == f"{path}:3: the session of 2026-11-24 has not ended yet (its bar is not final until the close)"
    )
    assert counts(warehouse) == (0, 0)
    with connect(warehouse) as conn:  # after the close it is final
        after_close = datetime(2026, 11, 24, 16, 1, tzinfo=NY)
        assert load_csv_files(conn, [path], new_load_id(), progress=False, now=after_close).rows == 2


def unreadable_file(tmp_path: Path) -> Path:
    """A file this process cannot read: mode 000, or (root reads those) a file whose reads fail with EIO."""
    if os.geteuid() != 0:
        path = write(tmp_path, HEADER + GOOD_ROWS, name="secret.csv")
        path.chmod(0)
        return path
    return Path("/proc/self/mem")  # opens fine; reading from offset 0 fails with an I/O error


@pytest.mark.parametrize("kind", ["directory", "too long", "unreadable", "inside a file", "missing"])
def test_a_path_that_cannot_be_read_is_one_line_naming_it_and_nothing_lands(
    warehouse, tmp_path, kind, capsys, monkeypatch
):
    good = write(tmp_path, HEADER + GOOD_ROWS, name="good.csv")
    bad = {
        "directory": tmp_path,
        "too long": tmp_path / ("x" * 300 + ".csv"),
        "unreadable": unreadable_file(tmp_path),
        "inside a file": good / "bars.csv",
        "missing": tmp_path / "missing.csv",
    }[kind]
    expected = {
        "directory": "is a directory, not a CSV file",
        "too long": "cannot read it: File name too long",
        "unreadable": "cannot read it: ",
        "inside a file": "cannot read it: Not a directory",
        "missing": "file not found",
    }[kind]
    for name, value in {**warehouse.libpq_env(), "DATABASE_URL": ""}.items():
        monkeypatch.setenv(name, value)
    status = cli.main(["--source", "csv", str(good), str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert status == ExitCode.USAGE, err
    assert err.startswith("error: CSV rejected (1 problem), nothing landed:\n") and expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 2 and len(err.splitlines()[1]) < 300
    assert display_path(bad) in err
    assert counts(warehouse) == (0, 0)


def test_the_sample_file_is_what_its_script_writes(tmp_path):
    from devtools import make_sample_bars

    make_sample_bars.write(tmp_path / "sample.csv")
    assert (tmp_path / "sample.csv").read_bytes() == make_sample_bars.OUTPUT.read_bytes()


def test_a_file_given_twice_is_refused_before_anything_lands(warehouse, tmp_path, capsys, monkeypatch):
    good = write(tmp_path, HEADER + GOOD_ROWS, name="good.csv")
    for name, value in {**warehouse.libpq_env(), "DATABASE_URL": ""}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # the second time by a relative name: the same file all the same
    status = cli.main(["--source", "csv", str(good), "good.csv", "--no-progress"])
    err = capsys.readouterr().err
    assert status == ExitCode.USAGE, err
    assert "good.csv: given twice (also as " in err and "its rows would land twice" in err
    assert counts(warehouse) == (0, 0)
