"""Pacing a stream of events to a target rate: a virtual-time token bucket."""

from __future__ import annotations

import time
from collections.abc import Callable


class Pacer:
    """Paces events to ``rate`` per second on an absolute schedule (virtual-time token bucket).

    Event *n* is due at ``start + n / rate``. Short waits (under ``min_sleep``)
    are not slept but carried, so the average rate stays exact even where one
    interval is shorter than the OS sleep granularity (5000/s), while low rates
    sleep once per event (no busy loop). Credit for a stall is capped at
    ``max_burst_s`` so a pause is not followed by an unbounded burst.

    Args:
        rate: Events per second; must be positive.
        clock: Monotonic clock in seconds.
        sleep: Sleep function.
        min_sleep: Waits shorter than this are carried instead of slept.
        max_burst_s: Most seconds of schedule that may be caught up after a stall.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        min_sleep: float = 0.001,
        max_burst_s: float = 0.05,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._min_sleep = min_sleep
        self._max_burst = max(max_burst_s, self.interval)
        self._due: float | None = None

    def reserve(self, now: float) -> float:
        """Take the next slot; returns how many seconds after ``now`` it is due (>= 0)."""
        if self._due is None or self._due < now - self._max_burst:
            self._due = now if self._due is None else now - self._max_burst
        wait = self._due - now
        self._due += self.interval
        return max(0.0, wait)

    def wait(self) -> None:
        """Block until the next event is due (or nearly: see ``min_sleep``)."""
        delay = self.reserve(self._clock())
        if delay >= self._min_sleep:
            self._sleep(delay)
