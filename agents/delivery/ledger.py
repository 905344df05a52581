"""The idempotency ledger: (sink, Mention id) -> external ticket id.

Sinks whose target has no idempotency key of its own (Jira Service Management,
Freshdesk, ServiceNow, Request Tracker, Slack) are protected by this ledger:
the deliverer looks the pair up before creating and records it after.

:class:`KafkaLedger` is durable: a compacted topic ``<prefix>mentions.sink-ledger``
keyed ``"<sink>:<mention id>"`` (kafka-python), read whole at start-up into a
dict and re-read (:meth:`KafkaLedger.catch_up`) after a rebalance, when another
worker may have recorded deliveries for partitions this one now owns.
:class:`MemoryLedger` is the same thing without Kafka, for unit tests.

Remaining window: a crash after the target created the ticket and before the
ledger write is acknowledged means one duplicate on redelivery; it is as
narrow as one produce round-trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import orjson

from listener.compacted import CompactedTopic
from listener.settings import KafkaConnection

log = logging.getLogger(__name__)


def ledger_topic(prefix: str = "") -> str:
    """The ledger topic name under a deployment prefix."""
    return f"{prefix}mentions.sink-ledger"


def ledger_key(sink: str, mention_id: str) -> str:
    """The ledger key of one delivery: ``"<sink>:<mention id>"``."""
    return f"{sink}:{mention_id}"


class _Index:
    """Entries by key plus the reverse map (sink, external id) -> Mention id, for the sync-back."""

    def __init__(self) -> None:
        self.entries: dict[str, str] = {}
        self.reverse: dict[tuple[str, str], str] = {}

    def put(self, key: str, external_id: str) -> None:
        self.entries[key] = external_id
        sink, _, mention_id = key.partition(":")  # sink names have no colon
        self.reverse[(sink, external_id)] = mention_id

    def pop(self, key: str) -> None:
        external_id = self.entries.pop(key, None)
        if external_id is not None:
            self.reverse.pop((key.partition(":")[0], external_id), None)

    def tickets(self, sink: str) -> list[tuple[str, str]]:
        prefix = f"{sink}:"
        items = list(self.entries.items())  # one C-level copy: a catch_up thread may be writing
        return [(k[len(prefix) :], v) for k, v in items if k.startswith(prefix)]


class Ledger(Protocol):
    """Where delivered (sink, Mention id) pairs are remembered."""

    async def get(self, sink: str, mention_id: str) -> str | None:
        """The external id recorded for this pair, or None."""
        ...

    async def record(self, sink: str, mention_id: str, external_id: str) -> None:
        """Remember that ``mention_id`` became ``external_id`` in ``sink``; durable on return."""
        ...


class MemoryLedger:
    """A ledger in a dict (unit tests and single-process runs; lost on exit)."""

    def __init__(self) -> None:
        self._index = _Index()
        self.entries = self._index.entries

    async def get(self, sink: str, mention_id: str) -> str | None:
        """The external id recorded for this pair, or None."""
        return self.entries.get(ledger_key(sink, mention_id))

    async def record(self, sink: str, mention_id: str, external_id: str) -> None:
        """Remember the pair."""
        self._index.put(ledger_key(sink, mention_id), external_id)

    def mention_for(self, sink: str, external_id: str) -> str | None:
        """The Mention id delivered to ``sink`` as ``external_id``, or None."""
        return self._index.reverse.get((sink, external_id))

    def tickets(self, sink: str) -> list[tuple[str, str]]:
        """Every (Mention id, external id) recorded for ``sink``."""
        return self._index.tickets(sink)

    async def catch_up(self) -> None:
        """Nothing to read: every entry is already here."""


class KafkaLedger:
    """A ledger on a compacted Kafka topic, mirrored in memory.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topic: The compacted ledger topic (see :func:`ledger_topic`).
        partitions: Partitions to create the topic with if it is missing.
        replication: Replication factor to create it with.
    """

    def __init__(
        self, kafka: KafkaConnection, topic: str, partitions: int = 4, replication: int = 1
    ) -> None:
        self._topic = topic
        self._index = _Index()
        self._entries = self._index.entries
        self._mirror = CompactedTopic(
            kafka,
            topic,
            self._take,
            partitions=partitions,
            replication=replication,
            client_id="sink-ledger",
        )

    def __len__(self) -> int:
        return len(self._entries)

    def start(self) -> None:
        """Create the topic if missing (compacted), then load it whole (blocking)."""
        self._mirror.start()
        log.info("sink ledger %s: %d entries loaded", self._topic, len(self._entries))

    def _take(self, key: str, value: bytes | None) -> None:
        if value is None:
            self._index.pop(key)
        else:
            self._index.put(key, orjson.loads(value)["external_id"])

    async def catch_up(self) -> None:
        """Read what other workers recorded since the last load (call after a rebalance)."""
        await asyncio.to_thread(self._mirror.catch_up)

    async def get(self, sink: str, mention_id: str) -> str | None:
        """The external id recorded for this pair, or None (from memory)."""
        return self._entries.get(ledger_key(sink, mention_id))

    async def record(self, sink: str, mention_id: str, external_id: str) -> None:
        """Produce the pair to the ledger topic and wait for ``acks=all``.

        Raises:
            kafka.errors.KafkaError: Kafka did not take the record.
        """
        key = ledger_key(sink, mention_id)
        value = orjson.dumps({"external_id": external_id, "recorded_at": time.time()})
        await asyncio.to_thread(self._mirror.send, key, value)
        self._index.put(key, external_id)

    def mention_for(self, sink: str, external_id: str) -> str | None:
        """The Mention id delivered to ``sink`` as ``external_id``, or None (from memory)."""
        return self._index.reverse.get((sink, external_id))

    def tickets(self, sink: str) -> list[tuple[str, str]]:
        """Every (Mention id, external id) recorded for ``sink`` (from memory)."""
        return self._index.tickets(sink)

    def close(self) -> None:
        """Flush and close the Kafka clients."""
        self._mirror.close()
