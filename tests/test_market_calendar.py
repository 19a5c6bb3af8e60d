"""market_calendar is the one home of the exchange, its time zone and its sessions; dbt must agree with it."""

from __future__ import annotations

from datetime import date

import yaml

import market_calendar
from warehouse_db.settings import REPO_ROOT


def test_dbt_dates_sessions_in_the_same_time_zone():
    project = yaml.safe_load((REPO_ROOT / "dbt_project.yml").read_text(encoding="utf-8"))
    assert project["vars"]["exchange_timezone"] == market_calendar.EXCHANGE_TIMEZONE
    # After-hours bars are final at the same moment for the loader and for dbt's is_final.
    assert project["vars"]["extended_hours_end"] == market_calendar.EXTENDED_HOURS_END.strftime("%H:%M")


def test_sessions_skip_weekends_and_holidays_and_know_half_days():
    sessions = market_calendar.sessions_in_range("2024-07-01", "2024-07-08")
    # 4 July (Independence Day) and the weekend are not sessions.
    assert [day.date() for day in sessions] == [
        date(2024, 7, 1), date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5), date(2024, 7, 8),
    ]  # fmt: skip
    rows = market_calendar.schedule("2024-07-03", "2024-07-05")
    assert rows["is_half_day"].tolist() == [True, False]  # 3 July closes at 13:00 New York time
    closes = dict(market_calendar.session_closes(date(2024, 7, 3), date(2024, 7, 5)))
    assert closes[date(2024, 7, 3)].astimezone(market_calendar.EXCHANGE_TZ).hour == 13
    assert "2024-07-04" in market_calendar.non_session_weekdays()


def test_the_last_sessions_up_to_a_date():
    sessions = market_calendar.sessions_until("2024-07-05", 3)
    assert [day.date() for day in sessions] == [date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5)]
