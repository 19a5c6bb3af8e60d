"""The raw tables are defined once (ingest/raw_tables.py): dbt's sources YAML, the staging models and the warehouse
itself are checked against that definition, and an older warehouse is brought up to it."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime

import yaml
from psycopg import sql

from ingest.landing import Batch, land_batch, new_load_id, utc_now
from ingest.raw_reads import CONTRACT_HOLDERS_SQL
from ingest.raw_tables import (
    BAR_SOURCE_COLUMNS,
    IBKR_BARS,
    LOAD_BATCHES,
    RAW_TABLES,
    BarSettings,
    RawBar,
    ensure_raw_tables,
)
from warehouse_db import connect
from warehouse_db.provision import provision
from warehouse_db.settings import REPO_ROOT

STAGING = REPO_ROOT / "warehouse" / "models" / "staging"


def source_tables() -> dict[str, dict[str, str]]:
    """{table: {column: data_type}} as dbt's sources YAML declares them."""
    document = yaml.safe_load((STAGING / "_ibkr__sources.yml").read_text(encoding="utf-8"))
    (source,) = document["sources"]
    assert source["schema"] == "raw"
    return {
        table["name"]: {column["name"]: column.get("data_type") for column in table["columns"]}
        for table in source["tables"]
    }


def test_the_sources_yaml_declares_exactly_the_columns_and_types_of_the_raw_tables():
    declared = source_tables()
    assert set(declared) == {table.name for table in RAW_TABLES}
    for table in RAW_TABLES:
        assert declared[table.name] == {column.name: column.sql_type for column in table.columns}, table.name


def test_the_staging_models_read_every_raw_column():
    for table, model in ((IBKR_BARS, "stg_ibkr__bars.sql"), (LOAD_BATCHES, "stg_ibkr__load_batches.sql")):
        sql = (STAGING / model).read_text(encoding="utf-8")
        missing = [name for name in table.column_names if not re.search(rf"\b{name}\b", sql)]
        assert missing == [], f"{model} does not read {missing}"


def documented_raw_columns() -> dict[str, dict[str, str | None]]:
    """{table: {column: type or None}} from the two tables under docs/ingest.md's "What lands in `raw`" (a row may
    name several columns, "exchange, currency", with one type for all or one type each)."""
    page = (REPO_ROOT / "docs" / "ingest.md").read_text(encoding="utf-8")
    section = page.split("## What lands in `raw`", 1)[1].split("\n## ", 1)[0]
    tables: list[dict[str, str | None]] = []
    for line in section.splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if cells[0] == "column":
            tables.append({})
        elif not set(line) <= set("|-: "):
            names = [name.strip(" `") for name in cells[0].split(",")]
            types = [t.strip() for t in cells[1].split(",")] if len(cells) == 3 else [None]
            tables[-1].update(zip(names, types * len(names) if len(types) == 1 else types, strict=True))
    bars, batches = tables
    return {IBKR_BARS.name: bars, LOAD_BATCHES.name: batches}


def test_the_analysts_table_of_docs_ingest_md_lists_every_raw_column():
    documented = documented_raw_columns()
    spelled = {"timestamp with time zone": "timestamptz"}
    bars = {column.name: spelled.get(column.sql_type, column.sql_type) for column in IBKR_BARS.columns}
    assert documented[IBKR_BARS.name] == bars, "docs/ingest.md 'What lands in `raw`' must list raw.ibkr_bars' columns"
    assert set(documented[LOAD_BATCHES.name]) == set(LOAD_BATCHES.column_names), (
        "docs/ingest.md 'What lands in `raw`' must list raw.load_batches' columns"
    )


def test_the_row_type_is_the_column_list():
    assert RawBar._fields == tuple(column.name for column in BAR_SOURCE_COLUMNS)
    assert set(RawBar._field_defaults) >= {"volume", "wap", "bar_count", "con_id", "exchange", "currency"}


# The tables as the first released version created them: bar_count integer, no request_reason / readjustment_factor.
OLD_DDL = """
create table raw.ibkr_bars (
    symbol text not null, con_id bigint, exchange text, currency text, bar_size text not null,
    what_to_show text not null, use_rth boolean not null, bar_time timestamptz not null, session_date date not null,
    open double precision not null, high double precision not null, low double precision not null,
    close double precision not null, volume double precision, wap double precision, bar_count integer,
    source text not null, load_id uuid not null, batch_id uuid not null, ingested_at timestamptz not null
);
create table raw.load_batches (
    batch_id uuid primary key, load_id uuid not null, source text not null, symbol text not null,
    bar_size text not null, what_to_show text not null, use_rth boolean not null, requested_start timestamptz,
    requested_end timestamptz, status text not null check (status in ('ok', 'no_data', 'failed')),
    row_count integer not null, error_code integer, error_message text, started_at timestamptz not null,
    finished_at timestamptz not null
);
"""


def warehouse_columns(conn, table: str) -> dict[str, str]:
    rows = conn.execute(
        "select column_name, data_type from information_schema.columns where table_schema = 'raw' and table_name = %s",
        (table,),
    ).fetchall()
    return dict(rows)


def test_an_older_warehouse_is_brought_up_to_the_definition_and_keeps_its_rows(embedded_cluster):
    from devtools.scratch_database import scratch_database

    with scratch_database("test_raw_migration", embedded_cluster) as settings, connect(settings) as conn:
        provision(conn)
        with conn.transaction():
            conn.execute("set local role loader")
            conn.execute(OLD_DDL)
            conn.execute(
                "insert into raw.ibkr_bars (symbol, bar_size, what_to_show, use_rth, bar_time, session_date, open, "
                "high, low, close, bar_count, source, load_id, batch_id, ingested_at) values ('OLD', '1 day', "
                "'TRADES', true, now(), current_date, 1, 1, 1, 1, 2147483647, 'csv', %s, %s, now())",
                (uuid.uuid4(), uuid.uuid4()),
            )
        ensure_raw_tables(conn)
        ensure_raw_tables(conn)  # and again: nothing left to change
        for table in RAW_TABLES:
            assert warehouse_columns(conn, table.name) == {c.name: c.sql_type for c in table.columns}, table.name
        assert conn.execute("select bar_count from raw.ibkr_bars where symbol = 'OLD'").fetchone() == (2147483647,)

        # A trade count beyond 2^31 no longer wraps (it was stored as 705032704 in an integer column).
        bar = RawBar(
            "BIG", datetime(2025, 3, 3, 5, tzinfo=UTC), date(2025, 3, 3), 1.0, 2.0, 0.5, 1.5, 1e10, 1.2, 5_000_000_000
        )
        batch = Batch("BIG", BarSettings(), "ok", utc_now(), request_reason="test")
        assert land_batch(conn, load_id=new_load_id(), source="test", batch=batch, bars=[bar]) == 1
        assert conn.execute("select bar_count from raw.ibkr_bars where symbol = 'BIG'").fetchone() == (5_000_000_000,)
        assert conn.execute("select request_reason from raw.load_batches").fetchall() == [("test",)]


def test_the_contract_holders_read_probes_each_symbol_once_and_never_reads_all_the_bars(embedded_cluster):
    """The loader asks it on every run (a ticker change's warning): its cost must grow with the symbols raw holds,
    not with their bars (4 symbols of 300 bars here; 5,000 of 1,260 take 0.08 s)."""
    from devtools.scratch_database import scratch_database

    with scratch_database("test_raw_holders", embedded_cluster) as settings, connect(settings) as conn:
        provision(conn)
        ensure_raw_tables(conn)
        conn.execute(
            "insert into raw.ibkr_bars (symbol, bar_time, session_date, open, high, low, close, con_id, bar_size, "
            "what_to_show, use_rth, load_id, batch_id, source, ingested_at) "
            "select 'S' || s, timestamptz '2020-01-01' + d * interval '1 day', date '2020-01-01' + d, 1, 1, 1, 1, "
            "100 + s, '1 day', 'TRADES', true, gen_random_uuid(), gen_random_uuid(), 'ibkr', now() "
            "from generate_series(1, 4) s, generate_series(1, 300) d"
        )
        conn.execute("analyze raw.ibkr_bars")
        conn.execute("set local enable_seqscan = off")  # a plan that must read every bar shows it anyway
        explain = sql.SQL("explain (analyze, format json) ") + CONTRACT_HOLDERS_SQL
        [[plan]] = conn.execute(explain, ("1 day", "TRADES", True, [102, 999])).fetchall()

    def bars_read(node: dict) -> float:
        here = 0.0
        if node.get("Relation Name") == "ibkr_bars":
            removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
            here = (node["Actual Rows"] + removed) * node["Actual Loops"]
        return here + sum(bars_read(child) for child in node.get("Plans", []))

    read = bars_read(plan[0]["Plan"])
    assert 0 < read <= 12, f"read {read} of 1,200 bars to find 4 symbols' latest: {plan}"
