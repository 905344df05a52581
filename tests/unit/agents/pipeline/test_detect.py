"""The spike stage on a fake clock and an in-memory sender: one alert record per incident."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from async_support import sync
from fake_clock import FakeClock
from prometheus_client import CollectorRegistry

from agents.observability.metrics import create
from agents.pipeline.detect import SpikeForward, SpikeStage
from agents.pipeline.spikes import SpikeConfig, SpikeDetector
from agents.runtime.app import Outputs
from listener.record import LABELS, Classification, Label, Mention, encode_mention
from listener.topics import TopicNames

_IDS = itertools.count()
TOPICS = TopicNames(prefix="unit.")


class Message:
    def __init__(self, value: bytes) -> None:
        self.topic, self.partition, self.offset = TOPICS.classified, 0, next(_IDS)
        self.value = value


class Event:
    def __init__(self, value: bytes, key: bytes | None = None) -> None:
        self.key, self.value, self.message = key, value, Message(value)


def event(brand: str, label: Label = "complaint") -> Any:
    n = next(_IDS)
    mention = Mention.create(source="t", native_id=str(n), text=f"post {n}", brands=(brand,))
    scores = {name: (0.9 if name == label else 0.1 / 3) for name in LABELS}
    classified = mention.model_copy(
        update={"classification": Classification(label=label, scores=scores, model="kw@1")}
    )
    return Event(encode_mention(classified))


SPIKE_TOPIC = "unit-app-by-brand-label-repartition"


class Spikes:
    """The two spike stages joined as Kafka joins them: forwarded records become events."""

    def __init__(self, sender: Any, forward: SpikeForward, detect: SpikeStage) -> None:
        self.sender, self.forward, self.detect = sender, forward, detect

    async def process(self, events: list[Any]) -> list[Any]:
        seen = len(self.sender.on(SPIKE_TOPIC))
        await self.forward.process(events)
        forwarded = [Event(v, key) for key, v in self.sender.on(SPIKE_TOPIC)[seen:]]
        return await self.detect.process(forwarded)


def stage(sender: Any, brands: tuple[str, ...]) -> tuple[Spikes, FakeClock, CollectorRegistry]:
    clock, registry = FakeClock(), CollectorRegistry()
    config = SpikeConfig(window_s=10, min_history=2, min_count=4, k=2, brands=brands)
    metrics = create(registry)
    detector = SpikeDetector(config.detector(), clock)
    outputs = Outputs(sender, TOPICS, metrics)
    forward = SpikeForward(detector.watches, outputs, SPIKE_TOPIC)
    return (
        Spikes(sender, forward, SpikeStage(detector, outputs, metrics, TOPICS, brands)),
        clock,
        registry,
    )


@sync
async def test_burst_after_calm_baseline_produces_one_alert_record(sender: Any) -> None:
    spikes, clock, registry = stage(sender, ("Acme",))
    for _ in range(3):  # calm: one complaint a window
        assert await spikes.process([event("Acme")]) == []
        clock.now += 10
    sent = await spikes.process([event("Acme") for _ in range(10)] + [Event(b"not json")])
    assert [a.count for a in sent] == [4]
    records = sender.on(TOPICS.alerts)
    assert len(records) == 1
    key, value = records[0]
    alert = orjson.loads(value)
    assert key == alert["id"].encode() and alert["id"].startswith("spike:acme:complaint:")
    assert alert["brand"] == "acme" and alert["count"] == 4 and len(alert["examples"]) == 3
    assert {"window_start", "window_s", "baseline_mean", "threshold"} <= set(alert)
    labels = {"brand": "acme", "label": "complaint"}
    assert registry.get_sample_value("brandlistener_spike_alerts_total", labels) == 1
    assert await spikes.process([event("Acme") for _ in range(10)]) == [], "same incident"


@sync
async def test_metric_brand_label_is_bounded_by_the_configured_brands(sender: Any) -> None:
    spikes, clock, registry = stage(sender, ("Acme",))
    for _ in range(3):
        await spikes.process([event("Rogue")])
        clock.now += 10
    assert len(await spikes.process([event("Rogue") for _ in range(5)])) == 1
    labels = {"brand": "other", "label": "complaint"}
    assert registry.get_sample_value("brandlistener_spike_alerts_total", labels) == 1
    assert sender.on(TOPICS.alerts), "the alert itself still names the brand"


@sync
async def test_refused_alert_is_dead_lettered_and_not_counted(sender: Any) -> None:
    spikes, clock, registry = stage(sender, ())
    for _ in range(3):
        await spikes.process([event("Acme")])
        clock.now += 10
    sender.refuse[TOPICS.alerts] = 1
    assert await spikes.process([event("Acme") for _ in range(4)]) == []
    assert len(sender.on(TOPICS.dead_letter)) == 1
    assert (
        registry.get_sample_value(
            "brandlistener_spike_alerts_total", {"brand": "acme", "label": "complaint"}
        )
        is None
    )


@sync
async def test_forward_keys_by_brand_and_label_and_skips_unwatched_and_undecodable(
    sender: Any,
) -> None:
    spikes, _, _ = stage(sender, ())
    two_brands = orjson.loads(event("Acme").value)
    two_brands["brands"] = ["Acme", "Beta"]
    events = [Event(orjson.dumps(two_brands)), event("Acme", "praise"), Event(b"{")]
    assert await spikes.forward.process(events) == 2
    forwarded = sender.on(SPIKE_TOPIC)
    assert [k for k, _ in forwarded] == [b"acme|complaint", b"beta|complaint"]
    assert orjson.loads(forwarded[1][1]) == {
        "brand": "Beta",
        "label": "complaint",
        "id": two_brands["id"],
        "text": two_brands["text"],
    }


@sync
async def test_own_posts_are_not_counted_and_unreadable_events_are_dead_lettered(
    sender: Any,
) -> None:
    spikes, _, _ = stage(sender, ("Acme",))
    own = Mention.create(
        source="t", native_id="own", text="We're sorry, DM us", brands=("Acme",)
    ).model_copy(
        update={
            "own_account_of": ("Acme",),
            "classification": Classification(
                label="complaint", scores={n: 0.25 for n in LABELS}, model="kw@1"
            ),
        }
    )
    await spikes.forward.process([Event(encode_mention(own)), event("Acme"), Event(b"{not json")])
    forwarded = [orjson.loads(v)["id"] for _, v in sender.on(SPIKE_TOPIC)]
    assert own.id not in forwarded and len(forwarded) == 1
    letters = [orjson.loads(v) for _, v in sender.on(TOPICS.dead_letter)]
    assert [(d["stage"], d["payload"]) for d in letters] == [("spike-forward", "{not json")]


@sync
async def test_the_window_that_ends_an_incident_produces_a_resolved_record(sender: Any) -> None:
    spikes, clock, _ = stage(sender, ("Acme",))
    for _ in range(3):
        await spikes.process([event("Acme")])
        clock.now += 10
    assert len(await spikes.process([event("Acme") for _ in range(6)])) == 1
    clock.now += 10
    await spikes.process([event("Acme")])  # closes the spike window: still in the incident
    clock.now += 10
    assert await spikes.process([event("Acme")]) == [], "a calm window closed: re-armed"
    records = [orjson.loads(v) for _, v in sender.on(TOPICS.alerts)]
    assert [r.get("status") for r in records] == [None, "resolved"]
    assert records[1]["id"] == records[0]["id"] and records[1]["count"] == 1
    assert sender.on(TOPICS.alerts)[1][0] == records[0]["id"].encode()
