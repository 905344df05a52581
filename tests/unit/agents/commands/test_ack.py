"""``brand-listener ack``: id parsing, record format (as the SLA tracker reads it), flags."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from agents.commands import ack
from agents.commands.cli import build_parser
from agents.observability.metrics import create
from agents.queue.sla import QueueTracker
from listener.topics import TopicNames


class _Future:
    def get(self, timeout: float | None = None) -> None:
        return None


class _Client:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.flushed = False

    def send(self, topic: str, key: bytes, value: bytes) -> _Future:
        self.sent.append((topic, key, value))
        return _Future()

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True


def test_parse_ids_reads_stdin_dedups_and_rejects_non_ids() -> None:
    stdin = io.StringIO("hn:2\n\n# a comment\nmastodon:9\n")
    assert ack.parse_ids(["hn:1", "-", "hn:1"], stdin) == ["hn:1", "hn:2", "mastodon:9"]
    assert ack.parse_ids(["bsky:at://did:plc:x/app.bsky.feed.post/3k"]) == [
        "bsky:at://did:plc:x/app.bsky.feed.post/3k"
    ]
    for bad in ("12345", ":1", "hn:"):
        with pytest.raises(ValueError, match="not a Mention id"):
            ack.parse_ids([bad])


def test_send_acks_keys_by_id_and_the_sla_tracker_reads_the_time() -> None:
    topics = TopicNames("p.")
    client = _Client()
    count = ack.send_acks(client, topics, ["hn:1", "hn:2"], by="dana", clock=lambda: 1234.5)
    assert count == 2 and client.flushed
    assert [(t, k) for t, k, _ in client.sent] == [
        ("p.mentions.acks", b"hn:1"),
        ("p.mentions.acks", b"hn:2"),
    ]
    assert orjson.loads(client.sent[0][2]) == {"acked_at": 1234.5, "by": "dana"}
    assert orjson.loads(ack.ack_value(5.0)) == {"acked_at": 5.0}
    table: dict[bytes, Any] = {}
    tracker = QueueTracker(table, create(CollectorRegistry()), topics)
    tracker.on_record(topics.acks, b"hn:1", client.sent[0][2], 0, ts=99.0)
    assert orjson.loads(table[b"hn:1"]) == {"acked_at": 1234.5, "p": 0}  # not the Kafka ts


def test_flags_win_over_the_worker_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("AGENTS_TOPIC_PREFIX", "acme.")  # a flat name of earlier releases
    args = build_parser().parse_args(["ack", "hn:1"])
    assert args.func is ack.run_ack
    settings = ack.kafka_settings(args)
    assert (settings.bootstrap_servers, settings.topics.acks) == (
        "kafka:9092",
        "acme.mentions.acks",
    )
    args = build_parser().parse_args(
        ["ack", "hn:1", "--bootstrap", "h:1", "--topic-prefix", "", "--by", "x"]
    )
    settings = ack.kafka_settings(args)
    assert (settings.bootstrap_servers, settings.topics.acks, args.by) == (
        "h:1",
        "mentions.acks",
        "x",
    )


def test_a_bad_id_exits_2_without_touching_kafka(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["ack", "nocolon", "--bootstrap", "127.0.0.1:1"])
    assert ack.run_ack(args) == ack.EXIT_USAGE
    assert "not a Mention id" in capsys.readouterr().err
