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


def test_vetting_signals_and_one_queue_item_per_campaign(sender: Any) -> None:
    registry = CollectorRegistry()
    metrics = create(registry)
    outputs = Outputs(sender, TOPICS, metrics)
    stage = RouteStage(outputs, metrics, TOPICS, 0.5, vetter=AuthorVetter(), dedup=CopyDedup())
    asyncio.run(stage.process([event(n) for n in range(4)]))
    queued = [orjson.loads(v) for _, v in sender.on(TOPICS.needs_response)]
    assert len(queued) == 1 and queued[0]["id"] == "t:0"
    assert (
        queued[0]["signals"]["vetting"]["score"] == 0
        and queued[0]["signals"]["vetting"]["posts"] == 1
    )
    assert registry.get_sample_value("brandlistener_duplicates_total", {"label": "complaint"}) == 3
