"""The delivery loop without Kafka: sinks run independently; offsets wait for every sink."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry

from agents.delivery.ledger import MemoryLedger
from agents.delivery.loop import (
    DeliveryLoop,
    Item,
    OffsetTracker,
    commit_unless_rebalancing,
    unless_stopped,
)
from agents.delivery.metrics import create
from agents.delivery.policy import Deliverer, RetryPolicy
from agents.sinks.base import DeliveryResult
from agents.sinks.memory import MemorySink
from listener.errors import FatalError
from listener.record import Mention, Routing, encode_mention


class GatedSink(MemorySink):
    """Blocks every delivery until ``gate`` is set."""

    name: ClassVar[str] = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def deliver(self, mention: Mention) -> DeliveryResult:
        await self.gate.wait()
        return await super().deliver(mention)


class BrokenSink(MemorySink):
    name: ClassVar[str] = "broken"

    async def deliver(self, mention: Mention) -> DeliveryResult:
        raise FatalError("broken answered HTTP 401: bad token")


def item(n: int, partition: int = 0) -> Item:
    m = Mention.create(source="test", native_id=str(n), text=f"post {n}")
    return Item(partition, n, m.id.encode(), encode_mention(m))


def test_offset_tracker_commits_below_oldest_unfinished() -> None:
    tracker = OffsetTracker()
    for offset in (5, 6, 7):
        tracker.add(0, offset, 2)
    tracker.done(0, 6)
    tracker.done(0, 6)
    assert tracker.committable() == {0: 5}
    tracker.done(0, 5)
    tracker.done(0, 5)
    assert tracker.committable() == {0: 7}
    tracker.done(0, 7)
    tracker.done(0, 7)
    assert tracker.committable() == {0: 8} and tracker.in_flight == 0
    tracker.forget([0])
    assert tracker.committable() == {}


def test_slow_sink_does_not_block_others_and_commit_waits_for_all() -> None:
    async def scenario() -> None:
        registry = CollectorRegistry()
        metrics = create(registry)
        fast, slow, broken = MemorySink(), GatedSink(), BrokenSink()
        dead: list[tuple[str, str, dict[str, Any]]] = []

        async def dead_letter(payload: bytes, key: bytes | None, reason: str, error: str,
                              origin: dict[str, Any]) -> None:  # fmt: skip
            dead.append((reason, error, origin))

        deliverers = [
            Deliverer(s, MemoryLedger(), metrics, RetryPolicy(max_attempts=1))
            for s in (fast, slow, broken)
        ]
        loop = DeliveryLoop(deliverers, dead_letter, "needs-response", concurrency=2)
        loop.start()
        for n in range(3):
            await loop.submit(item(n))
        await loop.submit(Item(0, 3, None, b"not json"))
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(fast.delivered) == 3  # not held back by the slow sink
        assert not slow.delivered
        assert loop.tracker.committable() == {0: 0}  # nothing committed before every sink
        assert sorted(r for r, _, _ in dead) == [
            "decode",
            "sink:broken",
            "sink:broken",
            "sink:broken",
        ]
        assert "401" in dead[0][1] or "401" in dead[1][1]
        slow.gate.set()
        await loop.drain()
        assert len(slow.delivered) == 3
        assert loop.tracker.committable() == {0: 4}
        await loop.stop()
        assert fast.closed and slow.closed

    asyncio.run(scenario())


def test_rule_named_sinks_are_the_only_ones_used() -> None:
    async def scenario() -> None:
        metrics = create(CollectorRegistry())
        memory, gated = MemorySink(), GatedSink()
        gated.gate.set()

        async def dead_letter(*args: Any) -> None:
            raise AssertionError(f"unexpected dead letter {args}")

        deliverers = [Deliverer(s, MemoryLedger(), metrics) for s in (memory, gated)]
        loop = DeliveryLoop(deliverers, dead_letter, "needs-response")
        loop.start()
        base = Mention.create(source="test", native_id="r", text="post")
        for n, sinks in enumerate([("gated",), ()]):
            routing = Routing(needs_response=True, priority="P2", sinks=sinks)
            m = base.model_copy(update={"id": f"test:r{n}", "routing": routing})
            await loop.submit(Item(0, n, None, encode_mention(m)))
        await loop.drain()
        assert sorted(gated.delivered) == ["test:r0", "test:r1"]
        assert list(memory.delivered) == ["test:r1"]
        assert loop.tracker.committable() == {0: 2}
        await loop.stop()

    asyncio.run(scenario())


def test_a_stop_does_not_wait_for_room_behind_a_sink_that_keeps_failing() -> None:
    async def scenario() -> None:
        metrics = create(CollectorRegistry())
        slow = GatedSink()  # never answers while the gate is shut

        async def dead_letter(*_: Any) -> None:
            raise AssertionError("nothing is dead-lettered on a stop")

        deliverer = Deliverer(slow, MemoryLedger(), metrics, RetryPolicy(max_attempts=1))
        loop = DeliveryLoop([deliverer], dead_letter, "needs-response", concurrency=1,
                            max_in_flight=1)  # fmt: skip
        loop.start()
        stop = asyncio.Event()
        assert await loop.submit(item(0), stop)  # takes the only slot
        waiting = asyncio.ensure_future(loop.submit(item(1), stop))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # no room: the read waits
        stop.set()
        assert await asyncio.wait_for(waiting, 1) is False  # the stop wins, item 1 unqueued
        assert loop.tracker.committable() == {0: 0}  # neither is committed (next to read: 0)
        await loop.stop()

    asyncio.run(scenario())


def test_unless_stopped_returns_the_result_or_cancels_the_work() -> None:
    async def scenario() -> None:
        stop = asyncio.Event()
        assert await unless_stopped(asyncio.sleep(0, result=7), stop) == (True, 7)
        cancelled = asyncio.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                cancelled.set()

        stop.set()
        assert await unless_stopped(forever(), stop) == (False, None)
        assert cancelled.is_set()

    asyncio.run(scenario())


class RebalancingConsumer:
    """What ``commit_unless_rebalancing`` uses of an aiokafka consumer (a unit-test double)."""

    def __init__(self, assigned: set[str], error: Exception | None = None) -> None:
        self.assigned = assigned
        self.error = error
        self.commits: list[dict[str, int] | None] = []

    def assignment(self) -> set[str]:
        return set(self.assigned)

    async def commit(self, offsets: dict[str, int] | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.commits.append(offsets)


def test_commits_name_only_assigned_partitions_and_skip_what_a_rebalance_refuses() -> None:
    from aiokafka.errors import CommitFailedError, IllegalStateError

    async def scenario() -> None:
        consumer = RebalancingConsumer({"q-0"})
        assert await commit_unless_rebalancing(consumer, "g", {"q-0": 5, "q-1": 9})
        assert consumer.commits == [{"q-0": 5}], "the revoked partition is left to its new owner"
        assert not await commit_unless_rebalancing(consumer, "g", {"q-1": 9})
        assert consumer.commits == [{"q-0": 5}], "nothing assigned: no commit at all"
        for error in (CommitFailedError("rebalanced"), IllegalStateError("No partitions assigned")):
            refused = RebalancingConsumer({"q-0"}, error)
            assert not await commit_unless_rebalancing(refused, "g", {"q-0": 5})
            assert not await commit_unless_rebalancing(refused, "g")
        broken = RebalancingConsumer({"q-0"}, ValueError("not a rebalance"))
        try:
            await commit_unless_rebalancing(broken, "g", {"q-0": 5})
        except ValueError:
            pass
        else:
            raise AssertionError("other errors are not swallowed")

    asyncio.run(scenario())
