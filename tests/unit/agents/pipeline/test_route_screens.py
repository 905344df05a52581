"""The route stage with author vetting and copy dedup: signals added, copies not queued."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from agents.observability.metrics import create
from agents.pipeline.dedup import CopyDedup
from agents.pipeline.route import DedupStage, RouteStage
from agents.pipeline.vetting import AuthorVetter
from agents.runtime.app import Outputs
from listener.record import LABELS, Author, Classification, Mention, encode_mention
from listener.topics import TopicNames

_IDS = itertools.count()
TOPICS = TopicNames(prefix="unit.")
TEXT = "@acme stole my money, never buy from them https://t.co/{n}"


class Message:
    def __init__(self) -> None:
        self.topic, self.partition, self.offset = TOPICS.classified, 0, next(_IDS)


class Event:
    def __init__(self, value: bytes, key: bytes | None = None) -> None:
        self.key, self.value, self.message = key, value, Message()


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


COPY_TOPIC = "unit-app-by-copy-text-repartition"


class Screens:
    """The route and dedup stages joined as Kafka joins them: copy-text records become events."""

    def __init__(self, sender: Any, route: RouteStage, dedup: DedupStage) -> None:
        self.sender, self.route, self.dedup = sender, route, dedup

    async def process(self, events: list[Any]) -> None:
        seen = len(self.sender.on(COPY_TOPIC))
        await self.route.process(events)
        forwarded = [Event(value, key) for key, value in self.sender.on(COPY_TOPIC)[seen:]]
        if forwarded:
            await self.dedup.process(forwarded)


def _stage(sender: Any) -> tuple[Screens, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = create(registry)
    outputs = Outputs(sender, TOPICS, metrics)
    dedup = CopyDedup()
    route = RouteStage(
        outputs, metrics, TOPICS, 0.5, vetter=AuthorVetter(), dedup=dedup, dedup_topic=COPY_TOPIC
    )
    return Screens(sender, route, DedupStage(dedup, outputs, metrics, TOPICS)), registry


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


def test_copies_meet_on_one_key_whichever_author_posts_them(sender: Any) -> None:
    """The copy-text topic is keyed by brands and text, so one table entry sees every copy."""
    stage, _ = _stage(sender)
    asyncio.run(stage.route.process([event(n) for n in (30, 31)]))
    keys = [k for k, _ in sender.on(COPY_TOPIC)]
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0].startswith(b"acme|")
    assert sender.on(TOPICS.needs_response) == [], "nothing reaches the queue before dedup"
