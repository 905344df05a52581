"""A clock tests move by hand: ``clock()`` reads it, ``await clock.sleep(s)`` advances it."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Seconds since the epoch (or any origin), advanced by the test or by :meth:`sleep`.

    Args:
        now: The starting time.
    """

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Record the wait, advance the clock, and let other tasks run once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
