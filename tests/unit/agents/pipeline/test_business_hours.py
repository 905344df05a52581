"""The business-hours SLA clock: within a day, overnight, weekends, holidays, DST, validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from agents.pipeline.business_hours import BusinessHours, BusinessHoursSpec, due_at

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessHours(timezone="Europe/Berlin")  # Mon-Fri 09:00-17:00


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


def due(start: datetime, hours: float, calendar: BusinessHours = OFFICE) -> datetime:
    return due_at(start, timedelta(hours=hours), calendar).astimezone(BERLIN)


def test_without_a_calendar_every_hour_counts() -> None:
    start = datetime(2026, 3, 6, 22, tzinfo=UTC)
    assert due_at(start, timedelta(hours=4)) == start + timedelta(hours=4)


def test_inside_one_day() -> None:
    assert due(berlin(2026, 3, 2, 10), 4) == berlin(2026, 3, 2, 14)  # Monday


def test_overnight_the_clock_stops_at_closing_and_resumes_at_opening() -> None:
    assert due(berlin(2026, 3, 2, 15), 4) == berlin(2026, 3, 3, 11)
    assert due(berlin(2026, 3, 2, 20), 1) == berlin(2026, 3, 3, 10), "posted after closing"
    assert due(berlin(2026, 3, 3, 6), 1) == berlin(2026, 3, 3, 10), "posted before opening"


def test_weekends_and_holidays_are_closed() -> None:
    assert due(berlin(2026, 3, 6, 16), 4) == berlin(2026, 3, 9, 12)  # Friday -> Monday
    assert due(berlin(2026, 3, 7, 12), 1) == berlin(2026, 3, 9, 10)  # Saturday
    christmas = BusinessHours(timezone="Europe/Berlin", holidays=frozenset({date(2026, 12, 25)}))
    assert due(berlin(2026, 12, 24, 16), 2, christmas) == berlin(2026, 12, 28, 10)
    assert due(berlin(2026, 3, 2, 10), 24) == berlin(2026, 3, 5, 10), "7h + 8h + 8h + 1h"


def test_a_weekend_dst_change_keeps_local_opening_hours() -> None:
    # Europe/Berlin: CET -> CEST on Sunday 2026-03-29, CEST -> CET on Sunday 2026-10-25.
    spring = due_at(berlin(2026, 3, 27, 16), timedelta(hours=2), OFFICE)
    assert spring == datetime(2026, 3, 30, 8, tzinfo=UTC)  # Monday 10:00 CEST
    autumn = due_at(berlin(2026, 10, 23, 16), timedelta(hours=2), OFFICE)
    assert autumn == datetime(2026, 10, 26, 9, tzinfo=UTC)  # Monday 10:00 CET


def test_a_window_that_spans_a_dst_change_counts_real_time() -> None:
    new_york = ZoneInfo("America/New_York")  # 2026-03-08 02:00 EST -> 03:00 EDT
    every_day = BusinessHours(time(0), time(23, 59), "America/New_York", frozenset(range(7)))
    start = datetime(2026, 3, 8, 0, tzinfo=new_york)
    got = due_at(start, timedelta(hours=23), every_day).astimezone(new_york)
    assert got == datetime(2026, 3, 9, 0, 1, tzinfo=new_york), "that day's window is 22h59m"


def test_naive_start_and_calendars_that_are_never_open_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_at(datetime(2026, 3, 2, 10), timedelta(hours=1), OFFICE)
    with pytest.raises(ValueError, match="end after"):
        BusinessHours(time(17), time(9))
    with pytest.raises(ValueError, match="unknown time zone"):
        BusinessHours(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="business days"):
        BusinessHours(days=frozenset())


def test_the_rules_file_block() -> None:
    spec = BusinessHoursSpec.model_validate(
        {"timezone": "Europe/Berlin", "hours": "08:30-16:00", "days": ["mon", "sat"],
         "holidays": ["2026-12-25"], "priorities": ["P3"]}
    )  # fmt: skip
    calendar = spec.calendar()
    assert (calendar.start, calendar.end) == (time(8, 30), time(16))
    assert calendar.days == frozenset({0, 5}) and calendar.holidays == {date(2026, 12, 25)}
    for bad in ({"hours": "17:00-09:00"}, {"hours": "nine to five"}, {"days": ["funday"]},
                {"timezone": "Nowhere/Here"}, {"days": []}):  # fmt: skip
        with pytest.raises(ValidationError):
            BusinessHoursSpec.model_validate(bad)
