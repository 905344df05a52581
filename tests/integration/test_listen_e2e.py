"""End to end: Jetstream-shaped websocket -> ``listen`` -> real Kafka -> a real worker
subprocess with the real model -> ``mentions.needs-response``.

The ids that must arrive are computed here from what ``listen`` produced to
``mentions.raw``, with the same model and :func:`agents.pipeline.rules.route`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from contract.servers import JetstreamHarness

from integration.helpers import (
    Tail,
    Worker,
    needing_response,
    running,
    start_listen_on_jetstream,
    stop_listen,
)
from listener.record import decode_mention
from listener.topics import TopicNames

pytestmark = pytest.mark.timeout(180)
MATCHING = 4  # acme posts in tests/fixtures/bluesky/jetstream_events.json


def test_jetstream_to_needs_response(
    tmp_path: Path,
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
    classifier,  # type: ignore[no-untyped-def]
) -> None:
    started = time.monotonic()
    harness = JetstreamHarness()
    worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
    raw, queue = Tail(kafka_bootstrap, topics.raw), Tail(kafka_bootstrap, topics.needs_response)

    async def go() -> int:
        await harness.start()
        try:
            task = start_listen_on_jetstream(tmp_path, harness.url, kafka_bootstrap, topics)
            await asyncio.to_thread(raw.until, lambda: len(raw.records) >= MATCHING, 30)
            return await stop_listen(task)
        finally:
            await harness.stop()

    try:
        with running(worker):
            assert asyncio.run(go()) == 0
            posts = [decode_mention(value) for _, value in raw.records]
            assert len(posts) == MATCHING
            expected = needing_response(classifier, posts)
            assert expected, "the fixture holds a complaint and a question"
            queue.until(lambda: set(queue.ids()) >= expected, timeout=40, quiet_s=1.0)
            routed = [orjson.loads(v) for _, v in queue.records]
    finally:
        raw.close()
        queue.close()
    assert {r["id"] for r in routed} == expected, worker.tail()
    assert all(r["routing"]["needs_response"] and r["classification"] for r in routed)
    assert {r["classification"]["label"] for r in routed} <= {"complaint", "question"}
    assert time.monotonic() - started < 60
