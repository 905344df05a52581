"""The listener's Kafka producer: Mentions to ``mentions.raw``, failures to the dead-letter topic.

Delivery guarantee: at-least-once. The producer is idempotent (``acks="all"``,
``enable_idempotence=True``), so the client's own retries never duplicate a
record within one producer session; a re-run (a replay of the same file, a
connector restart) may produce a record again, which is why every record is
keyed by ``Mention.id`` and every sink is idempotent on it.

Delivery failures are never silent: each send registers an errback, and the
first failure is raised from the next :meth:`MentionProducer.send_mention`,
:meth:`~MentionProducer.send_dead_letter` or :meth:`~MentionProducer.flush`.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaConfigurationError, KafkaError, KafkaTimeoutError

from listener.dead_letter import MAX_RECORD_BYTES, dead_letter_record
from listener.errors import FatalError, MentionError, RetryableError
from listener.kafka_admin import check_security
from listener.record import Mention, encode_mention
from listener.settings import KafkaSettings
from listener.topics import TopicNames

log = logging.getLogger(__name__)

LINGER_MS = 5
"""Batch for a few milliseconds: a large throughput gain for a latency cost nobody sees."""


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The kafka-python ``KafkaProducer`` keyword arguments for these settings.

    The one place Kafka producer configuration is decided. Compression is off
    (no native codec dependency); retries are unbounded in count but bounded in
    time by ``delivery_timeout_ms``, so a dead broker shows up as a failure.

    Args:
        kafka: The Kafka block of the process settings.

    Returns:
        A dict to pass as ``KafkaProducer(**config)``.
    """
    delivery_ms = int(kafka.delivery_timeout_s * 1000)
    return {
        **kafka.kafka_python(),
        "client_id": kafka.client_id,
        "acks": "all",
        "enable_idempotence": True,
        "retries": 2_147_483_647,
        "max_in_flight_requests_per_connection": 5,
        "linger_ms": LINGER_MS,
        "compression_type": None,
        "delivery_timeout_ms": delivery_ms,
        "request_timeout_ms": max(1000, min(30_000, delivery_ms - LINGER_MS)),
        "max_block_ms": delivery_ms,
        "bootstrap_timeout_ms": int(kafka.bootstrap_timeout_s * 1000),
    }


class ProducerClient(Protocol):
    """The part of ``kafka.KafkaProducer`` that MentionProducer uses."""

    def send(self, topic: str, value: bytes | None = ..., key: bytes | None = ...) -> Any:
        """Queue one record; returns a future with ``add_errback``."""

    def flush(self, timeout: float | None = ...) -> None:
        """Block until every queued record is acknowledged or failed."""

    def close(self, timeout: float | None = ...) -> None:
        """Flush and release the client."""


def _classify(exc: BaseException, what: str) -> MentionError:
    """Map a kafka-python exception to one of the project's error kinds."""
    if isinstance(exc, MentionError):
        return exc
    if isinstance(exc, KafkaConfigurationError):
        return FatalError(f"{what}: Kafka configuration rejected: {exc}")
    if isinstance(exc, KafkaError) and not exc.retriable:
        return FatalError(f"{what}: {type(exc).__name__}: {exc}")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


class MentionProducer:
    """Produces Mentions to ``mentions.raw`` (keyed by id) and failures to the dead-letter topic.

    Use it as a context manager: leaving the block normally flushes (raising any
    delivery failure); leaving it with an exception just closes.

    Args:
        kafka: Kafka settings (bootstrap servers, topic prefix, timeouts).
        client: A ready client, instead of connecting a ``KafkaProducer``
            (for unit tests).

    Raises:
        RetryableError: No broker answered within ``kafka.bootstrap_timeout_s``.
        FatalError: The configuration was rejected.
    """

    def __init__(self, kafka: KafkaSettings, *, client: ProducerClient | None = None) -> None:
        self._settings = kafka
        self.topics: TopicNames = kafka.topics
        self._failures: list[tuple[str, bytes | None, BaseException]] = []
        self._lock = threading.Lock()
        self.sent = 0
        if client is None:
            check_security(kafka, kafka.bootstrap_timeout_s)  # wrong credentials: say so now
            try:
                client = KafkaProducer(**producer_config(kafka))
            except KafkaTimeoutError as exc:
                raise RetryableError(
                    f"Kafka unreachable: no broker at {kafka.bootstrap_servers} answered "
                    f"within {kafka.bootstrap_timeout_s:g}s"
                ) from exc
            except KafkaError as exc:
                what = f"cannot connect to Kafka at {kafka.bootstrap_servers}"
                raise _classify(exc, what) from exc
        self._client = client
        self._closed = False

    def send_mention(self, mention: Mention, *, stage: str = "produce") -> bool:
        """Queue ``mention`` for ``mentions.raw``, keyed by its id.

        A Mention whose record would pass :data:`~listener.dead_letter.MAX_RECORD_BYTES`
        (Kafka would refuse it) is dead-lettered instead, reason ``too_large``,
        its payload cut to fit and its size recorded; the caller goes on.

        Args:
            mention: The post.
            stage: Who produces it (the dead letter's stage: ``replay``, a connector).

        Returns:
            True if queued for ``mentions.raw``, False if dead-lettered as too large.

        Raises:
            RetryableError: An earlier record failed with a transient error, or
                the client could not queue this one in time.
            FatalError: An earlier record failed with a non-retriable error.
        """
        value = encode_mention(mention)
        if len(value) > MAX_RECORD_BYTES:
            self.send_dead_letter(
                value,
                stage=stage,
                reason="too_large",
                error=f"record of {len(value)} bytes is over the {MAX_RECORD_BYTES}-byte limit",
                key=mention.id,
            )
            return False
        self._send(self.topics.raw, value, mention.id.encode("utf-8"))
        return True

    def send_dead_letter(
        self,
        payload: bytes | str | None,
        *,
        stage: str,
        reason: str,
        error: str,
        origin: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        """Queue a dead-letter record (see :func:`listener.dead_letter.dead_letter_record`).

        Args:
            payload: What failed, kept whole.
            stage: Where it failed (``"replay"``, a connector name, ...).
            reason: Short bounded reason code.
            error: Human-readable detail.
            origin: Where the payload came from (file and line, topic and offset).
            key: Record key, e.g. the Mention id when one is known.

        Raises:
            RetryableError: See :meth:`send_mention`.
            FatalError: See :meth:`send_mention`.
        """
        value = dead_letter_record(payload, stage=stage, reason=reason, error=error, origin=origin)
        self._send(self.topics.dead_letter, value, None if key is None else key.encode("utf-8"))

    def _send(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.raise_failures()
        try:
            future = self._client.send(topic, value=value, key=key)
        except KafkaError as exc:
            raise _classify(exc, f"cannot queue a record for {topic}") from exc
        future.add_errback(self._record_failure, topic, key)
        self.sent += 1

    def _record_failure(self, topic: str, key: bytes | None, exc: BaseException) -> None:
        # Runs on the client's I/O thread.
        with self._lock:
            self._failures.append((topic, key, exc))

    @property
    def failed(self) -> int:
        """How many records have failed delivery so far."""
        with self._lock:
            return len(self._failures)

    def raise_failures(self) -> None:
        """Raise the first delivery failure seen so far, if any.

        Raises:
            RetryableError: The failure is transient (timeout, broker unavailable).
            FatalError: The failure is permanent (authorisation, record too large).
        """
        with self._lock:
            if not self._failures:
                return
            count = len(self._failures)
            topic, key, exc = self._failures[0]
        name = key.decode("utf-8", "replace") if key is not None else "<no key>"
        more = f" (and {count - 1} more)" if count > 1 else ""
        raise _classify(exc, f"delivery to {topic} failed for key {name}{more}") from exc

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged, then raise any failure.

        Args:
            timeout: Seconds to wait; defaults to the delivery timeout plus a margin.

        Raises:
            RetryableError: Records were still unacknowledged at the deadline,
                or one failed with a transient error.
            FatalError: A record failed with a non-retriable error.
        """
        wait = self._settings.delivery_timeout_s + 5.0 if timeout is None else timeout
        try:
            self._client.flush(timeout=wait)
        except KafkaTimeoutError as exc:
            raise RetryableError(
                f"Kafka did not acknowledge every record within {wait:g}s"
            ) from exc
        self.raise_failures()

    def close(self, timeout: float | None = None) -> None:
        """Release the client, waiting up to ``timeout`` seconds for queued records.

        Safe to call twice. Never raises for delivery problems: call
        :meth:`flush` first to learn about those.
        """
        if self._closed:
            return
        self._closed = True
        wait = self._settings.delivery_timeout_s + 5.0 if timeout is None else timeout
        try:
            self._client.close(timeout=wait)
        except KafkaError as exc:
            log.warning("Kafka producer did not close cleanly: %s", exc)

    def __enter__(self) -> MentionProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close(timeout=None if exc_type is None else 1.0)
