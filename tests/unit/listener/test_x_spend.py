"""The X connector's spend guard counts (listener/connectors/x.py ``Spend``)."""

from __future__ import annotations

from datetime import UTC, datetime

from listener.connectors.x import Spend

DEC5 = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)
DEC6 = datetime(2026, 12, 6, 0, 1, tzinfo=UTC)
JAN1 = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)


def test_counts_roll_over_with_the_utc_day_and_month() -> None:
    spend = Spend.of(None, DEC5).read("1").read("2")
    assert (spend.last, spend.day_reads, spend.month_reads) == ("2", 2, 2)
    next_day = Spend.of(spend.encode(), DEC6)
    assert (next_day.last, next_day.day_reads, next_day.month_reads) == ("2", 0, 2)
    next_month = Spend.of(spend.encode(), JAN1)
    assert (next_month.day_reads, next_month.month_reads) == (0, 0)


def test_a_cursor_from_before_the_guard_is_a_bare_tweet_id() -> None:
    spend = Spend.of("1793", DEC5)
    assert (spend.last, spend.day_reads) == ("1793", 0)


def test_caps_month_first_and_the_room_left() -> None:
    spend = Spend(last=None, day="d", day_reads=5, month="m", month_reads=100)
    assert spend.over(None, None) is None and spend.room(None, None) > 10**8
    assert spend.over(5, 1000) == "spend_guard:day" and spend.room(8, 1000) == 3
    assert spend.over(5, 100) == "spend_guard:month" and spend.room(50, 100) == 0
