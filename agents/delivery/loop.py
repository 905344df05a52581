"""The delivery loop: mentions.needs-response -> every configured sink, concurrently.

Why a plain aiokafka consumer and not a Faust agent: Faust acks a stream's
events in order, batch by batch, so one slow or failing sink would hold the
partition for every other sink. Here each sink has its own asyncio queue and
workers (:class:`SinkLane`), items complete out of order, and an
:class:`OffsetTracker` commits a partition only up to the first item not yet
finished by *every* sink (delivered, found existing, or dead-lettered with
reason ``"sink:<name>"``). It runs in its own consumer group
(``<app_id>-deliver``), so delivery scales and restarts independently of the
classify/route agents. At-least-once: after a crash or rebalance the
uncommitted items are delivered again and the ledger/idempotency keys absorb
the repeats. Its lag, what it has not finished of each partition, is
``brandlistener_delivery_lag{group="<app_id>-deliver"}``
(:class:`~agents.delivery.metrics.DeliveryLag`), read at each commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import Gauge

from agents.delivery.dead_letters import produce_until_acked
from agents.delivery.ledger import KafkaLedger
from agents.delivery.metrics import DeliveryLag
from agents.delivery.policy import Deliverer, Outcome
from listener.dead_letter import dead_letter_record, reason_of
from listener.record import Mention, decode_mention
from listener.settings import KafkaConnection, kafka_settings_of
from listener.topics import TopicNames

log = logging.getLogger(__name__)
T = TypeVar("T")

STAGE = "deliver"

DeadLetterFn = Callable[[bytes, bytes | None, str, str, dict[str, Any]], Awaitable[None]]
"""``await dead_letter(payload, key, reason, error, origin)``: returns once Kafka has it."""


@dataclass(frozen=True, slots=True)
class Item:
    """One queue record: where it came from and what it carries."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


class OffsetTracker:
    """Per-partition offsets in flight; what may be committed is below the oldest unfinished."""

    def __init__(self) -> None:
        self._pending: dict[int, dict[int, int]] = {}
        self._high: dict[int, int] = {}

    def add(self, partition: int, offset: int, parts: int) -> None:
        """Track ``offset`` until ``parts`` completions (one per sink) have been reported."""
        self._high[partition] = max(self._high.get(partition, -1), offset)
        if parts > 0:
            self._pending.setdefault(partition, {})[offset] = parts

    def done(self, partition: int, offset: int) -> None:
        """One sink finished with ``offset``."""
        pending = self._pending.get(partition)
        if pending is None or offset not in pending:
            return  # partition revoked meanwhile
        pending[offset] -= 1
        if pending[offset] <= 0:
            del pending[offset]

    def committable(self) -> dict[int, int]:
        """For each partition, the offset to commit (next to read) given what is finished."""
        result = {}
        for partition, high in self._high.items():
            pending = self._pending.get(partition)
            result[partition] = min(pending) if pending else high + 1
        return result

    def forget(self, partitions: Sequence[int]) -> None:
        """Stop tracking revoked partitions (their items are redelivered to the new owner)."""
        for partition in partitions:
            self._pending.pop(partition, None)
            self._high.pop(partition, None)

    @property
    def in_flight(self) -> int:
        """Items not yet finished by every sink."""
        return sum(len(p) for p in self._pending.values())


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> tuple[bool, T | None]:
    """Await ``work`` unless ``stop`` is set first (then ``work`` is cancelled).

    A worker's stop must not wait on a sink that keeps failing: what is not
    finished is not committed, and the next reader delivers it (the ledger and
    the sinks' keys absorb the repeat).

    Returns:
        ``(True, result)`` if ``work`` finished, ``(False, None)`` if stopped first.
    """
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        return True, task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False, None


@dataclass
class SinkLane:
    """One sink's queue and workers, so a slow sink only delays itself."""

    deliverer: Deliverer
    concurrency: int = 4
    queue: asyncio.Queue[tuple[Item, Mention]] = field(default_factory=asyncio.Queue)


class DeliveryLoop:
    """Hands each queue item to every sink that accepts it and tracks completion.

    Args:
        deliverers: One per configured sink.
        dead_letter: Produces a dead letter and waits for Kafka's ack.
        topic: The needs-response topic name (for dead-letter origins).
        concurrency: Workers per sink (Slack digests need more than one).
        max_in_flight: Items read but not finished; reading pauses above it.
    """

    def __init__(
        self,
        deliverers: Sequence[Deliverer],
        dead_letter: DeadLetterFn,
        topic: str,
        concurrency: int = 4,
        max_in_flight: int = 1000,
    ) -> None:
        self.lanes = [SinkLane(d, concurrency) for d in deliverers]
        self.tracker = OffsetTracker()
        self._dead_letter = dead_letter
        self._topic = topic
        self._room = asyncio.Semaphore(max_in_flight)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start every lane's workers."""
        for lane in self.lanes:
            for _ in range(lane.concurrency):
                self._tasks.append(asyncio.create_task(self._work(lane)))

    async def submit(self, item: Item, stop: asyncio.Event | None = None) -> bool:
        """Queue ``item`` for every sink that accepts it (waits while too many are in flight).

        Returns:
            False if ``stop`` was set while waiting for room: the item is left
            unfinished (not committed), for the next reader of its partition.
        """
        try:
            mention = decode_mention(item.value)
        except Exception as exc:  # noqa: BLE001 - an undecodable record is dead-lettered
            self.tracker.add(item.partition, item.offset, 0)
            await self._dead_letter(
                item.value, item.key, reason_of(exc), f"{exc}", self._origin(item)
            )
            return True
        named = mention.routing.sinks if mention.routing is not None else ()  # the rule's choice
        lanes = [lane for lane in self.lanes if lane.deliverer.sink.accepts(mention)]
        lanes = [lane for lane in lanes if not named or lane.deliverer.name in named]
        self.tracker.add(item.partition, item.offset, len(lanes))
        for lane in lanes:
            if not await self._wait_for_room(stop):
                return False
            lane.queue.put_nowait((item, mention))
        return True

    async def _wait_for_room(self, stop: asyncio.Event | None) -> bool:
        """Take one in-flight slot; False if ``stop`` is set first (a stop must not wait on it)."""
        if stop is None:
            await self._room.acquire()
            return True
        done, _ = await unless_stopped(self._room.acquire(), stop)
        return done

    async def _work(self, lane: SinkLane) -> None:
        while True:
            item, mention = await lane.queue.get()
            try:
                outcome = await lane.deliverer.deliver(mention)
                if not outcome.ok:
                    await self._dead_letter_outcome(item, outcome)
            except Exception:  # noqa: BLE001 - never lose the lane; retry the item later
                log.exception("%s: unexpected error for %s", lane.deliverer.name, mention.id)
                await asyncio.sleep(1.0)
                lane.queue.put_nowait((item, mention))
                continue
            finally:
                lane.queue.task_done()
            self.tracker.done(item.partition, item.offset)
            self._room.release()

    async def _dead_letter_outcome(self, item: Item, outcome: Outcome) -> None:
        error = f"{type(outcome.error).__name__}: {outcome.error}"
        await self._dead_letter(item.value, item.key, outcome.reason, error, self._origin(item))

    def _origin(self, item: Item) -> dict[str, Any]:
        return {"topic": self._topic, "partition": item.partition, "offset": item.offset}

    async def drain(self) -> None:
        """Wait until every queued item is finished by its sinks."""
        for lane in self.lanes:
            await lane.queue.join()

    async def stop(self) -> None:
        """Cancel the workers and close the sinks."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for lane in self.lanes:
            await lane.deliverer.sink.close()


async def commit_unless_rebalancing(
    consumer: Any, group_id: str, offsets: Mapping[Any, int] | None = None
) -> bool:
    """Commit ``offsets`` (default: what was consumed) of partitions still assigned.

    A rebalance can revoke a partition while its records wait for a sink (an
    outage holds the loop in :meth:`DeliveryLoop.submit`), and aiokafka refuses
    a commit that names an unassigned partition, or any commit while the group
    rejoins. Skipping that commit is safe: nothing is committed past what the
    sinks finished, the new owner reads from the group's committed offset, and
    the ledger and the sinks' keys absorb the repeat. The next commit covers it.

    Returns:
        Whether the commit went through (False: skipped, logged).
    """
    from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

    if offsets is not None:
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return False
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
        log.info("%s: commit skipped while the group rebalances (%s); the next one covers it",
                 group_id, exc)  # fmt: skip
        return False
    return True


def group_clients(
    kafka: KafkaConnection, group_id: str, **consumer_options: Any
) -> tuple[Any, Any]:
    """An acks=all producer (dead letters) and a manually committing consumer of ``group_id``.

    The clients every delivery-side loop starts (the delivery, alert and PagerDuty
    sync loops): security from ``kafka``, reading from the earliest offset where
    the group has none.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    connection = kafka_settings_of(kafka).aiokafka()
    producer = AIOKafkaProducer(acks="all", **connection)
    consumer = AIOKafkaConsumer(
        **connection,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **consumer_options,
    )
    return producer, consumer


async def run_delivery(
    kafka: KafkaConnection,
    topics: TopicNames,
    group_id: str,
    deliverers: Sequence[Deliverer],
    ledger: KafkaLedger,
    stop: asyncio.Event,
    commit_interval_s: float = 1.0,
    *,
    lag_gauge: Gauge,
    max_in_flight: int = 1000,
) -> None:
    """Consume the needs-response topic into ``loop`` until ``stop`` is set.

    Offsets are committed every ``commit_interval_s`` up to what every sink has
    finished, and the lag is published after each of those commits; on shutdown
    the loop stops reading, commits what is finished and leaves the rest to be
    redelivered.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topics: Topic names (needs-response in, dead-letter out).
        group_id: The delivery consumer group, e.g. ``"<app_id>-deliver"``.
        deliverers: One per configured sink (see :func:`agents.delivery.service.build_deliverers`).
        ledger: The started ledger; caught up after every rebalance.
        stop: Set to stop.
        commit_interval_s: How often finished offsets are committed.
        lag_gauge: ``brandlistener_delivery_lag`` (:attr:`SinkMetrics.delivery_lag`), set
            for ``group_id`` and the needs-response topic.
        max_in_flight: Items read but not finished by every sink; reading waits above it
            (a sink outage holds the loop there).
    """
    from aiokafka import TopicPartition
    from aiokafka.abc import ConsumerRebalanceListener

    topic = topics.needs_response
    producer, consumer = group_clients(kafka, group_id)
    lag = DeliveryLag(lag_gauge, group_id, topic)

    async def commit() -> None:
        offsets = {TopicPartition(topic, p): o for p, o in loop.tracker.committable().items()}
        if offsets:
            await commit_unless_rebalancing(consumer, group_id, offsets)

    class Rebalance(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            await commit()
            loop.tracker.forget([tp.partition for tp in revoked])
            lag.forget(tp.partition for tp in revoked)

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await ledger.catch_up()

    async def dead_letter(
        payload: bytes, key: bytes | None, reason: str, error: str, origin: dict[str, Any]
    ) -> None:
        value = dead_letter_record(payload, stage=STAGE, reason=reason, error=error, origin=origin)
        await produce_until_acked(producer, topics.dead_letter, value, key)

    loop = DeliveryLoop(deliverers, dead_letter, topic, max_in_flight=max_in_flight)
    await producer.start()
    await consumer.start()
    consumer.subscribe([topic], listener=Rebalance())
    loop.start()
    last_commit = asyncio.get_running_loop().time()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=100)
            for tp, records in batches.items():
                for record in records:
                    if tp not in consumer.assignment():
                        break  # revoked while a sink held the loop: the new owner reads it
                    value = record.value or b""
                    item = Item(tp.partition, record.offset, record.key, value)
                    if not await loop.submit(item, stop):
                        break  # stopping while every lane is full: leave the rest unread
            now = asyncio.get_running_loop().time()
            if now - last_commit >= commit_interval_s:
                await commit()
                await lag.observe(consumer, loop.tracker.committable())
                last_commit = now
    finally:
        await loop.stop()
        await commit()
        lag.clear()
        await consumer.stop()
        await producer.stop()
