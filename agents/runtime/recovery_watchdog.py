"""A watchdog on Faust's table recovery: a recovery that stops moving is restarted, then ended.

After every rebalance Faust 0.15.3 keeps the worker's stream partitions paused
until it has read each *active* table changelog partition up to its highwater
(``faust.tables.recovery.Recovery``). It has no deadline: if a changelog
partition never delivers its records, recovery waits forever; nothing is
classified and nothing is committed (so nothing is lost), and the lag grows.
Seen once in a CI run (docs/chaos/2026-12-05-recovery-hang.md): the worker that
took two partitions over logged "No event received for active tp ... since
recovery start" for five minutes.

:class:`RecoveryWatchdog` looks every few seconds. A recovery that has records
left to read and whose read offsets have not moved for ``stall_after_s`` is
*stalled*: the watchdog logs what it sees (per changelog partition: read
offset, highwater, the fetch position, whether Faust is fetching it, and the
stacks of the tasks that feed recovery), counts it
(``brandlistener_table_recovery_stalls_total``) and restarts the recovery the
way a new rebalance does (highwaters read again, every active changelog
partition sought back to its read offset). After ``max_restarts`` restarts of
one recovery it gives up and crashes the app, so the process exits, leaves the
group and another member (or the restarted pod) takes the partitions over;
liveness (``/health/live``) fails from the first stall on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry, Counter, Gauge

log = logging.getLogger(__name__)

STALL_REPORT = "table recovery made no progress"
"""How a stall report starts in the log (the chaos harness counts them)."""

FEEDING_TASKS = ("_drain_messages", "_fetcher", "_slurp_changelogs", "_restart_recovery")
"""Coroutines whose stacks a stall report shows (Faust's fetch loop and its recovery)."""


class TableRecoveryStalled(RuntimeError):
    """Table recovery made no progress through every restart; the worker gives up its partitions."""


@dataclass(slots=True)
class RecoveryMetrics:
    """The watchdog's Prometheus series."""

    seconds: Gauge
    stalls: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RecoveryMetrics:
        """Register the series on ``registry``."""
        metrics = cls(
            seconds=Gauge(
                "brandlistener_table_recovery_seconds",
                "Seconds the worker's current table recovery has run (0: none running); "
                "stream partitions stay paused while it runs.",
                registry=registry,
            ),
            stalls=Counter(
                "brandlistener_table_recovery_stalls_total",
                "Table recoveries found with records left and no progress, by what the "
                "watchdog did ('restarted' or 'gave_up': the worker crashed to leave the group).",
                ("action",),
                registry=registry,
            ),
        )
        for action in ("restarted", "gave_up"):
            metrics.stalls.labels(action=action)  # exported at 0 from the start
        return metrics


@dataclass(slots=True)
class _Watch:
    started: float
    progress: tuple[tuple[Any, int], ...]
    since: float
    restarts: int = 0


class RecoveryWatchdog:
    """Restarts a stalled table recovery, and crashes the app when restarts do not help.

    Args:
        recovery: Faust's ``app.tables.recovery`` (anything with ``in_recovery``,
            ``active_offsets``, ``active_highwaters``, ``active_remaining()`` and
            ``signal_recovery_start``).
        metrics: Where the recovery duration and stalls are counted.
        stall_after_s: Seconds without progress that make a recovery stalled.
        max_restarts: Restarts of one recovery before the watchdog gives up.
        clock: Monotonic seconds (injected in tests).
        describe: Extra lines for a stall report (the consumer's view of the partitions).
    """

    def __init__(
        self,
        recovery: Any,
        metrics: RecoveryMetrics,
        *,
        stall_after_s: float,
        max_restarts: int,
        clock: Callable[[], float] = time.monotonic,
        describe: Callable[[list[Any]], list[str]] | None = None,
    ) -> None:
        self.recovery = recovery
        self.metrics = metrics
        self.stall_after_s = stall_after_s
        self.max_restarts = max_restarts
        self._clock = clock
        self._describe = describe
        self._watch: _Watch | None = None
        self.stalled: str | None = None
        """Why the current recovery is stalled (None when it is not): liveness fails on it."""

    def check(self) -> str:
        """Look once; returns ``"idle"``, ``"progressing"``, ``"restarted"`` or ``"gave_up"``."""
        now = self._clock()
        recovery = self.recovery
        remaining = {tp: n for tp, n in recovery.active_remaining().items() if n > 0}
        if not recovery.in_recovery or not remaining:
            self._watch = None
            self.stalled = None
            self.metrics.seconds.set(0)
            return "idle"
        offsets = recovery.active_offsets.items()
        progress = tuple(sorted(((tp, int(o)) for tp, o in offsets), key=str))
        watch = self._watch
        if watch is None:
            watch = self._watch = _Watch(started=now, progress=progress, since=now)
        self.metrics.seconds.set(now - watch.started)
        if progress != watch.progress:
            watch.progress, watch.since = progress, now
            self.stalled = None
            return "progressing"
        if now - watch.since < self.stall_after_s:
            return "progressing"
        stuck = sorted(remaining, key=str)
        self.stalled = (
            f"{STALL_REPORT} for {now - watch.since:.0f}s "
            f"({sum(remaining.values())} changelog records left in {len(stuck)} partitions; "
            f"{watch.restarts} restarts)"
        )
        log.error("%s:\n%s", self.stalled, "\n".join(self.report(stuck)))
        if watch.restarts >= self.max_restarts:
            self.metrics.stalls.labels(action="gave_up").inc()
            return "gave_up"
        watch.restarts += 1
        watch.since = now
        self.metrics.stalls.labels(action="restarted").inc()
        log.warning("restarting table recovery (%d of %d)", watch.restarts, self.max_restarts)
        recovery.signal_recovery_start.set()
        return "restarted"

    def report(self, stuck: list[Any]) -> list[str]:
        """Per stuck changelog partition: read offset and highwater; then the consumer's view."""
        offsets: Mapping[Any, int] = self.recovery.active_offsets
        highwaters: Mapping[Any, int] = self.recovery.active_highwaters
        lines = [
            f"  {tp.topic}[{tp.partition}]: read up to {offsets.get(tp)}, "
            f"highwater {highwaters.get(tp)}"
            for tp in stuck
        ]
        if self._describe is not None:
            try:
                lines.extend(self._describe(stuck))
            except Exception as exc:  # a diagnostic must never stop the watchdog
                lines.append(f"  (consumer state unavailable: {exc!r})")
        return lines


def consumer_view(app: faust.App) -> Callable[[list[Any]], list[str]]:
    """A ``describe`` for :class:`RecoveryWatchdog`: what Faust's consumer and fetch loop are doing.

    Reads private state of faust-streaming 0.15.3 and aiokafka (read only, for the log).
    """

    def describe(stuck: list[Any]) -> list[str]:
        consumer: Any = app.consumer
        active = consumer._active_partitions or set()
        paused = consumer._paused_partitions
        buffered = consumer._buffered_partitions
        lines = [
            f"  consumer: flow_active={consumer.flow_active}, "
            f"flow_control_active={app.flow_control.is_active()}, "
            f"{len(active)} partitions fetched, {len(paused)} paused, {len(buffered)} buffer-full"
        ]
        aio = getattr(getattr(consumer, "_thread", None), "_consumer", None)
        fetcher = getattr(aio, "_fetcher", None)
        subscription = getattr(getattr(aio, "_subscription", None), "subscription", None)
        assignment = getattr(subscription, "assignment", None)
        for tp in stuck:
            state = "?"
            if assignment is not None:
                try:
                    value = assignment.state_value(tp)
                    state = (
                        f"position {value.position if value.has_valid_position else 'none'}"
                        f"{', paused in aiokafka' if value.paused else ''}"
                    )
                except Exception as exc:  # not assigned to the aiokafka consumer any more
                    state = f"not in aiokafka's assignment ({exc!r})"
            prefetched = fetcher is not None and tp in fetcher._records
            lines.append(
                f"  {tp.topic}[{tp.partition}]: {'fetched' if tp in active else 'NOT fetched'}"
                f"{', paused' if tp in paused else ''}, {state}"
                f"{', records waiting in aiokafka' if prefetched else ''}"
            )
        lines.extend(feeding_stacks())
        return lines

    return describe


def await_chain(coro: Any) -> list[str]:
    """``function:line`` of each coroutine ``coro`` is waiting in, outermost first.

    (``Task.get_stack`` gives one frame for a suspended coroutine; this follows
    ``cr_await`` down to the future it waits on, shown by its ``repr``.)
    """
    chain: list[str] = []
    while coro is not None and len(chain) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            chain.append(repr(coro)[:160])
            break
        chain.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return chain


def feeding_stacks() -> list[str]:
    """Where Faust's fetch loop and recovery tasks are waiting."""
    lines: list[str] = []
    for task in asyncio.all_tasks():
        chain = await_chain(task.get_coro())
        if any(step.split(":")[0] in FEEDING_TASKS for step in chain):
            lines.append(f"  task {task.get_name()}: {' -> '.join(chain)}")
    return lines


def register(
    app: faust.App,
    registry: CollectorRegistry,
    *,
    interval_s: float = 5.0,
    stall_after_s: float = 60.0,
    max_restarts: int = 2,
) -> RecoveryWatchdog:
    """Run a :class:`RecoveryWatchdog` on ``app`` every ``interval_s``; returns it (for health).

    Not an ``app.timer``: Faust starts timers only once the first recovery has
    completed, and the first one is watched too. The loop starts with the first
    assignment and ends with the app.
    """
    watchdog = RecoveryWatchdog(
        app.tables.recovery,  # type: ignore[attr-defined]  # TableManager, not its ABC
        RecoveryMetrics.create(registry),
        stall_after_s=stall_after_s,
        max_restarts=max_restarts,
        describe=consumer_view(app),
    )
    running: list[asyncio.Task[None]] = []

    async def watch_table_recovery() -> None:
        while not app.should_stop:
            await asyncio.sleep(interval_s)
            try:
                verdict = watchdog.check()
            except Exception:  # the watchdog must outlive a Faust it misreads
                log.exception("table recovery watchdog failed to look; looking again")
                continue
            if verdict == "gave_up":
                await app.crash(TableRecoveryStalled(watchdog.stalled or "table recovery stalled"))
                return

    async def start(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if not running:
            running.append(asyncio.ensure_future(watch_table_recovery()))

    async def stop(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        for task in running:
            task.cancel()

    app.on_partitions_assigned.connect(start)
    app.on_before_shutdown.connect(stop)
    return watchdog
