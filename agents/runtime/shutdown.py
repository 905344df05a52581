"""A deadline on the worker's graceful stop.

On SIGTERM Faust stops the flow of events, clears the streams' queues, waits
for the batches in flight (:meth:`agents.runtime.commits.ContiguousCommitConsumer.wait_empty`)
and commits. A stop can still hang where something it waits for never
answers (a sink or Kafka down, a stuck batch). :class:`ShutdownDeadline`
bounds that: armed when the stop signal arrives, it ends the process with
:data:`EXIT_SHUTDOWN_TIMEOUT` if the graceful stop has not finished in time.
Ending it commits nothing: the next worker reads everything after the last
commit again, and sinks drop duplicates by ``Mention.id``. A supervisor
(Kubernetes after its grace period, Compose after ``stop_grace_period``) would
kill the process anyway; the deadline makes a bare ``brand-listener worker``
behave the same, with a log line that says why.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

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
