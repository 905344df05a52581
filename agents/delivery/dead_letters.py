"""Producing a dead letter that must not be lost: retry until Kafka acknowledges it.

Used by the plain aiokafka consumers (:mod:`agents.delivery.loop`,
:mod:`agents.delivery.alerts`), which commit an input's offset only after its
dead letter is acknowledged. The Faust agents batch theirs through
:class:`agents.runtime.app.Outputs` instead.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from listener.retry import until_acknowledged

log = logging.getLogger(__name__)


class DeadLetterProducer(Protocol):
    """The part of ``aiokafka.AIOKafkaProducer`` used here."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        """Produce one record; return once the broker has acknowledged it."""


async def produce_until_acked(
    producer: DeadLetterProducer,
    topic: str,
    value: bytes,
    key: bytes | None,
    *,
    backoff_s: tuple[float, float] = (0.5, 30.0),
) -> None:
    """Produce ``value`` to ``topic``, retrying until it is acknowledged (the project's backoff).

    Never gives up: the caller's offset waits on this record, so returning
    without it would lose the input.

    Args:
        producer: A started producer (``acks="all"``).
        topic: The dead-letter topic.
        value: The record, from :func:`listener.dead_letter.dead_letter_record`.
        key: The input's key, kept so the dead letter lands beside its siblings.
        backoff_s: Backoff base and cap between attempts.
    """
    async for attempt in until_acknowledged(f"dead letter to {topic}", *backoff_s):
        with attempt:
            await producer.send_and_wait(topic, value, key=key)
