"""The Faust app (the only place ``faust.App`` is built), its topics, web views and outputs.

Our topics carry raw bytes (``value_serializer="raw"``): the agents decode each
value themselves with :func:`~listener.record.decode_mention`, so a payload that
fails to decode is one event's error (dead-lettered), never a crash inside Faust.

:class:`Outputs` is how the agents write. :meth:`Outputs.deliver` returns only
once Kafka has acknowledged every record of a batch (``acks=all``), which is
what lets :func:`agents.runtime.batches.run_batches` ack a batch once ``deliver``
has returned (see :mod:`agents.runtime.commits` for how offsets are then committed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError
from faust.types import EventT

from agents.observability.metrics import AgentMetrics
from agents.runtime import commits
from agents.runtime.batches import AckAfterDeliveryStream
from agents.settings import AgentSettings
from listener.dead_letter import MAX_RECORD_BYTES, dead_letter_record, reason_of
from listener.retry import until_acknowledged
from listener.settings import KafkaSettings
from listener.topics import TopicNames

log = logging.getLogger(__name__)

SendFn = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any]]]
"""``await send(topic, key, value)`` enqueues a record and returns its delivery future."""


def create_app(settings: AgentSettings) -> faust.App:
    """Build the Faust app for the worker from settings (no agents yet).

    At-least-once choices: offsets are committed by the contiguous-ack rule of
    :mod:`agents.runtime.commits` (installed here), every ``broker_commit_interval``,
    after a ``producer.flush()``; batches are acked only once delivered
    (:class:`~agents.runtime.batches.AckAfterDeliveryStream`); ``stream_wait_empty``
    makes shutdown and rebalances wait for in-flight batches;
    ``producer_acks=-1`` waits for all in-sync replicas;
    ``stream_publish_on_commit`` stays off so sends happen when made.

    Args:
        settings: The worker settings.
    """
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{server}" for server in settings.kafka.bootstrap_list()],
        store="memory://",
        datadir=str(settings.data_dir),
        key_serializer="raw",
        value_serializer="raw",
        processing_guarantee="at_least_once",
        producer_acks=-1,
        stream_wait_empty=True,
        stream_publish_on_commit=False,
        broker_commit_interval=settings.commit_interval_s,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        topic_partitions=settings.kafka.topic_partitions,
        topic_replication_factor=settings.kafka.topic_replication,
        topic_allow_declare=True,
        topic_disable_leader=True,
        broker_credentials=faust_credentials(settings.kafka),
        web_enabled=True,
        web_bind=settings.health.web_host,
        web_port=settings.health.web_port,
        worker_redirect_stdouts=False,
        Stream=AckAfterDeliveryStream,
    )
    commits.install(app)
    return app


def faust_credentials(kafka: KafkaSettings) -> faust.types.auth.CredentialsT | None:
    """Faust's credentials for the ``kafka`` block (None for PLAINTEXT).

    SASL_SSL and SSL carry :meth:`KafkaSettings.ssl_context`; Faust derives the
    protocol from the credentials' type and whether a context is given.
    """
    if kafka.sasl:
        assert kafka.sasl_password is not None  # checked by KafkaSettings
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            ssl_context=kafka.ssl_context(),
            mechanism=kafka.sasl_mechanism,
        )
    if kafka.tls:
        return faust.SSLCredentials(kafka.ssl_context())
    return None


@dataclass(frozen=True, slots=True)
class PipelineTopics:
    """The pipeline's topics bound to one app (raw bytes in and out).

    ``by_copy_text`` and ``by_brand_label`` are the app's own repartition
    topics (``<app id>-by-...-repartition``, like Faust's): they re-key records
    so that the stateful agents get every record of a key (see ``agents/pipeline/tables.py``).
    """

    raw: faust.TopicT
    classified: faust.TopicT
    needs_response: faust.TopicT
    dead_letter: faust.TopicT
    alerts: faust.TopicT
    by_copy_text: faust.TopicT
    by_brand_label: faust.TopicT

    def by_name(self) -> dict[str, faust.TopicT]:
        """Each bound topic under its Kafka name."""
        return {
            t.get_topic_name(): t
            for t in (
                self.raw,
                self.classified,
                self.needs_response,
                self.dead_letter,
                self.alerts,
                self.by_copy_text,
                self.by_brand_label,
            )
        }


def repartition_topic(app_id: str, by: str) -> str:
    """The name of the app's repartition topic re-keying records ``by`` something."""
    return f"{app_id}-by-{by}-repartition"


def bind_topics(app: faust.App, names: TopicNames, partitions: int) -> PipelineTopics:
    """Bind the pipeline's topic names (and the app's repartition topics) to ``app``.

    The topics are marked ``internal`` so that Faust declares (creates if
    missing, with ``partitions``) the ones the agents subscribe to; a startup
    task declares the output topics (see :func:`declare_outputs`).
    """

    def bind(name: str) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=True,
        )

    return PipelineTopics(
        raw=bind(names.raw),
        classified=bind(names.classified),
        needs_response=bind(names.needs_response),
        dead_letter=bind(names.dead_letter),
        alerts=bind(names.alerts),
        by_copy_text=bind(repartition_topic(app.conf.id, "copy-text")),
        by_brand_label=bind(repartition_topic(app.conf.id, "brand-label")),
    )


def declare_outputs(app: faust.App, topics: PipelineTopics) -> None:
    """Add a startup task creating the output topics the agents only write to."""

    async def declare_output_topics() -> None:
        for topic in (topics.needs_response, topics.dead_letter, topics.alerts):
            await topic.maybe_declare()

    app.task(declare_output_topics)


def kafka_sender(topics: PipelineTopics) -> SendFn:
    """The production :data:`SendFn`: ``topic.send`` on the bound topics."""
    by_name = topics.by_name()

    async def send(topic: str, key: bytes | None, value: bytes) -> Awaitable[Any]:
        # Topic.send enqueues into the producer and returns the future that
        # resolves when the broker has acknowledged the record (acks=-1).
        return await by_name[topic].send(key=key, value=value)

    return send


def event_origin(event: EventT) -> dict[str, Any]:
    """Where an event came from: topic, partition and offset."""
    message = event.message
    return {"topic": message.topic, "partition": message.partition, "offset": message.offset}


def event_value(event: EventT) -> bytes:
    """An event's raw value as bytes (empty for a tombstone)."""
    value = event.value
    if value is None:
        return b""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A record an agent produces for one input event."""

    topic: str
    key: bytes | None
    value: bytes
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Failure:
    """An input event (or its output) bound for the dead-letter topic."""

    payload: bytes | None
    key: bytes | None
    reason: str
    error: str
    origin: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, event: EventT, exc: BaseException, reason: str | None = None) -> Failure:
        """The failure of ``event`` with ``exc``; reason defaults to :func:`reason_of`."""
        key = event.key if isinstance(event.key, bytes) else None
        return cls(event_value(event), key, reason or reason_of(exc), f"{exc}", event_origin(event))


class DeadLettersRefused(Exception):
    """Kafka did not acknowledge some dead letters of a batch (they are sent again)."""


class RecordTooLargeError(Exception):
    """A record over :data:`~listener.dead_letter.MAX_RECORD_BYTES`, never sent."""

    def __init__(self, size: int) -> None:
        super().__init__(f"record of {size} bytes is over the {MAX_RECORD_BYTES}-byte limit")


def is_too_large(error: BaseException) -> bool:
    """Whether ``error`` says a record was too large for Kafka (ours or the client's)."""
    return isinstance(error, RecordTooLargeError | MessageSizeTooLargeError)


class Outputs:
    """Produces an agent's records and dead letters and waits for Kafka to acknowledge them.

    Args:
        send: Enqueues one record, returning its delivery future.
        topics: Topic names (for the dead-letter topic).
        metrics: Where dead letters are counted.
        backoff_s: Backoff base and cap between dead-letter delivery attempts
            (:func:`listener.retry.until_acknowledged`).
    """

    def __init__(
        self,
        send: SendFn,
        topics: TopicNames,
        metrics: AgentMetrics,
        backoff_s: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self._send = send
        self._topics = topics
        self._metrics = metrics
        self._backoff_s = backoff_s

    async def deliver(
        self, stage: str, outgoing: Sequence[Outgoing], failures: Sequence[Failure]
    ) -> list[bool]:
        """Produce ``outgoing`` and dead-letter ``failures``; return once all are acknowledged.

        A record Kafka refuses (after the client's own retries) is dead-lettered
        with reason ``"delivery"``; one over :data:`MAX_RECORD_BYTES` is not sent
        but dead-lettered with reason ``"too_large"`` (its payload cut to fit).
        Dead letters are retried with backoff until Kafka takes them: this
        method does not return before every input is accounted for, so the
        caller may then let its input be acked.

        Args:
            stage: The agent's stage name, recorded on dead letters and metrics.
            outgoing: Records to produce.
            failures: Events to dead-letter.

        Returns:
            For each of ``outgoing``, whether it was delivered (else dead-lettered).
        """
        fits = [len(o.value) <= MAX_RECORD_BYTES for o in outgoing]
        sendable = [(o.topic, o.key, o.value) for o, ok in zip(outgoing, fits, strict=True) if ok]
        sent = iter(await self._send_all(sendable))
        errors: list[BaseException | None] = [
            next(sent) if ok else RecordTooLargeError(len(o.value))
            for o, ok in zip(outgoing, fits, strict=True)
        ]
        dead = list(failures)
        for record, error in zip(outgoing, errors, strict=True):
            if error is not None:
                reason = "too_large" if is_too_large(error) else "delivery"
                dead.append(Failure(record.value, record.key, reason, f"{error!r}", record.origin))
        await self._dead_letter(stage, dead)
        return [error is None for error in errors]

    async def dead_letter_batch(self, stage: str, events: Sequence[EventT], exc: Exception) -> bool:
        """Last resort after an unexpected error: dead-letter every event of a batch.

        Never raises; returns whether every event was dead-lettered (if not, the
        caller leaves the batch unacked, and the failure is logged as critical).
        """
        try:
            await self._dead_letter(stage, [Failure.of(event, exc) for event in events])
        except Exception:  # noqa: BLE001 - logged; the caller leaves the batch unacked
            log.critical(
                "could not dead-letter a failed batch of %d events", len(events), exc_info=True
            )
            return False
        return True

    async def _send_all(
        self, records: Sequence[tuple[str, bytes | None, bytes]]
    ) -> list[BaseException | None]:
        """Enqueue every record, then wait for every acknowledgement; one error per record."""
        pending: list[Awaitable[Any] | BaseException] = []
        for topic, key, value in records:
            try:
                pending.append(await self._send(topic, key, value))
            except Exception as exc:  # noqa: BLE001 - reported per record to the caller
                pending.append(exc)
        futures = [p for p in pending if not isinstance(p, BaseException)]
        results = iter(await asyncio.gather(*futures, return_exceptions=True))
        errors: list[BaseException | None] = []
        for p in pending:
            result = p if isinstance(p, BaseException) else next(results)
            if isinstance(result, asyncio.CancelledError):
                raise result
            errors.append(result if isinstance(result, BaseException) else None)
        return errors

    async def _dead_letter(self, stage: str, failures: Sequence[Failure]) -> None:
        if not failures:
            return
        dead_topic = self._topics.dead_letter
        records = []
        for f in failures:
            log.warning(
                "dead-lettering event from %s: stage=%s reason=%s error=%s",
                *(f.origin or "<unknown>", stage, f.reason, f.error),
            )
            value = dead_letter_record(
                f.payload, stage=stage, reason=f.reason, error=f.error, origin=f.origin
            )
            records.append((dead_topic, f.key, value))
        base, cap = self._backoff_s
        async for attempt in until_acknowledged(f"dead letters to {dead_topic}", base, cap):
            with attempt:
                errors = await self._send_all(records)
                records = [r for r, e in zip(records, errors, strict=True) if e is not None]
                if records:
                    first = next(e for e in errors if e is not None)
                    raise DeadLettersRefused(f"{len(records)} refused, first: {first!r}")
        for f in failures:
            self._metrics.dead_letter.labels(stage=stage, reason=f.reason).inc()
