"""Inbox -> PagerDuty: acknowledging or resolving an item acknowledges or resolves its alert.

A consumer in its own group (``<app_id>-pagerduty-sync``) reads
``mentions.inbox-actions``. The latest action of each record decides: a
``claim``, ``take_over`` or ``first_response`` sends Events API v2
``acknowledge``, a ``resolve`` (by a person or a helpdesk's sync-back) sends
``resolve``, each with ``dedup_key`` = the Mention id, the key the PagerDuty
sink triggered with. Only items the sink paged for (a ``pagerduty`` ledger
entry, caught up from Kafka when missing) are sent, so the 120-events-a-minute
limit is spent on real alerts.

Auth: the sink's ``routing_key`` in the body. Rate limits: PagerDuty's
(about 120 events a minute per key); 429 is retried with backoff honouring
Retry-After. Events go through the PagerDuty sink's HTTP client and the
delivery policy (:class:`~agents.delivery.policy.Deliverer`: retries, breaker)
without the ledger: PagerDuty itself makes a repeated acknowledge or resolve
harmless. Guarantee: at-least-once; offsets are committed after each batch
was sent or, past the retry budget, dead-lettered (``sink:pagerduty``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from agents.delivery.dead_letters import produce_until_acked
from agents.delivery.ledger import KafkaLedger
from agents.delivery.loop import commit_unless_rebalancing, group_clients
from agents.delivery.policy import Deliverer
from agents.queue.actions import ItemState, decode_state
from agents.sinks.base import DeliveryResult
from agents.sinks.pagerduty import PagerDutySink
from listener.dead_letter import dead_letter_record
from listener.record import Mention
from listener.settings import KafkaConnection
from listener.topics import TopicNames

log = logging.getLogger(__name__)

STAGE = "pagerduty-sync"
ACKNOWLEDGE = frozenset({"claim", "take_over", "first_response"})
CATCH_UP_EVERY_S = 1.0


def event_action(state: ItemState) -> str | None:
    """The PagerDuty event an item's latest action calls for, or None."""
    if not state.history:
        return None
    kind = state.history[-1].kind
    if kind == "resolve":
        return "resolve"
    return "acknowledge" if kind in ACKNOWLEDGE else None


class PagerDutyUpdates:
    """The PagerDuty sink as a :class:`Deliverer` sees it for acknowledge/resolve: no ledger.

    ``deliver_alert({"id": <dedup key>, "action": "acknowledge"|"resolve"})``
    makes one attempt through the sink's own HTTP client.

    Args:
        sink: The PagerDuty sink (its routing key, URL and HTTP client).
    """

    name: ClassVar[str] = "pagerduty"
    uses_ledger: ClassVar[bool] = False
    settings_model: ClassVar[type[BaseModel]] = BaseModel

    def __init__(self, sink: PagerDutySink) -> None:
        self.sink = sink
        self.settings = sink.settings

    def accepts(self, mention: Mention) -> bool:
        """No mentions: this only updates alerts."""
        return False

    async def deliver(self, mention: Mention) -> DeliveryResult:
        """Not used (see :meth:`deliver_alert`)."""
        raise TypeError("PagerDutyUpdates only acknowledges and resolves")

    async def deliver_alert(self, update: Mapping[str, Any]) -> DeliveryResult:
        """Send ``update["action"]`` for dedup key ``update["id"]`` (one attempt)."""
        return await self.sink.update(str(update["action"]), str(update["id"]))

    async def close(self) -> None:
        """Close the sink's HTTP session."""
        await self.sink.close()


async def run_pagerduty_sync(
    kafka: KafkaConnection,
    topics: TopicNames,
    group_id: str,
    deliverer: Deliverer,
    ledger: KafkaLedger,
    stop: asyncio.Event,
) -> None:
    """Consume ``topics.inbox_actions`` and update PagerDuty until ``stop`` is set.

    Args:
        kafka: The cluster (:data:`listener.settings.KafkaConnection`).
        topics: Topic names (inbox actions in, dead letters out).
        group_id: This consumer's group, e.g. ``"<app_id>-pagerduty-sync"``.
        deliverer: A Deliverer around :class:`PagerDutyUpdates`.
        ledger: The sink ledger (which Mention ids PagerDuty was triggered for).
        stop: Set to stop; the batch in hand is finished first.
    """
    producer, consumer = group_clients(kafka, group_id, metadata_max_age_ms=5000)
    last_catch_up = 0.0

    async def paged(mention_id: str) -> bool:
        nonlocal last_catch_up
        if await ledger.get("pagerduty", mention_id) is not None:
            return True
        if time.monotonic() - last_catch_up >= CATCH_UP_EVERY_S:
            last_catch_up = time.monotonic()
            await ledger.catch_up()  # incremental: what other workers recorded
            return await ledger.get("pagerduty", mention_id) is not None
        return False

    await producer.start()
    await consumer.start()
    consumer.subscribe([topics.inbox_actions])
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=50)
            for records in batches.values():
                for record in records:
                    if record.value is None:
                        continue
                    try:
                        state = decode_state(record.value)
                    except ValidationError:
                        continue  # not ours to judge: the inbox reads the same topic
                    action = event_action(state)
                    if action is None or not await paged(state.id):
                        continue
                    outcome = await deliverer.deliver_alert({"id": state.id, "action": action})
                    if not outcome.ok:
                        error = f"{type(outcome.error).__name__}: {outcome.error}"
                        dead = dead_letter_record(
                            record.value,
                            stage=STAGE,
                            reason="sink:pagerduty",
                            error=error,
                            origin={"topic": topics.inbox_actions},
                        )
                        await produce_until_acked(producer, topics.dead_letter, dead, record.key)
            if batches:
                await commit_unless_rebalancing(consumer, group_id)
    finally:
        await deliverer.sink.close()
        await consumer.stop()
        await producer.stop()
