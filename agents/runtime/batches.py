"""The agent loops: take a batch (or an event), process it, ack it only once its output is durable.

Faust's ``Stream.take_events`` acks a batch in the ``finally`` after its
``yield``: when the loop body asks for the next batch, but also when the
generator is closed because the body was cancelled or raised (a stop, a
rebalance). :class:`AckAfterDeliveryStream` (the app's ``Stream`` class) acks
an event only after :func:`run_batches` marked it delivered, so a batch whose
output Kafka never acknowledged stays unacked: it is not committed, and the
next owner of its partition reads it again.

:func:`run_batches` is the loop every batch agent runs: the stage's
``process`` returns once Kafka has its output and dead letters; an unexpected
error dead-letters the whole batch with its reason; only then is the batch
marked delivered. If even the dead letters cannot be written, the batch stays
unacked: its partitions' commits stop there (lag grows) rather than skip it,
and once later records are acked the consumer reads it again
(:data:`agents.runtime.commits.HOLE_REREAD_AFTER_S`).
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

import faust
from faust.types import EventT, Message, StreamT

from agents.runtime.commits import in_flight_of

log = logging.getLogger(__name__)

Process = Callable[[Sequence[EventT]], Awaitable[object]]
"""A stage's batch handler: returns once its output (and dead letters) are in Kafka."""

DeadLetterBatch = Callable[[str, Sequence[EventT], Exception], Awaitable[bool]]
"""Dead-letters a failed batch with the error; returns whether Kafka took every record."""


class AckAfterDeliveryStream(faust.Stream):
    """A Faust stream whose events are acked only once marked delivered.

    Two guards: this stream's :meth:`ack` (the path of ``take_events`` and of
    manual acks) ignores events not marked; and :meth:`mark_delivered` tells
    the app's :class:`~agents.runtime.commits.ContiguousCommitConsumer`, which
    refuses the acks Faust sends for events it skipped (straight through
    ``Event.ack``, around this class).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delivered: weakref.WeakSet[Message] = weakref.WeakSet()

    def mark_delivered(self, events: Iterable[EventT]) -> None:
        """Let ``events`` be acked: their output is durable."""
        messages = [event.message for event in events]
        self._delivered.update(messages)
        tell_consumer = getattr(self.app.consumer, "mark_delivered", None)
        if tell_consumer is not None:
            tell_consumer(messages)

    async def ack(self, event: EventT) -> bool:
        """Ack ``event`` if it was marked delivered; otherwise leave it for redelivery."""
        if event.message not in self._delivered:
            return False
        self._delivered.discard(event.message)
        return await super().ack(event)


async def run_batches(
    stream: StreamT,
    *,
    stage: str,
    process: Process,
    dead_letter: DeadLetterBatch,
    batch_size: int,
    within_s: float,
    after: Callable[[], None] | None = None,
) -> None:
    """Run ``process`` over ``stream`` in batches, acking each only after it is durable.

    Args:
        stream: The agent's stream (an :class:`AckAfterDeliveryStream`).
        stage: The stage name, for logs and dead letters.
        process: The stage's batch handler.
        dead_letter: Where a batch goes when ``process`` raises.
        batch_size: Most events per batch.
        within_s: Longest wait for a batch to fill.
        after: Called after each batch (e.g. a table sweep; the agent is its only writer).
    """
    ours = cast(AckAfterDeliveryStream, stream)
    in_flight = in_flight_of(ours.app)
    async for events in ours.take_events(batch_size, within=within_s):
        with in_flight.track() if in_flight is not None else contextlib.nullcontext():
            delivered = True
            try:
                await process(events)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not end the agent
                log.exception("%s batch of %d failed unexpectedly", stage, len(events))
                delivered = await dead_letter(stage, events, exc)
            if delivered:
                ours.mark_delivered(events)
            else:
                log.critical(
                    "%s: %d events neither processed nor dead-lettered; left unacked "
                    "(read again once later records of their partitions are acked)",
                    *(stage, len(events)),
                )
        if after is not None:
            after()


async def run_events(
    stream: StreamT,
    *,
    stage: str,
    handle: Callable[[EventT], object],
    dead_letter: DeadLetterBatch,
) -> None:
    """Run ``handle`` on each event of ``stream``, acking it only once handled or dead-lettered.

    For agents that keep per-event state in a table (the table's changelog
    record goes to the event's partition, so they cannot batch). Acked by hand:
    Faust's own per-event ack also runs when the loop is cancelled mid-event.

    Args:
        stream: The agent's stream (an :class:`AckAfterDeliveryStream`).
        stage: The stage name, for logs and dead letters.
        handle: Takes one event (synchronously: no await between read and ack).
        dead_letter: Where an event goes when ``handle`` raises.
    """
    manual = cast(AckAfterDeliveryStream, cast(faust.Stream, stream).noack())
    async for event in manual.events():
        try:
            handle(event)
        except Exception as exc:  # noqa: BLE001 - one bad record must not end the agent
            log.exception("%s could not take the record at %r", stage, event.key)
            if not await dead_letter(stage, [event], exc):
                continue  # left unacked: read again after a restart
        manual.mark_delivered([event])
        await manual.ack(event)
