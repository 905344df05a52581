"""Per-sink Prometheus metrics, built on an injected registry (nothing at import time).

Label values are bounded: ``sink`` is a registry name and ``outcome`` one of
:data:`OUTCOMES`, never a Mention id; the delivery lag's ``group`` and
``topic`` are the two delivery loops' (``<app_id>-deliver`` on
mentions.needs-response, ``<app_id>-alerts`` on mentions.alerts) and
``partition`` one of the partitions this worker is assigned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Protocol

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES: tuple[str, ...] = ("created", "existing", "dead_letter")
"""``created``: new ticket/alert; ``existing``: already there (idempotency key or ledger);
``dead_letter``: given up after the retry budget or on a non-retryable error."""


@dataclass(frozen=True, slots=True)
class SinkMetrics:
    """The sink metrics; build with :func:`create`."""

    deliveries: Counter
    delivery_seconds: Histogram
    retries: Counter
    breaker_open: Gauge
    delivery_lag: Gauge


def create(registry: CollectorRegistry) -> SinkMetrics:
    """Build every sink metric on ``registry``.

    Args:
        registry: Where the metrics are registered (one bundle per registry).

    Raises:
        ValueError: The metrics are already registered on ``registry``.
    """
    return SinkMetrics(
        deliveries=Counter(
            "brandlistener_sink_deliveries_total",
            "Mentions a sink finished with, by sink and outcome (created, existing, dead_letter).",
            ("sink", "outcome"),
            registry=registry,
        ),
        delivery_seconds=Histogram(
            "brandlistener_sink_delivery_seconds",
            "Time from handing a mention to a sink to its final outcome, retries included.",
            ("sink",),
            registry=registry,
        ),
        retries=Counter(
            "brandlistener_sink_retries_total",
            "Delivery attempts that failed and were retried, by sink.",
            ("sink",),
            registry=registry,
        ),
        breaker_open=Gauge(
            "brandlistener_sink_breaker_open",
            "1 while a sink's circuit breaker is open or half-open, else 0.",
            ("sink",),
            registry=registry,
        ),
        delivery_lag=Gauge(
            "brandlistener_delivery_lag",
            "Records of a partition a delivery loop has not finished: its end offset minus the"
            " offset the loop has committed or would commit now (see DeliveryLag).",
            ("group", "topic", "partition"),
            registry=registry,
        ),
    )


class LagSource(Protocol):
    """What :meth:`DeliveryLag.observe` reads of an ``aiokafka.AIOKafkaConsumer``."""

    def assignment(self) -> Set[TopicPartition]:
        """The partitions assigned now."""
        ...

    def highwater(self, partition: TopicPartition) -> int | None:
        """The end offset known from the last fetch response (None before the first)."""
        ...

    async def position(self, partition: TopicPartition) -> int:
        """The offset of the next record to be returned."""
        ...


def partition_lag(end: int, committed: int) -> int:
    """Records from ``committed`` (the next offset to process) up to ``end``; never negative."""
    return max(0, end - committed)


class DeliveryLag:
    """``brandlistener_delivery_lag{group,topic,partition}`` of one delivery loop.

    A partition's lag is its end offset minus the offset the loop has committed,
    or would commit now: the first item not yet finished by every sink it goes
    to. So items read but still being delivered (retried, waiting for a breaker)
    count as lag, as do records not read yet. The end offset is the consumer's
    ``highwater``, known from its fetch responses (no extra request); a partition
    with no fetch response yet is not published, rather than published as 0.
    Only the partitions this worker is assigned are published (summing over
    workers counts each once); series of revoked partitions are removed.

    Args:
        gauge: :attr:`SinkMetrics.delivery_lag`.
        group: The loop's consumer group (a label).
        topic: The topic the loop reads (a label).
    """

    def __init__(self, gauge: Gauge, group: str, topic: str) -> None:
        self._gauge = gauge
        self.group = group
        self.topic = topic
        self._published: set[int] = set()

    async def observe(self, consumer: LagSource, unfinished_from: Mapping[int, int]) -> None:
        """Read the lag of every assigned partition of :attr:`topic` and publish it.

        Args:
            consumer: The loop's consumer.
            unfinished_from: Partition -> the offset the loop would commit now, for the
                partitions it has items of; the others are finished up to the
                consumer's position.
        """
        ends = {}  # read before any await: the assignment cannot change in between
        for tp in consumer.assignment():
            end = consumer.highwater(tp) if tp.topic == self.topic else None
            if end is not None:
                ends[tp] = end
        lags = {}
        for tp, end in sorted(ends.items()):
            committed = unfinished_from.get(tp.partition)
            if committed is None:
                try:  # known without a request once a fetch response came (there is a highwater)
                    committed = await consumer.position(tp)
                except IllegalStateError:
                    continue  # revoked meanwhile
            lags[tp.partition] = partition_lag(end, committed)
        self.publish(lags)

    def publish(self, lags: Mapping[int, int]) -> None:
        """Set the lag of each partition of ``lags``; remove the series of any other."""
        for partition, lag in lags.items():
            self._gauge.labels(self.group, self.topic, str(partition)).set(lag)
        self.forget(self._published - set(lags))
        self._published = set(lags)

    def forget(self, partitions: Iterable[int]) -> None:
        """Remove the series of ``partitions`` (revoked: another worker reports them now)."""
        for partition in set(partitions) & self._published:
            self._gauge.remove(self.group, self.topic, str(partition))
            self._published.discard(partition)

    def clear(self) -> None:
        """Remove every series of this loop (it stopped)."""
        self.forget(self._published)
