"""The worker's stop (agents/shutdown.py): drain, deadline, and their wiring in the worker."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time

import faust
import pytest

from agents.shutdown import (
    EXIT_SHUTDOWN_TIMEOUT,
    ShutdownDeadline,
    drain_consumer,
    drain_then_stop,
)
from agents.worker import QuietWorker


class Expiries:
    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.fired = threading.Event()

    def __call__(self, status: int) -> None:
        self.statuses.append(status)
        self.fired.set()


def test_an_armed_deadline_fires_once_with_the_timeout_status_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expiries = Expiries()
    deadline = ShutdownDeadline(0.05, on_expiry=expiries)
    assert not deadline.armed
    with caplog.at_level(logging.ERROR, logger="agents.shutdown"):
        deadline.arm("SIGTERM")
        assert deadline.armed
        assert expiries.fired.wait(5)
    time.sleep(0.1)
    assert expiries.statuses == [EXIT_SHUTDOWN_TIMEOUT]
    assert "did not stop within 0 s of SIGTERM" in caplog.text  # 0.05 s, printed as %.0f
    assert "Mention.id" in caplog.text


def test_a_second_signal_keeps_the_first_clock() -> None:
    expiries = Expiries()
    deadline = ShutdownDeadline(0.3, on_expiry=expiries)
    started = time.monotonic()
    deadline.arm("SIGTERM")
    time.sleep(0.2)
    deadline.arm("SIGINT")  # Ctrl-C after SIGTERM must not restart the clock
    assert expiries.fired.wait(5)
    assert time.monotonic() - started < 0.45
    time.sleep(0.4)
    assert expiries.statuses == [EXIT_SHUTDOWN_TIMEOUT]


def test_a_cancelled_deadline_never_fires() -> None:
    expiries = Expiries()
    deadline = ShutdownDeadline(0.1, on_expiry=expiries)
    deadline.arm("SIGTERM")
    deadline.cancel()
    assert not expiries.fired.wait(0.4)
    assert expiries.statuses == []


def test_an_unarmed_deadline_can_be_cancelled() -> None:
    ShutdownDeadline(1.0, on_expiry=Expiries()).cancel()


@pytest.mark.parametrize("seconds", [0, -1])
def test_the_deadline_must_be_positive(seconds: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ShutdownDeadline(seconds)


class StopRecorder(faust.Worker):
    """Stands in for Faust's stop: records the signal instead of stopping an app."""

    scheduled: list[signal.Signals]

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        self.scheduled.append(sig)


class ProbeWorker(QuietWorker, StopRecorder):
    """QuietWorker whose ``super()._schedule_shutdown`` is the recorder (MRO), not Faust's."""


def test_the_first_signal_drains_then_stops_and_a_second_one_stops_at_once() -> None:
    expiries = Expiries()
    deadline = ShutdownDeadline(60, on_expiry=expiries)
    app = faust.App("shutdown-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = ProbeWorker(app, shutdown_deadline=deadline, drain_timeout_s=5, quiet=True)
    worker.scheduled = []
    try:
        worker._schedule_shutdown(signal.SIGTERM)
        assert deadline.armed
        assert worker.scheduled == []  # draining first (on the worker's loop)
        assert worker._draining is not None
        worker.loop.run_until_complete(worker._draining)  # no consumer yet: drained at once
        assert worker.scheduled == [signal.SIGTERM]
        worker._schedule_shutdown(signal.SIGINT)  # impatient second signal
        assert worker.scheduled == [signal.SIGTERM, signal.SIGINT]
    finally:
        deadline.cancel()
    assert expiries.statuses == []


class FakeMessage:
    def __init__(self) -> None:
        self.acked = False


class FakeConsumer:
    """The three things drain_consumer uses of Faust's consumer (a unit-test double)."""

    def __init__(self, messages: list[FakeMessage], started: bool = True) -> None:
        self._unacked_messages = set(messages)
        self.started = started
        self.paused: set[str] = set()

    def assignment(self) -> set[str]:
        if not self.started:
            raise RuntimeError("ConsumerNotStarted")
        return {"raw-0", "raw-1"}

    def pause_partitions(self, tps: set[str]) -> None:
        self.paused |= tps


class FakeApp:
    def __init__(self, consumer: FakeConsumer | None) -> None:
        self._consumer = consumer


def test_drain_pauses_fetching_and_returns_once_the_handed_out_events_are_acked() -> None:
    messages = [FakeMessage(), FakeMessage()]
    consumer = FakeConsumer(messages)

    async def agents_finish() -> None:
        await asyncio.sleep(0.1)
        for message in messages:
            message.acked = True

    async def scenario() -> tuple[int, float]:
        started = time.monotonic()
        finishing = asyncio.ensure_future(agents_finish())
        left = await drain_consumer(FakeApp(consumer), timeout=5, poll_s=0.01)
        await finishing
        return left, time.monotonic() - started

    left, took = asyncio.run(scenario())
    assert left == 0
    assert consumer.paused == {"raw-0", "raw-1"}
    assert 0.1 <= took < 2


def test_drain_gives_up_at_its_timeout_and_says_how_many_are_left() -> None:
    consumer = FakeConsumer([FakeMessage(), FakeMessage(), FakeMessage()])
    consumer._unacked_messages.add(done := FakeMessage())
    done.acked = True  # acked but not yet cleaned from the set: not pending
    assert asyncio.run(drain_consumer(FakeApp(consumer), timeout=0.1, poll_s=0.01)) == 3


def test_drain_without_a_started_consumer_has_nothing_to_wait_for() -> None:
    assert asyncio.run(drain_consumer(FakeApp(None), timeout=5)) == 0
    not_started = FakeConsumer([FakeMessage()], started=False)
    assert asyncio.run(drain_consumer(FakeApp(not_started), timeout=5)) == 0
    assert not_started.paused == set()


def test_the_stop_happens_even_when_the_drain_fails_or_times_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stops: list[str] = []

    class Broken(FakeConsumer):
        def pause_partitions(self, tps: set[str]) -> None:
            raise RuntimeError("boom")

    with caplog.at_level(logging.WARNING, logger="agents.shutdown"):
        asyncio.run(drain_then_stop(FakeApp(Broken([])), 1, "SIGTERM", lambda: stops.append("a")))
        stuck = FakeApp(FakeConsumer([FakeMessage()]))
        asyncio.run(drain_then_stop(stuck, 0.05, "SIGTERM", lambda: stops.append("b")))
    assert stops == ["a", "b"]
    assert "draining before the stop failed" in caplog.text
    assert "SIGTERM: 1 events still not acked after 0 s of draining" in caplog.text
