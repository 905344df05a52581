"""brandlistener_delivery_lag: end offset minus what a delivery loop committed or would commit."""

from __future__ import annotations

from collections.abc import Set

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from async_support import sync
from prometheus_client import CollectorRegistry

from agents.delivery.loop import OffsetTracker
from agents.delivery.metrics import DeliveryLag, create, partition_lag

QUEUE = "mentions.needs-response"
GROUP = "brand-listener-deliver"


class FakeConsumer:
    """The consumer state :meth:`DeliveryLag.observe` reads: assignment, highwaters, positions."""

    def __init__(self, highwaters: dict[TopicPartition, int | None]) -> None:
        self.highwaters = highwaters
        self.positions: dict[TopicPartition, int] = {}

    def assignment(self) -> Set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, partition: TopicPartition) -> int | None:
        assert partition in self.highwaters, "aiokafka asserts the partition is assigned"
        return self.highwaters[partition]

    async def position(self, partition: TopicPartition) -> int:
        if partition not in self.positions:
            raise IllegalStateError(f"Partition {partition} is not assigned")
        return self.positions[partition]


def tp(partition: int, topic: str = QUEUE) -> TopicPartition:
    return TopicPartition(topic, partition)


def lag_samples(registry: CollectorRegistry) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for family in registry.collect()
        if family.name == "brandlistener_delivery_lag"
        for s in family.samples
    }


def setup(group: str = GROUP, topic: str = QUEUE) -> tuple[DeliveryLag, CollectorRegistry]:
    registry = CollectorRegistry()
    return DeliveryLag(create(registry).delivery_lag, group, topic), registry


def test_partition_lag_counts_records_from_the_committed_offset_to_the_end() -> None:
    assert partition_lag(end=120, committed=100) == 20
    assert partition_lag(end=100, committed=100) == 0
    # A highwater older than the position (it comes from the previous fetch) is not negative lag.
    assert partition_lag(end=90, committed=100) == 0


@sync
async def test_items_not_finished_by_every_sink_count_as_lag() -> None:
    lag, registry = setup()
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.add(0, offset, parts=2)  # two sinks each
    tracker.done(0, 11)
    tracker.done(0, 11)  # 11 finished, 10 and 12 not: the loop would commit 10
    tracker.done(0, 12)  # one of 12's sinks finished: still in flight
    consumer = FakeConsumer({tp(0): 20})
    consumer.positions[tp(0)] = 13

    await lag.observe(consumer, tracker.committable())
    assert lag_samples(registry) == {(GROUP, QUEUE, "0"): 10.0}  # 10..19

    tracker.done(0, 10)
    tracker.done(0, 10)
    tracker.done(0, 12)
    await lag.observe(consumer, tracker.committable())
    assert lag_samples(registry) == {(GROUP, QUEUE, "0"): 7.0}  # 13..19 not read yet


@sync
async def test_partitions_without_items_are_finished_up_to_the_position() -> None:
    lag, registry = setup()
    consumer = FakeConsumer({tp(0): 50, tp(1): 8, tp(2): None, tp(0, "mentions.alerts"): 3})
    consumer.positions.update({tp(0): 45, tp(1): 8, tp(0, "mentions.alerts"): 0})

    await lag.observe(consumer, {})
    # Partition 2 has no fetch response yet: unknown, so not published as 0.
    # Another topic of the same consumer is not this loop's.
    assert lag_samples(registry) == {(GROUP, QUEUE, "0"): 5.0, (GROUP, QUEUE, "1"): 0.0}


@sync
async def test_series_of_partitions_no_longer_assigned_are_removed() -> None:
    lag, registry = setup()
    consumer = FakeConsumer({tp(0): 5, tp(1): 7, tp(2): 9})
    consumer.positions.update({tp(0): 5, tp(1): 7, tp(2): 9})
    await lag.observe(consumer, {0: 1, 1: 2, 2: 3})
    assert set(lag_samples(registry)) == {(GROUP, QUEUE, p) for p in ("0", "1", "2")}

    del consumer.highwaters[tp(2)]
    lag.forget([2])  # revoked: the rebalance listener drops it at once
    assert set(lag_samples(registry)) == {(GROUP, QUEUE, "0"), (GROUP, QUEUE, "1")}

    del consumer.highwaters[tp(1)]  # revoked with no listener call: the next reading drops it
    await lag.observe(consumer, {0: 1})
    assert lag_samples(registry) == {(GROUP, QUEUE, "0"): 4.0}

    lag.clear()  # the loop stopped
    assert lag_samples(registry) == {}


@sync
async def test_a_partition_revoked_during_the_reading_is_skipped() -> None:
    lag, registry = setup()
    consumer = FakeConsumer({tp(0): 5, tp(1): 7})
    consumer.positions[tp(0)] = 5  # partition 1 has no position: revoked meanwhile
    await lag.observe(consumer, {})
    assert lag_samples(registry) == {(GROUP, QUEUE, "0"): 0.0}


@sync
async def test_the_two_loops_share_the_gauge_without_touching_each_other() -> None:
    registry = CollectorRegistry()
    gauge = create(registry).delivery_lag
    mentions = DeliveryLag(gauge, GROUP, QUEUE)
    alerts = DeliveryLag(gauge, "brand-listener-alerts", "mentions.alerts")
    consumer = FakeConsumer({tp(0): 4})
    await mentions.observe(consumer, {0: 1})
    await alerts.observe(FakeConsumer({tp(0, "mentions.alerts"): 2}), {0: 1})
    mentions.clear()
    assert lag_samples(registry) == {("brand-listener-alerts", "mentions.alerts", "0"): 1.0}
