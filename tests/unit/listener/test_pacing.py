from __future__ import annotations

import time

import pytest

from listener.pacing import Pacer


class _FakeTime:
    """A clock that only moves when slept on (plus an optional per-event work cost)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_reserve_is_an_absolute_schedule() -> None:
    pacer = Pacer(10)
    assert pacer.reserve(0.0) == 0.0
    assert pacer.reserve(0.0) == pytest.approx(0.1)
    assert pacer.reserve(0.05) == pytest.approx(0.15)  # slot at 0.2
    assert pacer.reserve(0.5) == 0.0  # late: no wait


def test_stall_credit_is_capped() -> None:
    pacer = Pacer(1000, max_burst_s=0.05)
    pacer.reserve(0.0)
    # a 10 s stall: at most 50 ms of schedule (50 events) may go without waiting
    waits = [pacer.reserve(10.0) for _ in range(60)]
    free = sum(1 for w in waits if w == 0.0)
    assert 50 <= free <= 52


@pytest.mark.parametrize("rate", [50, 200, 1000, 5000])
def test_simulated_rate_is_accurate(rate: int) -> None:
    fake = _FakeTime()
    pacer = Pacer(rate, clock=fake.clock, sleep=fake.sleep)
    start = fake.now
    for _ in range(2 * rate + 1):  # 2 s of intervals
        pacer.wait()
        fake.now += 0.00002  # 20 us of work per event
    assert fake.now - start == pytest.approx(2.0, rel=0.01)


def test_low_rate_sleeps_once_per_event() -> None:
    fake = _FakeTime()
    pacer = Pacer(50, clock=fake.clock, sleep=fake.sleep)
    for _ in range(20):
        pacer.wait()
    assert len(fake.sleeps) == 19
    assert all(s == pytest.approx(0.02) for s in fake.sleeps)


def test_high_rate_carries_short_waits_instead_of_sleeping() -> None:
    fake = _FakeTime()
    pacer = Pacer(5000, clock=fake.clock, sleep=fake.sleep, min_sleep=0.001)
    for _ in range(1000):
        pacer.wait()
    assert len(fake.sleeps) < 250  # ~one sleep per 5 events, never one per event
    assert all(s >= 0.001 for s in fake.sleeps)


def test_oversleeping_is_compensated() -> None:
    fake = _FakeTime()

    def sloppy_sleep(seconds: float) -> None:
        fake.sleep(seconds + 0.0005)  # the OS wakes us half a millisecond late

    pacer = Pacer(1000, clock=fake.clock, sleep=sloppy_sleep)
    start = fake.now
    for _ in range(2001):
        pacer.wait()
    assert fake.now - start == pytest.approx(2.0, rel=0.01)


def test_real_clock_short_run() -> None:
    pacer = Pacer(2000)
    start = time.perf_counter()
    for _ in range(201):
        pacer.wait()
    elapsed = time.perf_counter() - start
    assert elapsed >= 0.1 - 0.002  # 200 intervals of 0.5 ms, less one carried wait
    assert elapsed < 1.0


@pytest.mark.parametrize("rate", [0, -1])
def test_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError):
        Pacer(rate)
