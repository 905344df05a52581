"""``brand-listener ack`` against the suite's real Kafka broker."""

from __future__ import annotations

import orjson
import pytest

from agents.commands.cli import main
from integration.helpers import read_all
from listener.topics import TopicNames


def test_ack_writes_keyed_acks_to_the_acks_topic(
    kafka_bootstrap: str, topics: TopicNames, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["ack", "hn:41", "mastodon:7", "--by", "lead"]
    code = main([*argv, "--bootstrap", kafka_bootstrap, "--topic-prefix", topics.prefix])
    assert code == 0, capsys.readouterr().err
    assert f"acknowledged 2 item(s) on {topics.acks}" in capsys.readouterr().out
    records = {key: orjson.loads(value) for key, value in read_all(kafka_bootstrap, topics.acks)}
    assert set(records) == {b"hn:41", b"mastodon:7"}
    assert all(body["by"] == "lead" and body["acked_at"] > 1.7e9 for body in records.values())


def test_ack_without_a_broker_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ack", "hn:1", "--bootstrap", "127.0.0.1:1", "--connect-timeout", "1"])
    assert code == 3
    assert "Kafka" in capsys.readouterr().err
