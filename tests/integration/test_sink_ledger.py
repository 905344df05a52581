"""The Kafka-backed sink ledger on the suite's real broker: durable across restarts."""

from __future__ import annotations

import asyncio

from agents.delivery.ledger import KafkaLedger, ledger_topic
from listener.topics import TopicNames


def test_ledger_survives_a_restart_and_catches_up(kafka_bootstrap: str, topics: TopicNames) -> None:
    topic = ledger_topic(topics.prefix)
    first = KafkaLedger([kafka_bootstrap], topic, partitions=2)
    second = KafkaLedger([kafka_bootstrap], topic, partitions=2)
    try:
        first.start()
        second.start()
        asyncio.run(first.record("jira_sm", "mastodon:1", "SD-1"))
        asyncio.run(first.record("freshdesk", "mastodon:1", "42"))
        assert asyncio.run(second.get("jira_sm", "mastodon:1")) is None
        asyncio.run(second.catch_up())  # what a rebalance triggers
        assert asyncio.run(second.get("jira_sm", "mastodon:1")) == "SD-1"
    finally:
        first.close()
        second.close()
    restarted = KafkaLedger([kafka_bootstrap], topic)
    try:
        restarted.start()
        assert asyncio.run(restarted.get("freshdesk", "mastodon:1")) == "42"
        assert len(restarted) == 2
    finally:
        restarted.close()
