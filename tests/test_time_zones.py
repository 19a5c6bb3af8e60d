"""Session dates in a time zone where a calendar day is missing: Pacific/Apia skipped 2011-12-30, an NYSE session.

A server initialised there (initdb takes its zone from TZ), an ALTER DATABASE ... SET TimeZone, or PGTZ in dbt's
environment make it the session's TimeZone. SQL that steps a timestamptz through the days (generate_series over dates
picks the timestamptz variant) lost that day: the calendar model had no row for 2011-12-30, and the training
contract counted no session between 2011-12-29 and 2012-01-03.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from devtools import dbt_harness
from training.contract import _sessions_between_sql
from warehouse_db import connect
from warehouse_db.settings import ConnectionSettings

SKIPPED_DAY = date(2011, 12, 30)  # a Friday, an NYSE session, that never happened in Pacific/Apia


def test_the_calendar_model_has_every_day_whatever_dbts_time_zone(
    warehouse: ConnectionSettings, tmp_path: Path
) -> None:
    project = dbt_harness.DbtProject(warehouse, tmp_path, extra_env={"PGTZ": "Pacific/Apia"})
    project.run(
        "build",
        "--select",
        "xnys_sessions",
        "int_calendar_days_numbered",
        "--indirect-selection",
        "cautious",
        check=True,
    )
    with connect(warehouse) as conn:
        days = conn.execute(
            "select calendar_date, is_session, session_index from intermediate.int_calendar_days_numbered "
            "where calendar_date between '2011-12-28' and '2012-01-03' order by calendar_date"
        ).fetchall()
        sessions = conn.execute("select count(*) from seeds.xnys_sessions").fetchone()
        last_index = conn.execute("select max(session_index) from intermediate.int_calendar_days_numbered").fetchone()
    assert [day for day, _, _ in days] == [date(2011, 12, day) for day in (28, 29, 30, 31)] + [
        date(2012, 1, day) for day in (1, 2, 3)
    ]
    assert (SKIPPED_DAY, True) in [(day, is_session) for day, is_session, _ in days]
    assert last_index == sessions


def test_the_contracts_session_count_is_the_same_in_every_time_zone(warehouse: ConnectionSettings) -> None:
    query = (
        f"select {_sessions_between_sql('earlier', 'later')} from (values (%s::date, %s::date)) as f(earlier, later)"
    )
    counted = {}
    with connect(warehouse) as conn:
        for zone in ("UTC", "Pacific/Apia", "Pacific/Kiritimati", "Pacific/Pago_Pago"):
            conn.execute("select set_config('TimeZone', %s, false)", (zone,))
            counted[zone] = conn.execute(query, (date(2011, 12, 29), date(2012, 1, 3))).fetchone()[0]
    # Strictly between: 2011-12-30 only (2012-01-02 was New Year's Day observed).
    assert counted == dict.fromkeys(counted, 1), counted
