"""The deadline on the worker's graceful stop (agents/runtime/shutdown.py) and its wiring."""

from __future__ import annotations

import logging
import signal
import threading
import time

import faust
import pytest

from agents.runtime.faust_worker import QuietWorker
from agents.runtime.shutdown import EXIT_SHUTDOWN_TIMEOUT, ShutdownDeadline


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
    with caplog.at_level(logging.ERROR, logger="agents.runtime.shutdown"):
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


def test_the_worker_arms_its_deadline_and_then_stops_as_faust_does() -> None:
    expiries = Expiries()
    deadline = ShutdownDeadline(60, on_expiry=expiries)
    app = faust.App("shutdown-test", broker="kafka://127.0.0.1:1", web_enabled=False)
    worker = ProbeWorker(app, shutdown_deadline=deadline, quiet=True)
    worker.scheduled = []
    try:
        worker._schedule_shutdown(signal.SIGTERM)
        assert deadline.armed
        assert worker.scheduled == [signal.SIGTERM]
    finally:
        deadline.cancel()
    assert expiries.statuses == []
