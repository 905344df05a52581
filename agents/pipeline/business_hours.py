"""Business hours for the SLA clock: a calendar, and the due time that counts only its hours.

Pure and clock-free: :func:`due_at` takes the start (a post's ``created_at``)
and the time to first response, and walks the calendar's opening windows day
by day in its time zone. Arithmetic is done in UTC, so a window on a day the
clocks change is as long as it really is (``00:00-23:59`` on a spring-forward
day holds 22 h 59 min), and an opening time that does not exist that day
(02:30 on a spring-forward night) is read with the offset before the change.
Windows do not wrap midnight: an overnight desk is two windows' worth of
calendar this model does not express (use the wall clock for it).

In the rules file (``agents/pipeline/rules_file.py``) the calendar is one optional
block, and ``priorities`` says whose SLA it applies to (a rule's
``then.business_hours: true/false`` overrides that for the rule)::

    business_hours:
      timezone: Europe/Berlin
      hours: "09:00-17:00"
      days: [mon, tue, wed, thu, fri]
      holidays: [2026-12-25, 2026-12-26]
      priorities: [P2, P3]        # P1 keeps the wall clock
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, model_validator

from listener.record import Priority

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as the rules file writes them, in :meth:`datetime.date.weekday` order."""

MAX_DAYS = 3660
"""How far ahead :func:`due_at` looks for opening hours before giving up (about ten years)."""


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When the SLA clock runs.

    Attributes:
        start: Opening time, local to ``timezone``.
        end: Closing time, after ``start`` (same day).
        timezone: IANA zone of ``start``, ``end``, ``days`` and ``holidays``.
        days: Open weekdays, 0 = Monday (as :meth:`datetime.date.weekday`).
        holidays: Local dates that are closed although their weekday is open.
    """

    start: time = time(9)
    end: time = time(17)
    timezone: str = "UTC"
    days: frozenset[int] = frozenset(range(5))
    holidays: frozenset[date] = frozenset()

    def __post_init__(self) -> None:
        """Reject a calendar that is never open or a window that is empty or wraps midnight.

        Raises:
            ValueError: ``end`` is not after ``start``, ``days`` is empty or out of 0-6,
                or ``timezone`` is unknown.
        """
        if self.end <= self.start:
            raise ValueError(f"business hours must end after they start ({self.start}-{self.end})")
        if not self.days or not self.days <= set(range(7)):
            raise ValueError(f"business days must be some of 0-6 (Monday-Sunday), not {self.days}")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.timezone!r}") from exc

    def windows(self, day: date) -> tuple[datetime, datetime] | None:
        """The opening window of local ``day`` in UTC, or None when closed that day."""
        if day.weekday() not in self.days or day in self.holidays:
            return None
        zone = ZoneInfo(self.timezone)
        opens = datetime.combine(day, self.start, tzinfo=zone).astimezone(UTC)
        closes = datetime.combine(day, self.end, tzinfo=zone).astimezone(UTC)
        return opens, closes


def due_at(start: datetime, duration: timedelta, hours: BusinessHours | None = None) -> datetime:
    """When ``duration`` of SLA time has run from ``start``.

    Args:
        start: When the clock starts (timezone-aware).
        duration: Time to first response.
        hours: Count only these hours; None counts every hour (wall clock).

    Returns:
        The due time, in UTC when ``hours`` is given (``start + duration`` otherwise).

    Raises:
        ValueError: ``start`` is naive, or the calendar has no opening hours within
            :data:`MAX_DAYS` days (every open day a holiday).
    """
    if start.tzinfo is None:
        raise ValueError("the SLA start time must be timezone-aware")
    if hours is None:
        return start + duration
    begin = start.astimezone(UTC)
    left = duration
    day = begin.astimezone(ZoneInfo(hours.timezone)).date()
    for _ in range(MAX_DAYS):
        window = hours.windows(day)
        if window is not None:
            opens, closes = window
            now = max(begin, opens)
            if now < closes:
                if now + left <= closes:
                    return now + left
                left -= closes - now
        day += timedelta(days=1)
    raise ValueError(f"no business hours within {MAX_DAYS} days of {start.isoformat()}")


class BusinessHoursSpec(BaseModel):
    """The rules file's ``business_hours`` block (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = "UTC"
    hours: str = Field(default="09:00-17:00", description='Local "HH:MM-HH:MM", same day.')
    days: tuple[Weekday, ...] = Field(default=WEEKDAYS[:5], min_length=1)
    holidays: tuple[date, ...] = ()
    priorities: tuple[Priority, ...] = Field(
        default=("P1", "P2", "P3", "P4"),
        description="Priorities whose SLA counts only these hours.",
    )

    @model_validator(mode="after")
    def _valid(self) -> Self:
        self.calendar()
        return self

    def calendar(self) -> BusinessHours:
        """The validated calendar.

        Raises:
            ValueError: Hours not ``HH:MM-HH:MM`` with the end after the start, or an
                unknown time zone.
        """
        parts = [p.strip() for p in self.hours.split("-")]
        try:
            start, end = (time.fromisoformat(p) for p in parts)
        except ValueError as exc:
            raise ValueError(f'hours must look like "09:00-17:00", not {self.hours!r}') from exc
        return BusinessHours(
            start=start,
            end=end,
            timezone=self.timezone,
            days=frozenset(WEEKDAYS.index(d) for d in self.days),
            holidays=frozenset(self.holidays),
        )
