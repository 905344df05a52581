"""MentionProducer against an in-memory client (the real broker is in tests/integration)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError, NotLeaderForPartitionError
from kafka.future import Future

from listener.dead_letter import MAX_RECORD_BYTES
from listener.errors import FatalError, RetryableError
from listener.producer import LINGER_MS, MentionProducer, producer_config
from listener.record import Mention, decode_mention, encode_mention
from listener.settings import KafkaSettings


class _FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, Future]] = []
        self.flush_error: Exception | None = None
        self.closed: list[float | None] = []

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Any:
        future = Future()
        self.sent.append((topic, value, key, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        if self.flush_error is not None:
            raise self.flush_error

    def close(self, timeout: float | None = None) -> None:
        self.closed.append(timeout)


def _settings(**kw: Any) -> KafkaSettings:
    return KafkaSettings(topic_prefix="t1.", **kw)


def _mention(native_id: str = "3kx") -> Mention:
    return Mention.create(
        source="bluesky",
        native_id=native_id,
        text="@Flyaway where is my bag",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_config_is_idempotent_and_bounded() -> None:
    cfg = producer_config(
        KafkaSettings(bootstrap_servers="a:1, b:2", delivery_timeout_s=20, bootstrap_timeout_s=3)
    )
    assert cfg["bootstrap_servers"] == ["a:1", "b:2"]
    assert cfg["acks"] == "all"
    assert cfg["enable_idempotence"] is True
    assert cfg["retries"] > 0
    assert cfg["linger_ms"] == LINGER_MS
    assert cfg["compression_type"] is None
    assert cfg["delivery_timeout_ms"] == 20_000
    assert cfg["request_timeout_ms"] + cfg["linger_ms"] <= cfg["delivery_timeout_ms"]
    assert cfg["bootstrap_timeout_ms"] == 3000


def test_send_mention_is_keyed_by_id_to_raw() -> None:
    client = _FakeClient()
    producer = MentionProducer(_settings(), client=client)
    producer.send_mention(_mention())
    topic, value, key, _ = client.sent[0]
    assert topic == "t1.mentions.raw"
    assert key == b"bluesky:3kx"
    assert value is not None
    decoded = decode_mention(value)
    assert (decoded.id, decoded.text) == ("bluesky:3kx", "@Flyaway where is my bag")
    assert producer.sent == 1


def test_an_oversized_mention_is_dead_lettered_cut_to_fit_and_the_producer_goes_on() -> None:
    client = _FakeClient()
    producer = MentionProducer(_settings(), client=client)
    huge = Mention.create(source="replay", native_id="big", text="<script>x</script>" * 120_000)
    assert producer.send_mention(huge, stage="replay") is False
    assert producer.send_mention(_mention()) is True
    (dead_topic, value, key, _), (raw_topic, _, _, _) = client.sent
    assert (dead_topic, raw_topic, key) == (
        "t1.mentions.dead-letter",
        "t1.mentions.raw",
        b"replay:big",
    )
    assert value is not None and len(value) <= MAX_RECORD_BYTES
    letter = orjson.loads(value)
    assert (letter["stage"], letter["reason"]) == ("replay", "too_large")
    assert letter["payload_truncated"] is True
    assert letter["payload_bytes"] == len(encode_mention(huge)) > MAX_RECORD_BYTES
    assert letter["payload"].startswith('{"')


def test_send_dead_letter() -> None:
    client = _FakeClient()
    producer = MentionProducer(_settings(), client=client)
    producer.send_dead_letter(
        b"oops", stage="replay", reason="decode", error="not JSON", origin={"line": 3}
    )
    topic, value, key, _ = client.sent[0]
    assert topic == "t1.mentions.dead-letter"
    assert key is None
    assert value is not None
    record = orjson.loads(value)
    assert record["payload"] == "oops"
    assert (record["reason"], record["origin"]) == ("decode", {"line": 3})


def test_retriable_delivery_failure_surfaces_at_flush_and_next_send() -> None:
    client = _FakeClient()
    producer = MentionProducer(_settings(), client=client)
    producer.send_mention(_mention("a"))
    producer.send_mention(_mention("b"))
    client.sent[0][3].success(None)
    client.sent[1][3].failure(NotLeaderForPartitionError("leader moved"))
    assert producer.failed == 1
    with pytest.raises(RetryableError, match=r"t1\.mentions\.raw.*bluesky:b"):
        producer.flush()
    with pytest.raises(RetryableError):
        producer.send_mention(_mention("c"))
    assert len(client.sent) == 2


def test_permanent_delivery_failure_is_fatal() -> None:
    client = _FakeClient()
    producer = MentionProducer(_settings(), client=client)
    producer.send_mention(_mention("a"))
    producer.send_mention(_mention("b"))
    client.sent[0][3].failure(MessageSizeTooLargeError("too big"))
    client.sent[1][3].failure(MessageSizeTooLargeError("too big"))
    with pytest.raises(FatalError, match=r"bluesky:a \(and 1 more\).*MessageSizeTooLarge"):
        producer.flush()


def test_flush_timeout_is_retryable() -> None:
    client = _FakeClient()
    client.flush_error = KafkaTimeoutError("Timeout waiting for future")
    producer = MentionProducer(_settings(), client=client)
    with pytest.raises(RetryableError, match="within 2s"):
        producer.flush(timeout=2)


def test_context_manager_flushes_then_closes_once() -> None:
    client = _FakeClient()
    with MentionProducer(_settings(delivery_timeout_s=10), client=client) as producer:
        producer.send_mention(_mention())
        client.sent[0][3].success(None)
    assert client.closed == [15.0]
    producer.close()
    assert client.closed == [15.0]


def test_context_manager_on_error_closes_quickly_without_flushing() -> None:
    client = _FakeClient()
    client.flush_error = KafkaTimeoutError("would hang")
    with pytest.raises(KeyError):
        with MentionProducer(_settings(), client=client):
            raise KeyError("boom")
    assert client.closed == [1.0]
