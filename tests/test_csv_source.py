"""The CSV source: valid files land through the landing path; bad files are rejected whole, naming file:line."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.csv_source import CsvValidationError, Problems, load_csv_files, read_csv_bars
from ingest.raw_tables import new_load_id
from ingest.sessions import FinalBars
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

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
    "high below low": (HEADER + "AAPL,2025-03-03,1,0.4,0.5,1,5,,\n", "high 0.4 < low 0.5", 2),
    "close above high": (HEADER + "AAPL,2025-03-03,1,2,0.5,2.5,5,,\n", "within", 2),
    "negative volume": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,-5,,\n", "volume", 2),
    "impossible date": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,\nAAPL,2025-02-30,1,2,0.5,1,5,,\n", "2025-02-30", 3),
    "future date": (HEADER + "AAPL,2999-01-04,1,2,0.5,1,5,,\n", "future", 2),
    "missing column": ("symbol,date,open,high,low,volume\nAAPL,2025-03-03,1,2,0.5,5\n", "missing column(s) close", 1),
    "empty file": ("", "empty", 1),
    "header only": (HEADER, "no bars", 2),
    "SQL in a symbol": (HEADER + "X'); drop table raw.ibkr_bars; --,2025-03-03,1,2,0.5,1,5,,\n", "invalid symbol", 2),
    "duplicate bar": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,\nAAPL,2025-03-03,1,2,0.5,1.5,5,,\n", "duplicate", 3),
    "too many fields": (HEADER + "AAPL,2025-03-03,1,2,0.5,1,5,,,extra\n", "fields", 2),
}


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


def test_every_bad_line_of_a_file_is_reported(tmp_path):
    path = write(
        tmp_path,
        HEADER + "AAPL,2025-03-03,nan,2,0.5,1,5,,\nAAPL,2025-03-04,1,2,0.5,1,5,,\nMSFT,2025-13-01,1,2,0.5,1,5,,\n",
    )
    problems = Problems()
    good = list(read_csv_bars(path, problems, FinalBars(datetime.now(UTC))))
    assert [line for line, _ in good] == [3]
    assert [error.split(": ")[0] for error in problems.kept] == [f"{path}:2", f"{path}:4"]
