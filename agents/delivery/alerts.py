"""The alert path: mentions.alerts -> every configured sink that delivers alerts.

An alert is the JSON object on ``mentions.alerts`` (see
:meth:`agents.pipeline.spikes.SpikeAlert.record`), keyed by its stable ``id``. A sink
that can page or post about it (PagerDuty, Slack) has an
``async deliver_alert(alert) -> DeliveryResult`` beside ``deliver`` and an
``alerts`` switch in its settings (on by default); :class:`~agents.sinks.alerts.AlertSink`
is that shape. Delivery goes through the same
:meth:`~agents.delivery.policy.Deliverer.deliver_alert` as mentions: retries
with backoff, the sink's breaker, and the ledger keyed by the alert id, so an
alert that is read again after a restart or rebalance is not sent twice.

:func:`run_alert_delivery` is a plain aiokafka consumer in its own group
(``<app_id>-alerts``), one alert at a time (alerts are rare); its offset is
committed only after every sink has delivered the alert or it was
dead-lettered with reason ``"sink:<name>"``. Guarantee: at-least-once, at most
one message per (sink, alert id) while the ledger holds the entry. Its lag is
``brandlistener_delivery_lag{group="<app_id>-alerts"}``
(:class:`~agents.delivery.metrics.DeliveryLag`): read after each poll, counting the
batch about to be delivered from its first offset, and again after each commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from prometheus_client import Gauge

from agents.delivery.dead_letters import produce_until_acked
from agents.delivery.ledger import KafkaLedger
from agents.delivery.loop import commit_unless_rebalancing, group_clients, unless_stopped
from agents.delivery.metrics import DeliveryLag
from agents.delivery.policy import Deliverer
from listener.dead_letter import dead_letter_record, reason_of
from listener.settings import KafkaConnection
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "alert"


async def deliver_alert(
    deliverers: Sequence[Deliverer], alert: Mapping[str, Any]
) -> list[tuple[str, BaseException]]:
    """Send ``alert`` to every deliverer concurrently; returns ``(sink, error)`` of failures."""
    outcomes = await asyncio.gather(*(d.deliver_alert(alert) for d in deliverers))
    return [(o.sink, o.error or RuntimeError("not delivered")) for o in outcomes if not o.ok]


async def run_alert_delivery(
    kafka: KafkaConnection,
    topics: TopicNames,
    group_id: str,
    deliverers: Sequence[Deliverer],
    ledger: KafkaLedger,
    stop: asyncio.Event,
    *,
    lag_gauge: Gauge,
) -> None:
    """Consume ``topics.alerts`` and deliver each alert to ``deliverers`` until ``stop`` is set.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topics: Topic names (alerts in, dead-letter out).
        group_id: The alert consumer group, e.g. ``"<app_id>-alerts"``.
        deliverers: One per sink that delivers alerts (see :func:`delivers_alerts`).
        ledger: The started ledger; caught up after every rebalance.
        stop: Set to stop; an alert still being delivered is dropped uncommitted (read again).
        lag_gauge: ``brandlistener_delivery_lag``
            (:attr:`~agents.delivery.metrics.SinkMetrics.delivery_lag`), set for ``group_id`` and
            the alerts topic.
    """
    from aiokafka.abc import ConsumerRebalanceListener

    # metadata_max_age_ms: the topic may be created after we subscribe
    producer, consumer = group_clients(kafka, group_id, metadata_max_age_ms=5000)
    lag = DeliveryLag(lag_gauge, group_id, topics.alerts)

    class Rebalance(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked: Any) -> None:
            lag.forget(tp.partition for tp in revoked)  # offsets are committed after each batch

        async def on_partitions_assigned(self, assigned: Any) -> None:
            await ledger.catch_up()

    async def dead_letter(value: bytes, key: bytes | None, reason: str, error: str) -> None:
        record = dead_letter_record(
            value, stage=STAGE, reason=reason, error=error, origin={"topic": topics.alerts}
        )
        await produce_until_acked(producer, topics.dead_letter, record, key)

    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.alerts], listener=Rebalance())
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=20)
            unfinished = {tp.partition: records[0].offset for tp, records in batches.items()}
            await lag.observe(consumer, unfinished)
            for records in batches.values():
                for record in records:
                    value = record.value or b""
                    try:
                        alert = orjson.loads(value)
                        if not isinstance(alert, dict) or "id" not in alert:
                            raise ValueError("an alert must be a JSON object with an id")
                    except ValueError as exc:
                        await dead_letter(value, record.key, reason_of(exc), f"{exc}")
                        continue
                    done, failures = await unless_stopped(deliver_alert(deliverers, alert), stop)
                    if not done:
                        return  # stopping: this batch is not committed; the next reader sends it
                    for sink, failure in failures or ():
                        error = f"{type(failure).__name__}: {failure}"
                        await dead_letter(value, record.key, f"sink:{sink}", error)
            if batches:
                await commit_unless_rebalancing(consumer, group_id)
                await lag.observe(consumer, {})
    finally:
        lag.clear()
        for deliverer in deliverers:
            await deliverer.sink.close()
        await consumer.stop()
        await producer.stop()
