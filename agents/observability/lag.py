"""Consumer lag of the worker's group: a periodic task reading committed and end offsets.

Every ``interval_s`` the monitor takes the partitions assigned to *this* worker
(so summing over workers counts each partition once), asks the broker for the
group's committed offsets (``OffsetFetch`` through aiokafka's admin client) and
for the partitions' end offsets (Faust's ``consumer.highwaters``), and sets
``brandlistener_consumer_lag{topic,partition}`` = end - committed (and
``brandlistener_consumer_committed_offset``, whose changes are progress). Series of
partitions that moved to another worker are removed. The same numbers feed
:class:`agents.observability.health.Health`, which decides whether a stream has stalled.
Labels stay bounded: the group's topics times their partition counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient

from agents.observability.health import Health, TopicPartition
from agents.observability.metrics import AgentMetrics
from listener.settings import KafkaConnection, kafka_settings_of

log = logging.getLogger(__name__)


class LagMonitor:
    """Reads the group's lag on the assigned partitions and publishes it.

    Args:
        app: The Faust app (its consumer and assignment).
        kafka: The cluster, for the admin client.
        group: The consumer group (the app id).
        metrics: Where ``consumer_lag`` is set.
        health: Fed every reading, for stall detection.
    """

    def __init__(
        self,
        app: faust.App,
        kafka: KafkaConnection,
        group: str,
        metrics: AgentMetrics,
        health: Health,
    ) -> None:
        self._app = app
        self._kafka = kafka_settings_of(kafka)
        self._group = group
        self._metrics = metrics
        self._health = health
        self._admin: AIOKafkaAdminClient | None = None
        self._published: set[TopicPartition] = set()

    def assigned(self) -> set[TopicPartition]:
        """This worker's active partitions of the group's source topics (no changelogs)."""
        if self._app.rebalancing:
            return set(self._published)
        return {
            (tp.topic, tp.partition)
            for tp in self._app.consumer.assignment()
            if not tp.topic.endswith("-changelog")
        }

    async def committed(self, tps: set[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offset of each of ``tps`` (-1 where none)."""
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(**self._kafka.aiokafka())
            await self._admin.start()
        offsets = await self._admin.list_consumer_group_offsets(
            self._group, partitions=[KafkaTP(t, p) for t, p in sorted(tps)]
        )
        found = {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}
        return {tp: found.get(tp, -1) for tp in tps}

    def publish(
        self, committed: Mapping[TopicPartition, int], ends: Mapping[TopicPartition, int]
    ) -> None:
        """Set the lag gauges and feed :class:`Health`; drop series of partitions gone elsewhere.

        Args:
            committed: Committed offset per partition (-1 where none).
            ends: Log end offset per partition.
        """
        current = set(committed) & set(ends)
        for tp in sorted(current):
            lag = max(0, ends[tp] - max(committed[tp], 0))
            labels = {"topic": tp[0], "partition": str(tp[1])}
            self._metrics.consumer_lag.labels(**labels).set(lag)
            self._metrics.consumer_committed.labels(**labels).set(committed[tp])
            self._health.observe(tp, committed[tp], ends[tp])
        for topic, partition in self._published - current:
            self._metrics.consumer_lag.remove(topic, str(partition))
            self._metrics.consumer_committed.remove(topic, str(partition))
        self._health.forget(current)
        self._published = current

    async def tick(self) -> None:
        """One reading; errors are logged and the previous values kept."""
        tps = self.assigned()
        if not tps:
            self.publish({}, {})
            return
        try:
            committed = await self.committed(tps)
            highwaters = await self._app.consumer.highwaters(
                *(faust.types.TP(topic, partition) for topic, partition in tps)
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed reading must not stop the worker
            log.warning("consumer lag reading failed: %r", exc)
            return
        ends = {(tp.topic, tp.partition): int(end) for tp, end in highwaters.items()}
        self.publish(committed, ends)

    async def close(self) -> None:
        """Close the admin client."""
        if self._admin is not None:
            await self._admin.close()
            self._admin = None


def register(app: faust.App, monitor: LagMonitor, interval_s: float) -> None:
    """Run ``monitor.tick`` every ``interval_s`` on ``app``, and close it when the app stops."""

    async def read_consumer_lag() -> None:
        await monitor.tick()

    app.timer(interval_s, name="brandlistener_consumer_lag")(read_consumer_lag)

    async def close_lag_monitor(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await monitor.close()

    app.on_before_shutdown.connect(close_lag_monitor)
