"""The worker's graceful stop: drain first, and a deadline on the whole stop.

On SIGTERM Faust (0.15.3, ``App._stop_consumer``) stops the flow of events,
clears the streams' queues (``flow_control.clear()``) and then waits until
every event it had handed to a stream is acked (``Consumer.wait_empty``). An
event dropped from a queue is never acked, and while anything still refers to
it that wait has no end. Workers stopped while posts kept arriving hung like
this in 2 of 5 and 1 of 4 tries (400 posts/s offered, 64- and 512-event
batches), logging ``wait_empty: Waiting for tasks [(1, <ConsumerMessage: ...
mentions.classified ...>)]`` until they were killed.

Two parts, both started by the stop signal (:class:`agents.worker.QuietWorker`):

- :func:`drain_consumer` runs *before* Faust's stop: it pauses fetching and
  waits (bounded) until the agents have acked every event already handed to
  them, so that Faust's stop finds no queued event to drop;
- :class:`ShutdownDeadline` ends the process with :data:`EXIT_SHUTDOWN_TIMEOUT`
  if the whole stop still has not finished in time (a broker that stopped
  answering, say). Nothing is lost by it: only offsets of events whose outputs
  Kafka acknowledged are ever committed, so the next worker is handed
  everything after the last commit again, and every sink drops the duplicates
  by ``Mention.id``. A supervisor (Kubernetes after its grace period, Compose
  after ``stop_grace_period``) would kill the process anyway; the deadline
  makes a bare ``brand-listener worker`` behave the same, with a log line that
  says why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EXIT_SHUTDOWN_TIMEOUT = 75
"""Exit status when the graceful stop ran out of time (EX_TEMPFAIL: run it again)."""


def _exit_now(status: int) -> None:
    logging.shutdown()  # flush the handlers: the line that says why must get out
    sys.stderr.flush()
    os._exit(status)


class ShutdownDeadline:
    """Ends the process if a graceful stop is not over ``seconds`` after it began.

    Args:
        seconds: How long the graceful stop may take; must be > 0.
        on_expiry: Called with the exit status when time is up (default: log
            handlers flushed, then ``os._exit``). Tests pass their own.
    """

    def __init__(self, seconds: float, on_expiry: Callable[[int], None] | None = None) -> None:
        if seconds <= 0:
            raise ValueError(f"shutdown deadline must be > 0 seconds, got {seconds}")
        self.seconds = seconds
        self._on_expiry = on_expiry or _exit_now
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def armed(self) -> bool:
        """Whether the clock is running."""
        return self._timer is not None

    def arm(self, reason: str) -> None:
        """Start the clock (once; later calls keep the first start).

        Args:
            reason: What began the stop (e.g. ``"SIGTERM"``), for the log line.
        """
        with self._lock:
            if self._timer is not None:
                return
            timer = threading.Timer(self.seconds, self._expire, args=(reason,))
            timer.daemon = True  # never the thing that keeps the process alive
            timer.name = "shutdown-deadline"
            self._timer = timer
            timer.start()

    def cancel(self) -> None:
        """Stop the clock: the graceful stop finished."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()

    def _expire(self, reason: str) -> None:
        log.error(
            "worker did not stop within %.0f s of %s; exiting with status %d. Offsets not "
            "committed are handed to the next worker again; sinks drop the duplicates by "
            "Mention.id",
            self.seconds,
            reason,
            EXIT_SHUTDOWN_TIMEOUT,
        )
        self._on_expiry(EXIT_SHUTDOWN_TIMEOUT)


async def drain_consumer(app: Any, timeout: float, poll_s: float = 0.05) -> int:
    """Pause fetching, then wait until every event handed to a stream is acked.

    Args:
        app: The Faust app (its consumer, if started).
        timeout: Longest wait in seconds.
        poll_s: How often the pending events are counted.

    Returns:
        How many events were still not acked at the end (0: drained).
    """
    consumer = getattr(app, "_consumer", None)  # not app.consumer: that would create one
    if consumer is None:
        return 0
    try:
        assignment = consumer.assignment()
    except Exception:  # noqa: BLE001 - ConsumerNotStarted: nothing was handed out
        return 0
    consumer.pause_partitions(assignment)  # no new events; the ones handed out go on
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        # Faust's own wait_empty reads the same set (weak references to messages).
        pending = [m for m in list(consumer._unacked_messages) if not m.acked]
        if not pending or loop.time() >= end:
            return len(pending)
        await asyncio.sleep(poll_s)


async def drain_then_stop(app: Any, timeout: float, reason: str, stop: Callable[[], None]) -> None:
    """:func:`drain_consumer` for up to ``timeout`` seconds, then ``stop()`` whatever happened.

    Args:
        app: The Faust app.
        timeout: Longest drain in seconds.
        reason: What began the stop (e.g. ``"SIGTERM"``), for the log.
        stop: Starts the real stop (Faust's).
    """
    try:
        left = await drain_consumer(app, timeout)
        if left:
            log.warning(
                "%s: %d events still not acked after %.0f s of draining; stopping anyway",
                reason,
                left,
                timeout,
            )
    except Exception:  # noqa: BLE001 - the stop must happen whatever the drain did
        log.exception("draining before the stop failed")
    stop()
