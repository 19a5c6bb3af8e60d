"""The symbol pattern and the watchlist."""

from __future__ import annotations

import pytest

from ingest.symbols import SYMBOL_PATTERN, InvalidSymbolError, normalize_symbol
from ingest.watchlist import DEFAULT_WATCHLIST, WatchlistError, load_watchlist
from warehouse_db.settings import REPO_ROOT


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("AAPL", "AAPL"), (" msft ", "MSFT"), ("BRK.B", "BRK B"), ("brk b", "BRK B"), ("BF.B", "BF B"), ("F", "F")],
)
def test_symbols_are_normalised_to_ibkr_spelling(raw, normal):
    assert normalize_symbol(raw) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "X'); drop table raw.ibkr_bars; --",
        "AAPL\x00",
        "ÄPFEL",
        "TOOLONGSYMBOL",
        "1ABC",
        "BRK..B",
        "BRK B C",
        "AA\u200b",
        "ß",
    ],
)
def test_anything_else_is_rejected(raw):
    with pytest.raises(InvalidSymbolError):
        normalize_symbol(raw)


def test_dbt_staging_uses_the_same_pattern():
    project = (REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8")
    assert SYMBOL_PATTERN in project, "dbt_project.yml's symbol_pattern var must equal ingest.symbols.SYMBOL_PATTERN"


def test_the_shipped_watchlist_has_150_unique_valid_symbols():
    entries = load_watchlist(DEFAULT_WATCHLIST)
    assert len(entries) == 150
    assert len({e.symbol for e in entries}) == 150
    assert {e.primary_exchange for e in entries} <= {"NYSE", "NASDAQ"}
    assert "BRK B" in {e.symbol for e in entries}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("symbol,primary_exchange\nAAPL,NASDAQ\naapl,NASDAQ\n", ":3: duplicate symbol AAPL (first on line 2)"),
        ("symbol,primary_exchange\nAAPL,NASDAQ\nBAD;SYM,NYSE\n", ":3: invalid symbol"),
        ("symbol\nAAPL\n", ":1: missing column(s) primary_exchange"),
        ("symbol,primary_exchange\n", "has no symbols"),
        ("symbol,primary_exchange\nAAPL,\n", ":2: symbol AAPL has no primary_exchange"),
        ("symbol,primary_exchange\nAAPL,NAS\x00DAQ\n", ":2: primary_exchange 'NAS\\x00DAQ' of AAPL is not an exchange"),
        ('symbol,primary_exchange\nAAPL,"NAS\nDAQ"\n', ":3: primary_exchange 'NAS\\nDAQ' of AAPL is not an exchange"),
        # Lines as the file has them: blank lines are skipped, but counted.
        ("symbol,primary_exchange\nAAPL,NASDAQ\n\nMSFT,NASDAQ\n\nBAD;SYM,NYSE\n", ":6: invalid symbol 'BAD;SYM'"),
        ('symbol,primary_exchange\nAAPL,NASDAQ\n"MSFT,NASDAQ\n', ":3: malformed CSV (unexpected end of data)"),
        ("symbol,primary_exchange\nAAPL,NASDAQ\n" + "A" * 200_000 + ",NYSE\n", ":3: malformed CSV (field larger"),
    ],
)
def test_a_bad_watchlist_is_rejected_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "watchlist.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(WatchlistError) as raised:
        load_watchlist(path)
    assert str(path) in str(raised.value) and message in str(raised.value)


def test_a_watchlist_that_is_not_utf8_is_rejected(tmp_path):
    path = tmp_path / "watchlist.csv"
    path.write_bytes(b"symbol,primary_exchange\nSOCI\xc9T\xc9,NYSE\n")
    with pytest.raises(WatchlistError) as raised:
        load_watchlist(path)
    assert str(raised.value).startswith(f"{path}:2: not UTF-8 (byte 0xc9)")
