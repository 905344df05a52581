"""The human queue's SLA clock: open items, acknowledgements, breaches, time in queue.

**Acknowledged** means: a record keyed by the Mention id is on the acks topic
(``mentions.acks``), written by whatever tool the support team answers from
(a ticketing webhook, a bot, ``kafka-console-producer``). Its value is
optional JSON ``{"acked_at": <unix seconds>}``; without it the record's Kafka
timestamp is the acknowledgement time. Delivery to a ticketing sink is *not*
an acknowledgement: a ticket nobody answers is still a breach.

The ``track_queue`` agent reads ``mentions.needs-response`` and
``mentions.acks`` (both keyed by id, so co-partitioned) into the ``sla-queue``
table (changelog-backed, so a restarted or rebalanced worker gets its open
items back). An item is added when queued; when acknowledged it is replaced
by a small *closed* marker (observing ``brandlistener_time_in_queue_seconds``
once), so a queue record redelivered after its ack (at-least-once: a worker
restart, a rebalance) or a copy-count update of it (see ``agents/pipeline/dedup.py``)
never reopens it. An ack that arrives before its item is kept as a marker
too, and closes the item when it arrives.

Markers are forgotten :data:`ACK_RETENTION_S` after their ack time (Kafka's
default ``retention.ms``: by then the queue record is normally gone from the
topic). The agent purges them while it processes records, at most every
:data:`PURGE_INTERVAL_S` per partition and only in the partition of the
record at hand, since a Faust table can only be changed from its stream (the
changelog record goes to the event's partition); a partition that receives no
records keeps its markers until it does.

A timer counts, over the partitions this worker owns, the open items by
priority and team (``brandlistener_queue_depth``; markers are not counted),
those past due (``brandlistener_sla_overdue``), and increments
``brandlistener_sla_breaches_total`` the first time this process sees an item
overdue (after a restart or rebalance, items already overdue are counted once
more by their new owner: the gauge is the exact figure, the counter a rate).
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Iterable
from typing import Any

import faust
import orjson
from faust.types import EventT, StreamT

from agents.observability.metrics import AgentMetrics
from agents.runtime.app import Outputs
from agents.runtime.batches import run_events
from listener.errors import SkippableError
from listener.record import Mention, decode_mention
from listener.topics import TopicNames

log = logging.getLogger(__name__)

TABLE = "sla-queue"

STAGE = "sla"
"""The stage name on dead letters of records the queue tracker could not take."""

ACK_RETENTION_S = 7 * 24 * 3600.0
"""How long an ack marker is kept after its ack time: Kafka's default ``retention.ms``."""

PURGE_INTERVAL_S = 3600.0
"""Least time between two scans of one partition's markers for expired ones."""


def _ack_time(value: bytes | None, fallback: float) -> float:
    if value:
        try:
            body = orjson.loads(value)
        except orjson.JSONDecodeError:
            return fallback
        if isinstance(body, dict) and isinstance(body.get("acked_at"), int | float):
            return float(body["acked_at"])
    return fallback


def _is_open(item: dict[str, Any]) -> bool:
    """A queued item not yet acknowledged (the rest are ack markers)."""
    return "queued_at" in item and "acked_at" not in item


def _is_count_update(mention: Mention) -> bool:
    """A queue record the route stage re-produced with a copy count (agents/pipeline/dedup.py)."""
    duplicates = mention.signals.get("duplicates")
    return isinstance(duplicates, dict) and duplicates.get("of") == mention.id


class QueueTracker:
    """Keeps the SLA table and the queue metrics; the agent and timer call into it.

    Table values are JSON: an open item ``{"priority", "team", "due",
    "queued_at", "p"}``; an ack waiting for its item ``{"acked_at", "p"}``; a
    closed item ``{"acked_at", "p", "closed": true}``. ``p`` is the partition,
    the same on both topics.

    Args:
        table: ``id -> JSON item`` (or an ack marker), a Faust table or a dict in tests.
        metrics: The worker's metrics.
        topics: Topic names (to tell queue records from acks).
        clock: Wall-clock seconds (injected in tests).
        retention_s: How long markers are kept after their ack time.
        purge_interval_s: Least time between two purges of one partition.
    """

    def __init__(
        self,
        table: Any,
        metrics: AgentMetrics,
        topics: TopicNames,
        clock: Any = time.time,
        retention_s: float = ACK_RETENTION_S,
        purge_interval_s: float = PURGE_INTERVAL_S,
    ) -> None:
        self._table = table
        self._metrics = metrics
        self._topics = topics
        self._clock = clock
        self._retention_s = retention_s
        self._purge_interval_s = purge_interval_s
        self._purged_at: dict[int, float] = {}
        self._breached: set[bytes] = set()
        self._labels: set[tuple[str, str]] = set()

    def on_record(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int, ts: float
    ) -> None:
        """Apply one record of the queue or acks topic to the table.

        Must run in the record's stream context: it may also purge expired
        markers of ``partition`` (:meth:`_purge`).

        Args:
            topic: Where it came from.
            key: The Mention id (records without one are ignored).
            value: The queue item (a Mention) or the ack body.
            partition: Its partition (the item remembers it, see :meth:`refresh`).
            ts: The record's timestamp in seconds.
        """
        self._purge(partition)
        if not key:
            return
        seen = self._table.get(key)
        item = orjson.loads(seen) if seen is not None else None
        if topic == self._topics.acks:
            acked = _ack_time(value, ts)
            if item is None:
                self._table[key] = orjson.dumps({"acked_at": acked, "p": partition})
            elif _is_open(item):
                self._acknowledge(key, item, acked)
            return
        try:
            mention = decode_mention(value or b"")
        except SkippableError as exc:
            log.warning("queue record %r not tracked: %s", key, exc)
            return
        routing = mention.routing
        if routing is None or not routing.needs_response:
            return
        if item is None and _is_count_update(mention):
            return  # acknowledged, its marker expired: a copy count must not reopen it
        queued = {
            "priority": routing.priority or "none",
            "team": routing.team or "none",
            "due": routing.sla_due_at.timestamp() if routing.sla_due_at else None,
            "queued_at": mention.stage_times.get("routed", ts),
            "p": partition,
        }
        if item is None:
            self._table[key] = orjson.dumps(queued)
        elif "acked_at" in item and not item.get("closed"):
            self._acknowledge(key, queued, float(item["acked_at"]))
        # else: open already (a redelivery or copy count), or closed (redelivered after its ack)

    def _acknowledge(self, key: bytes, item: dict[str, Any], acked_at: float) -> None:
        labels = {"priority": item["priority"], "team": item["team"]}
        waited = max(0.0, acked_at - float(item["queued_at"]))
        self._metrics.time_in_queue.labels(**labels).observe(waited)
        self._table[key] = orjson.dumps({"acked_at": acked_at, "p": item["p"], "closed": True})
        self._breached.discard(key)

    def _purge(self, partition: int) -> None:
        """Delete ``partition``'s markers older than the retention (at most once an interval).

        Only keys of the partition being processed: their changelog records
        must go to that partition, the one Faust writes them to.
        """
        now = self._clock()
        if now - self._purged_at.get(partition, float("-inf")) < self._purge_interval_s:
            return
        self._purged_at[partition] = now
        expired = []
        for key, raw in list(self._table.items()):
            item = orjson.loads(raw)
            if item.get("p") != partition or "acked_at" not in item:
                continue
            if float(item["acked_at"]) + self._retention_s < now:
                expired.append(key)
        for key in expired:
            del self._table[key]
        if expired:
            log.info("sla: %d ack markers of partition %d expired", len(expired), partition)

    def refresh(self, partitions: Iterable[int]) -> None:
        """Recompute the queue gauges over this worker's ``partitions``; count new breaches."""
        owned = set(partitions)
        now = self._clock()
        depth: Tally[tuple[str, str]] = Tally()
        overdue: Tally[tuple[str, str]] = Tally()
        keys: set[bytes] = set()
        for key, raw in list(self._table.items()):
            item = orjson.loads(raw)
            if item.get("p") not in owned or not _is_open(item):
                continue
            labels = (item["priority"], item["team"])
            depth[labels] += 1
            keys.add(key)
            due = item.get("due")
            if due is not None and due < now:
                overdue[labels] += 1
                if key not in self._breached:
                    self._breached.add(key)
                    self._metrics.sla_breaches.labels(*labels).inc()
        self._breached &= keys
        self._labels |= set(depth)
        for labels in self._labels:
            self._metrics.queue_depth.labels(*labels).set(depth[labels])
            self._metrics.sla_overdue.labels(*labels).set(overdue[labels])


def register(
    app: faust.App,
    metrics: AgentMetrics,
    outputs: Outputs,
    topics: TopicNames,
    partitions: int,
    interval_s: float,
) -> QueueTracker:
    """Add the ``sla-queue`` table, the ``track_queue`` agent and the refresh timer to ``app``.

    A record the tracker cannot take is dead-lettered (stage ``sla``) through ``outputs``.
    """
    table = app.Table(TABLE, default=None, partitions=partitions, key_type=bytes, value_type=bytes)
    source = app.topic(
        topics.needs_response,
        topics.acks,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )
    tracker = QueueTracker(table, metrics, topics)

    async def track_queue(stream: StreamT) -> None:
        await run_events(
            stream,
            stage=STAGE,
            handle=lambda event: tracker.on_record(*_fields(event)),
            dead_letter=outputs.dead_letter_batch,
        )

    app.agent(source, name="track_queue")(track_queue)

    async def refresh_queue_metrics() -> None:
        owned = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == topics.needs_response
        }
        tracker.refresh(owned)

    app.timer(interval_s, name="brandlistener_queue_metrics")(refresh_queue_metrics)
    return tracker


def _fields(event: EventT) -> tuple[str, bytes | None, bytes | None, int, float]:
    message = event.message
    key = event.key if isinstance(event.key, bytes) else None
    value = event.value if isinstance(event.value, bytes) else None
    return message.topic, key, value, message.partition, message.timestamp
