"""Faust's ``Worker`` as the worker process runs it: fewer log lines, a deadline on its stop."""

from __future__ import annotations

import logging
import signal
from typing import Any

import faust

from agents.runtime.shutdown import ShutdownDeadline

QUIET_LOGGERS = ("aiokafka", "faust.transport.drivers.aiokafka", "faust.tables", "faust.assignor")
"""Loggers that are chatty at INFO (per-partition tables on every rebalance); kept at WARNING."""

LIFECYCLE_NOISE = (
    "Starting...",
    "Stopping...",
    "Cleanup",
    "Gathering service tasks...",
    "Gathering all futures...",
    "Waiting for agents to start...",
    "Waiting for tables to be registered...",
)
"""mode logs these for each of ~15 services at every start and stop; dropped below WARNING."""


class _QuietLifecycle(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or not record.getMessage().rstrip().endswith(
            LIFECYCLE_NOISE
        )


class QuietWorker(faust.Worker):
    """Faust's worker with fewer INFO lines and a deadline on its graceful stop.

    Fewer lines: see :data:`LIFECYCLE_NOISE`, :data:`QUIET_LOGGERS`. The deadline:
    the first SIGTERM/SIGINT arms ``shutdown_deadline`` (:mod:`agents.runtime.shutdown`),
    which ends the process if the graceful stop hangs.
    """

    def __init__(
        self, app: faust.App, *, shutdown_deadline: ShutdownDeadline, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self.shutdown_deadline = shutdown_deadline

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        self.shutdown_deadline.arm(sig.name)
        super()._schedule_shutdown(sig)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Add the lifecycle filter once mode has configured the root logger."""
        super().on_setup_root_logger(logger, level)
        for handler in logger.handlers:
            handler.addFilter(_QuietLifecycle())
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(max(level, logging.WARNING))
