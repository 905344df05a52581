"""The worker's liveness and readiness, and the ``/health`` views that report them.

Liveness (``GET /health/live``, and ``GET /health`` as its alias) fails when the
app crashed or a stream has *stalled*: a partition of the worker's group has
lag (records past the committed offset) and its committed offset has not moved
for ``stall_after_s``, or a table recovery stopped moving
(:mod:`agents.runtime.recovery_watchdog`). Restarting such a worker is the right cure for a wedged
agent. Readiness (``GET /health/ready``) is 200 only once the model is loaded and
a rebalance has completed (partitions assigned, tables recovered), and again
after each rebalance and after a stall has cleared.

Progress is fed by :class:`agents.observability.lag.LagMonitor`, which reads committed and end
offsets periodically; :class:`Health` itself does no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import faust
from faust import web
from faust.types import AppT

TopicPartition = tuple[str, int]


@dataclass(slots=True)
class _Progress:
    committed: int
    lag: int
    since: float


class Health:
    """What the health views report, updated by the lag monitor and the worker.

    Args:
        stall_after_s: How long a lagging partition may go without progress.
        clock: Monotonic seconds (injected in tests).
    """

    def __init__(self, stall_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after_s = stall_after_s
        self.model_loaded = False
        self._clock = clock
        self._progress: dict[TopicPartition, _Progress] = {}
        self.stall_checks: list[Callable[[], str | None]] = []
        """More reasons to fail liveness (each returns why, or None): the recovery watchdog."""

    def observe(self, tp: TopicPartition, committed: int, end: int) -> None:
        """Record the committed and end offsets of one assigned partition.

        Args:
            tp: ``(topic, partition)``.
            committed: The group's committed offset (next to read); -1 if none yet.
            end: The partition's log end offset (high watermark).
        """
        lag = max(0, end - max(committed, 0))
        now = self._clock()
        seen = self._progress.get(tp)
        if seen is None or seen.committed != committed or lag == 0:
            self._progress[tp] = _Progress(committed, lag, now)
        else:
            seen.lag = lag

    def forget(self, keep: Iterable[TopicPartition]) -> None:
        """Drop every partition not in ``keep`` (revoked from this worker)."""
        kept = set(keep)
        for tp in [tp for tp in self._progress if tp not in kept]:
            del self._progress[tp]

    def stalled(self) -> list[str]:
        """One line per partition with lag and no progress for ``stall_after_s``."""
        now = self._clock()
        lines = [
            f"{topic}[{partition}]: lag {p.lag}, no progress for {now - p.since:.0f}s"
            for (topic, partition), p in sorted(self._progress.items())
            if p.lag > 0 and now - p.since >= self.stall_after_s
        ]
        return lines + [reason for check in self.stall_checks if (reason := check()) is not None]

    def live(self, crashed: str | None) -> tuple[bool, dict[str, Any]]:
        """Liveness: not crashed and no stalled partition.

        Args:
            crashed: The app's crash reason, if any.

        Returns:
            ``(ok, body)`` where body explains a failure.
        """
        stalled = self.stalled()
        ok = crashed is None and not stalled
        body: dict[str, Any] = {"status": "ok" if ok else "fail", "stalled": stalled}
        if crashed is not None:
            body["crashed"] = crashed
        return ok, body

    def ready(self, crashed: str | None, rebalanced: bool) -> tuple[bool, dict[str, Any]]:
        """Readiness: alive, model loaded and a rebalance (with table recovery) completed.

        Args:
            crashed: The app's crash reason, if any.
            rebalanced: Partitions are assigned and no rebalance is in progress.

        Returns:
            ``(ok, body)`` where body lists what is missing.
        """
        live, body = self.live(crashed)
        waiting = [
            what
            for what, done in (("model", self.model_loaded), ("assignment", rebalanced))
            if not done
        ]
        ok = live and not waiting
        return ok, {**body, "status": "ok" if ok else "fail", "waiting_for": waiting}


def rebalanced(app: AppT) -> bool:
    """Whether ``app`` has completed a rebalance and is not in one now."""
    return bool(app.rebalancing_count) and not app.rebalancing


def register_views(app: faust.App, health: Health) -> None:
    """Serve ``/health/live``, ``/health/ready`` and ``/health`` (= live) on the Faust web app."""

    def crash_reason(view: web.View) -> str | None:
        reason = view.app.crash_reason
        return None if reason is None else repr(reason)

    class LiveView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ok, body = health.live(crash_reason(self))
            return self.json(body, status=200 if ok else 503)

    class ReadyView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            ok, body = health.ready(crash_reason(self), rebalanced(self.app))
            return self.json(body, status=200 if ok else 503)

    class AliasView(LiveView):
        """``GET /health``: the liveness check under its historical path."""

    app.page("/health", name="brandlistener_health")(AliasView)
    app.page("/health/live", name="brandlistener_health_live")(LiveView)
    app.page("/health/ready", name="brandlistener_health_ready")(ReadyView)
