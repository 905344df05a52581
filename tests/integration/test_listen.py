"""Local Jetstream-shaped websocket server -> ``listen`` -> real Kafka -> mentions.raw."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from contract.servers import JetstreamHarness
from kafka import KafkaConsumer

from integration.helpers import start_listen_on_jetstream, stop_listen
from listener.cursors import CursorStore
from listener.record import Mention, decode_mention
from listener.topics import TopicNames

pytestmark = pytest.mark.timeout(120)
MATCHING = 4  # posts in tests/fixtures/bluesky/jetstream_events.json that mention acme


def consume(bootstrap: str, topic: str, group_id: str, want: int) -> list[Mention]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset="earliest",
        consumer_timeout_ms=30_000,
    )
    out: list[Mention] = []
    try:
        for record in consumer:
            out.append(decode_mention(record.value))
            if len(out) >= want:
                break
    finally:
        consumer.close()
    return out


def test_listen_jetstream_to_kafka(
    tmp_path: Path, kafka_bootstrap: str, topics: TopicNames, group_id: str
) -> None:
    harness = JetstreamHarness()

    async def go() -> tuple[int, list[Mention]]:
        await harness.start()
        try:
            task = start_listen_on_jetstream(tmp_path, harness.url, kafka_bootstrap, topics)
            got = await asyncio.to_thread(consume, kafka_bootstrap, topics.raw, group_id, MATCHING)
            return await stop_listen(task), got
        finally:
            await harness.stop()

    status, got = asyncio.run(go())
    assert status == 0
    assert sorted(m.id for m in got) == sorted(
        f"bluesky:{e['did']}/{e['commit']['rkey']}"
        for e in harness.events
        if isinstance(e, dict)
        and e.get("kind") == "commit"
        and "acme" in e["commit"].get("record", {}).get("text", "").lower()
    )
    assert all(m.brands == ("acme",) for m in got)
    newest = max(e["time_us"] for e in harness.events if isinstance(e, dict))
    assert CursorStore(tmp_path / "cursors").load("bluesky") == str(newest)
    dead = KafkaConsumer(
        topics.dead_letter,
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id + "-dl",
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    try:
        reasons = {orjson.loads(r.value)["reason"] for r in dead}
    finally:
        dead.close()
    assert {"decode", "validation"} <= reasons
