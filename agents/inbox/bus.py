"""The inbox's Kafka side: read the queue and the actions from the start, write actions.

:class:`Feed` runs as a background task: it assigns every partition of
``mentions.needs-response`` and ``mentions.inbox-actions`` (no consumer group:
each replica reads everything), seeks to the beginning and feeds each record to
:class:`~agents.inbox.state.InboxState`; it is *ready* once it has read up to
the end offsets it saw at start. :class:`Writer` records an action through
:class:`agents.queue.action_writer.ActionWriter` (the one writer of the actions
topic, shared with the helpdesk sync-back: it catches up with other writers,
then :func:`~agents.queue.actions.apply`), then writes the side records: an
acknowledgement on ``mentions.acks`` when the first response is recorded (the
worker's SLA clock stops), a correction on ``mentions.corrections``, and the
author on the compacted ``mentions.spam-authors`` topic.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.inbox.metrics import InboxMetrics
from agents.inbox.state import InboxState
from agents.queue.action_writer import ActionWriter
from agents.queue.actions import Action, ItemState, Role
from agents.queue.corrections import Correction, ensure_topic
from listener.kafka_admin import COMPACTED, create_topics, partition_counts
from listener.record import author_key
from listener.settings import KafkaConnection, kafka_settings_of
from listener.topics import TopicNames

log = logging.getLogger(__name__)


def create_inbox_topics(kafka: KafkaConnection, topics: TopicNames, partitions: int = 4) -> None:
    """Create the compacted topics the inbox writes, leaving existing ones as they are."""
    names = [topics.inbox_actions, topics.spam_authors]
    create_topics(kafka, names, partitions, configs=COMPACTED)
    ensure_topic(kafka, topics, partitions)


class Feed:
    """Reads both topics into ``state`` until stopped.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topics: Topic names.
        state: The view to feed.
    """

    def __init__(self, kafka: KafkaConnection, topics: TopicNames, state: InboxState) -> None:
        self.kafka, self.topics, self.state = kafka_settings_of(kafka), topics, state
        self.ready = asyncio.Event()
        self.error: str | None = None

    async def _partitions(self) -> list[TopicPartition]:
        names = (self.topics.needs_response, self.topics.inbox_actions)
        while True:
            counts = await asyncio.to_thread(partition_counts, self.kafka, names)
            if all(counts.values()):
                return [TopicPartition(t, p) for t in names for p in range(counts[t])]
            self.error = f"waiting for topics: {[t for t, n in counts.items() if not n]}"
            await asyncio.sleep(2.0)

    async def run(self) -> None:
        """Read until cancelled; sets :attr:`ready` once caught up with the start's end offsets."""
        tps = await self._partitions()
        self.error = None
        consumer = AIOKafkaConsumer(
            **self.kafka.aiokafka(),
            group_id=None,
            enable_auto_commit=False,
            client_id="brand-listener-inbox",
            fetch_max_wait_ms=100,
        )
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            if all(end == 0 for end in ends.values()):
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=2000)
                for tp, records in batches.items():
                    take = (
                        self.state.on_queue_record
                        if tp.topic == self.topics.needs_response
                        else self.state.on_action_record
                    )
                    for record in records:
                        take(record.key, record.value)
                if not self.ready.is_set():
                    positions = {tp: await consumer.position(tp) for tp in tps}
                    if all(positions[tp] >= end for tp, end in ends.items()):
                        log.info("inbox: rebuilt %d items from Kafka", len(self.state.items))
                        self.ready.set()
        finally:
            await consumer.stop()


class Writer:
    """Applies actions and writes them to Kafka; one at a time per replica.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topics: Topic names.
        state: The view (updated as soon as Kafka has the record).
        metrics: The inbox metrics (times to first response and resolution).
        clock: Wall-clock seconds.
    """

    def __init__(
        self,
        kafka: KafkaConnection,
        topics: TopicNames,
        state: InboxState,
        metrics: InboxMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.topics, self.state, self.metrics, self._clock = topics, state, metrics, clock
        self._actions = ActionWriter(kafka, topics.inbox_actions, acks_topic=topics.acks)
        self._producer = AIOKafkaProducer(
            **kafka_settings_of(kafka).aiokafka(),
            client_id="brand-listener-inbox",
            acks="all",
            enable_idempotence=True,
        )
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Read the actions topic (the action writer's mirror) and connect the producer."""
        await asyncio.to_thread(self._actions.start)
        await self._producer.start()

    async def stop(self) -> None:
        """Flush and close the clients."""
        await self._producer.stop()
        await asyncio.to_thread(self._actions.close)

    async def act(
        self,
        mention_id: str,
        kind: str,
        by: str,
        role: Role,
        *,
        team: str | None = None,
        label: str | None = None,
    ) -> ItemState:
        """Apply one action by ``by`` and write it (and its side records) to Kafka.

        Raises:
            KeyError: No such item on the queue.
            agents.queue.actions.ActionRefused: The rules do not allow it.
            pydantic.ValidationError: A bad kind, team or label.
            aiokafka.errors.KafkaError: A record was not written.
        """
        async with self._lock:
            item = self.state.items[mention_id]
            action = Action.model_validate(
                {"kind": kind, "by": by, "at": self._clock(), "team": team, "label": label}
            )
            after = await self._actions.act(mention_id, action, role)
            if after.first_response_at == action.at:  # this action stopped the SLA clock
                await self._actions.ack(mention_id, action.at, by)
            key = mention_id.encode("utf-8")
            sends = []
            if kind == "correct_label" and after.label is not None:
                correction = Correction.of(
                    item.mention, mention_id=mention_id, new_label=after.label, by=by, at=action.at
                )
                topic = self.topics.corrections
                sends.append(self._producer.send(topic, correction.encode(), key=key))
            spammer = author_key(item.mention)
            if kind == "mark_spam" and spammer:
                body = orjson.dumps({"by": by, "at": action.at, "mention_id": mention_id})
                topic = self.topics.spam_authors
                sends.append(self._producer.send(topic, body, key=spammer.encode("utf-8")))
            for sent in await asyncio.gather(*sends):
                await sent
            self.state.put_state(after)
            self.metrics.observe(item, action, after)
            return after
