"""The table-recovery watchdog: restarts a recovery that stopped moving, then gives up."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry

from agents.observability.health import Health
from agents.runtime.recovery_watchdog import (
    RecoveryMetrics,
    RecoveryWatchdog,
    await_chain,
    feeding_stacks,
)

CHANGELOG_2 = TP("app-sla-queue-changelog", 2)
CHANGELOG_3 = TP("app-sla-queue-changelog", 3)


class FakeRecovery:
    """What the watchdog reads of Faust's ``Recovery`` (a unit-test double)."""

    def __init__(self) -> None:
        self.in_recovery = False
        self.active_offsets: Counter[TP] = Counter()
        self.active_highwaters: Counter[TP] = Counter()
        self.signal_recovery_start = asyncio.Event()

    def active_remaining(self) -> Counter[TP]:
        return Counter(
            {tp: hw - self.active_offsets[tp] for tp, hw in self.active_highwaters.items()}
        )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(
    max_restarts: int = 2,
) -> tuple[RecoveryWatchdog, FakeRecovery, Clock, CollectorRegistry]:
    recovery, clock, registry = FakeRecovery(), Clock(), CollectorRegistry()
    dog = RecoveryWatchdog(
        recovery,
        RecoveryMetrics.create(registry),
        stall_after_s=60.0,
        max_restarts=max_restarts,
        clock=clock,
        describe=lambda stuck: [f"  described {len(stuck)}"],
    )
    return dog, recovery, clock, registry


def stalls(registry: CollectorRegistry, action: str) -> float:
    value = registry.get_sample_value(
        "brandlistener_table_recovery_stalls_total", {"action": action}
    )
    return value or 0.0


def stuck_recovery(recovery: FakeRecovery) -> None:
    recovery.in_recovery = True
    recovery.active_offsets.update({CHANGELOG_2: 10, CHANGELOG_3: 4})
    recovery.active_highwaters.update({CHANGELOG_2: 50, CHANGELOG_3: 4})


def test_no_recovery_or_nothing_left_to_read_is_idle() -> None:
    dog, recovery, clock, registry = watchdog()
    assert dog.check() == "idle"
    recovery.in_recovery = True
    recovery.active_highwaters[CHANGELOG_2] = 7
    recovery.active_offsets[CHANGELOG_2] = 7
    clock.now += 600
    assert dog.check() == "idle"
    assert not recovery.signal_recovery_start.is_set()
    assert registry.get_sample_value("brandlistener_table_recovery_seconds") == 0


def test_a_recovery_that_keeps_reading_is_never_restarted_however_long_it_takes() -> None:
    dog, recovery, clock, registry = watchdog()
    stuck_recovery(recovery)
    for _ in range(20):
        assert dog.check() == "progressing"
        clock.now += 59
        recovery.active_offsets[CHANGELOG_2] += 1
    assert not recovery.signal_recovery_start.is_set()
    assert dog.stalled is None
    assert registry.get_sample_value("brandlistener_table_recovery_seconds") == 20 * 59 - 59


def test_a_stalled_recovery_is_reported_restarted_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dog, recovery, clock, registry = watchdog(max_restarts=2)
    stuck_recovery(recovery)
    caplog.set_level(logging.INFO, "agents.runtime.recovery_watchdog")
    assert dog.check() == "progressing"
    clock.now += 59
    assert dog.check() == "progressing", "not yet stalled"

    clock.now += 1
    assert dog.check() == "restarted"
    assert recovery.signal_recovery_start.is_set(), "Faust's signal for a new recovery"
    assert dog.stalled is not None and "40 changelog records left in 1 partitions" in dog.stalled
    report = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert "app-sla-queue-changelog[2]: read up to 10, highwater 50" in report
    assert "[3]" not in report, "a partition read to its highwater is not stuck"
    assert "described 1" in report

    recovery.signal_recovery_start.clear()
    clock.now += 30
    assert dog.check() == "progressing", "a restart gets stall_after_s again"
    clock.now += 30
    assert dog.check() == "restarted"
    clock.now += 60
    assert dog.check() == "gave_up"
    assert stalls(registry, "restarted") == 2
    assert stalls(registry, "gave_up") == 1


def test_progress_after_a_restart_clears_the_stall_and_a_finished_recovery_resets() -> None:
    dog, recovery, clock, registry = watchdog(max_restarts=1)
    stuck_recovery(recovery)
    dog.check()
    clock.now += 60
    assert dog.check() == "restarted"
    recovery.active_offsets[CHANGELOG_2] = 11
    assert dog.check() == "progressing"
    assert dog.stalled is None

    recovery.active_offsets[CHANGELOG_2] = 50
    recovery.in_recovery = False
    assert dog.check() == "idle"
    # The next recovery (a later rebalance) has its own restart budget.
    recovery.in_recovery = True
    recovery.active_highwaters[CHANGELOG_2] = 80
    dog.check()
    clock.now += 60
    assert dog.check() == "restarted"


def test_a_broken_description_does_not_stop_the_watchdog() -> None:
    recovery, clock = FakeRecovery(), Clock()

    def broken(stuck: list[TP]) -> list[str]:
        raise AttributeError("faust changed")

    dog = RecoveryWatchdog(
        recovery,
        RecoveryMetrics.create(CollectorRegistry()),
        stall_after_s=1.0,
        max_restarts=1,
        clock=clock,
        describe=broken,
    )
    stuck_recovery(recovery)
    dog.check()
    clock.now += 1
    assert dog.check() == "restarted"
    assert any("consumer state unavailable" in line for line in dog.report([CHANGELOG_2]))


def test_a_stalled_recovery_fails_liveness_through_the_health_stall_checks() -> None:
    dog, recovery, clock, _ = watchdog()
    health = Health(stall_after_s=120.0)
    health.stall_checks.append(lambda: dog.stalled)
    assert health.live(None)[0]
    stuck_recovery(recovery)
    dog.check()
    clock.now += 60
    dog.check()
    ok, body = health.live(None)
    assert not ok
    assert any("table recovery made no progress for 60s" in line for line in body["stalled"])


def test_feeding_stacks_show_where_the_fetch_loop_waits() -> None:
    async def _slurp_changelogs(gate: asyncio.Event) -> None:
        await gate.wait()

    async def main() -> list[str]:
        gate = asyncio.Event()
        task = asyncio.create_task(_slurp_changelogs(gate), name="recovery-slurp")
        await asyncio.sleep(0)
        lines = feeding_stacks()
        chain = await_chain(task.get_coro())
        gate.set()
        await task
        assert chain[0].startswith("_slurp_changelogs:")
        assert chain[1].startswith("wait:"), chain
        return lines

    lines = asyncio.run(main())
    assert len(lines) == 1
    assert lines[0].startswith("  task recovery-slurp: _slurp_changelogs:")
