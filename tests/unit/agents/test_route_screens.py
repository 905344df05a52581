"""The route stage with author vetting and copy dedup: signals added, copies not queued."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from agents.app import Outputs
from agents.dedup import CopyDedup
from agents.metrics import create
from agents.route import RouteStage
from agents.vetting import AuthorVetter
from listener.record import LABELS, Author, Classification, Mention, encode_mention
from listener.topics import TopicNames

_IDS = itertools.count()
TOPICS = TopicNames(prefix="unit.")
TEXT = "@acme stole my money, never buy from them https://t.co/{n}"


class Message:
    def __init__(self) -> None:
        self.topic, self.partition, self.offset = TOPICS.classified, 0, next(_IDS)


class Event:
    def __init__(self, value: bytes) -> None:
        self.key, self.value, self.message = None, value, Message()


def event(n: int) -> Any:
    m = Mention.create(
        source="t",
        native_id=str(n),
        text=TEXT.format(n=n),
        brands=("acme",),
        author=Author(id=f"u{n}"),
    )
    scores = {name: (0.9 if name == "complaint" else 0.1 / 3) for name in LABELS}
    label = Classification(label="complaint", scores=scores, model="kw@1")
    return Event(encode_mention(m.model_copy(update={"classification": label})))


def _stage(sender: Any) -> tuple[RouteStage, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = create(registry)
    outputs = Outputs(sender, TOPICS, metrics)
    stage = RouteStage(outputs, metrics, TOPICS, 0.5, vetter=AuthorVetter(), dedup=CopyDedup())
    return stage, registry


def _latest(sender: Any) -> dict[bytes | None, dict[str, Any]]:
    """The queue as a compacted topic (or a keyed consumer) holds it: the last value per key."""
    return {k: orjson.loads(v) for k, v in sender.on(TOPICS.needs_response)}


def test_vetting_signals_and_one_queue_item_per_campaign(sender: Any) -> None:
    stage, registry = _stage(sender)
    asyncio.run(stage.process([event(n) for n in range(4)]))
    records = sender.on(TOPICS.needs_response)
    assert [k for k, _ in records] == [b"t:0", b"t:0"], "the original, then one count update"
    first = orjson.loads(records[0][1])
    assert first["id"] == "t:0" and "duplicates" not in first["signals"]
    assert first["signals"]["vetting"]["score"] == 0 and first["signals"]["vetting"]["posts"] == 1
    queue = _latest(sender)
    assert list(queue) == [b"t:0"]
    assert queue[b"t:0"]["signals"]["duplicates"] == {"of": "t:0", "count": 4}
    assert queue[b"t:0"]["stage_times"] == first["stage_times"], "queued time is the original's"
    assert registry.get_sample_value("brandlistener_duplicates_total", {"label": "complaint"}) == 3
    assert (
        registry.get_sample_value(
            "brandlistener_needs_response_total",
            {"priority": "P2", "team": "support", "label": "complaint"},
        )
        == 1
    ), "a count update is not a new queue item"


def test_a_copy_in_a_later_batch_updates_the_queued_original(sender: Any) -> None:
    stage, _ = _stage(sender)
    asyncio.run(stage.process([event(10)]))
    copies = [event(n) for n in (11, 12)]
    asyncio.run(stage.process(copies))
    records = sender.on(TOPICS.needs_response)
    assert [k for k, _ in records] == [b"t:10", b"t:10"]
    assert orjson.loads(records[1][1])["signals"]["duplicates"] == {"of": "t:10", "count": 3}
    asyncio.run(stage.process([event(13)]))
    assert _latest(sender)[b"t:10"]["signals"]["duplicates"]["count"] == 4


def test_a_refused_count_update_is_dead_lettered_not_lost(sender: Any) -> None:
    """At-least-once: the copy's event is accounted for only once its update is in Kafka."""
    stage, _ = _stage(sender)
    asyncio.run(stage.process([event(20)]))
    sender.refuse[TOPICS.needs_response] = 1
    asyncio.run(stage.process([event(21)]))
    dead = [orjson.loads(v) for _, v in sender.on(TOPICS.dead_letter)]
    assert len(dead) == 1 and dead[0]["reason"] == "delivery"
