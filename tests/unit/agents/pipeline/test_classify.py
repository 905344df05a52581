from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from agents.pipeline.classify import classification_of, decided_at, post_kind
from agents.pipeline.rules import LABEL_FROM_SCORES
from agents.settings import ModelSettings
from listener.dead_letter import MAX_RECORD_BYTES
from listener.record import LABELS, Mention, decode_mention, encode_mention
from models.interface import Prediction


def classify_all(pipeline: Any, sender: Any, wait_until: Any, posts: list[Mention]) -> None:
    """Put ``posts`` on the classify agent and wait until each one is classified."""
    classified = pipeline.topics.classified.get_topic_name()

    async def scenario() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            for post in posts:
                await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(lambda: len(sender.on(classified)) == len(posts))

    asyncio.run(scenario())


def test_good_batch_is_classified_and_keyed_by_id(build, sender, make_mention, wait_until):
    pipeline, registry = build()
    topics = pipeline.topics
    posts = [
        make_mention("1", "app is broken again"),
        make_mention("2", "how do I reset it?"),
        make_mention("3", "love the new release"),
        make_mention("4", "saw a billboard today"),
        make_mention("5", "total outage downtown"),
    ]

    classify_all(pipeline, sender, wait_until, posts)
    out = sender.on(topics.classified.get_topic_name())
    assert [k for k, _ in out] == [p.id.encode() for p in posts]
    decoded = [decode_mention(v) for _, v in out]
    assert [m.classification.label for m in decoded] == [
        "complaint",
        "question",
        "praise",
        "other",
        "complaint",
    ]
    assert all(m.classification.model == "keyword@test" for m in decoded)
    assert all(m.stage_times["classified"] >= m.stage_times["ingested"] for m in decoded)
    assert sender.on(topics.dead_letter.get_topic_name()) == []
    get = registry.get_sample_value
    assert (
        get("brandlistener_mentions_processed_total", {"stage": "classified", "label": "complaint"})
        == 2
    )
    assert get("brandlistener_classifier_batch_size_sum") == 5
    assert get("brandlistener_stage_latency_seconds_count", {"stage": "classified"}) == 5


def test_the_model_is_told_where_each_post_sits_in_its_thread(
    build, sender, keyword_classifier, wait_until
):
    classifier = keyword_classifier()
    pipeline, _ = build(classifier)
    posts = [
        Mention.create(source="bluesky", native_id="a", text="app is broken"),
        Mention.create(source="bluesky", native_id="b", text="same here", reply_to_id="bluesky:a"),
        Mention.create(
            source="bluesky",
            native_id="c",
            text="still broken",
            reply_to_id="bluesky:brand-answer",
            signals={"reply_to_own_account": ["Acme"]},
        ),
        Mention.create(source="trustpilot", native_id="r", text="two weeks, no refund"),
        Mention.create(source="rss", native_id="f", text="a blog post about the app"),
    ]

    classify_all(pipeline, sender, wait_until, posts)
    told = {
        text: kind
        for texts, kinds in zip(classifier.calls, classifier.kinds, strict=True)
        for text, kind in zip(texts, kinds or [], strict=True)
    }
    assert told == {
        "app is broken": "post",
        "same here": "comment",  # a reply, not known to answer the brand
        "still broken": "reply_to_brand",
        "two weeks, no refund": "review",
        "a blog post about the app": "unknown",
    }
    assert [post_kind(p) for p in posts] == [
        "post",
        "comment",
        "reply_to_brand",
        "review",
        "unknown",
    ]


def test_poison_values_are_dead_lettered_and_the_next_event_still_processed(
    build, sender, make_mention, wait_until
):
    pipeline, registry = build()
    topics = pipeline.topics
    invalid = orjson.loads(encode_mention(make_mention("9", "fine text")))
    invalid["text"] = "   "  # fails validation
    good = make_mention("10", "is it down?")

    async def scenario() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            await agent.put(b"\xff not json {", key=b"k1")
            await agent.put(orjson.dumps(invalid), key=b"k2")
            await agent.put(encode_mention(good), key=good.id.encode())
            await wait_until(lambda: len(sender.on(topics.classified.get_topic_name())) == 1)
            await wait_until(lambda: len(sender.on(topics.dead_letter.get_topic_name())) == 2)

    asyncio.run(scenario())
    dead = [orjson.loads(v) for _, v in sender.on(topics.dead_letter.get_topic_name())]
    assert [(d["stage"], d["reason"]) for d in dead] == [
        ("classify", "decode"),
        ("classify", "validation"),
    ]
    assert "payload_base64" in dead[0]  # not UTF-8: kept whole as base64
    assert "text" in dead[1]["error"]
    assert dead[1]["origin"]["topic"] == topics.raw.get_topic_name()
    assert [k for k, _ in sender.on(topics.dead_letter.get_topic_name())] == [b"k1", b"k2"]
    ((key, value),) = sender.on(topics.classified.get_topic_name())
    assert decode_mention(value).classification.label == "question"
    get = registry.get_sample_value
    assert get("brandlistener_dead_letter_total", {"stage": "classify", "reason": "decode"}) == 1
    assert (
        get("brandlistener_dead_letter_total", {"stage": "classify", "reason": "validation"}) == 1
    )


def test_classifier_exception_dead_letters_the_batch_and_the_agent_goes_on(
    build, sender, make_mention, wait_until, keyword_classifier
):
    pipeline, registry = build(keyword_classifier(fail_on="EXPLODE"))
    topics = pipeline.topics
    classified = topics.classified.get_topic_name()
    dead_topic = topics.dead_letter.get_topic_name()
    bad = make_mention("20", "EXPLODE please")
    later = make_mention("21", "love it")

    async def scenario() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            await agent.put(encode_mention(bad), key=bad.id.encode())
            await wait_until(lambda: len(sender.on(dead_topic)) == 1)
            await agent.put(encode_mention(later), key=later.id.encode())
            await wait_until(lambda: len(sender.on(classified)) == 1)

    asyncio.run(scenario())
    (dead_value,) = [orjson.loads(v) for _, v in sender.on(dead_topic)]
    assert dead_value["reason"] == "classification"
    assert "model exploded" in dead_value["error"]
    assert decode_mention(dead_value["payload"]).id == bad.id
    assert decode_mention(sender.on(classified)[0][1]).id == later.id
    assert (
        registry.get_sample_value(
            "brandlistener_dead_letter_total", {"stage": "classify", "reason": "classification"}
        )
        == 1
    )


def test_input_is_acked_only_after_output_is_delivered(build, sender, make_mention, wait_until):
    pipeline, _ = build()
    classified = pipeline.topics.classified.get_topic_name()
    post = make_mention("30", "broken")

    async def scenario() -> None:
        sender.hold = asyncio.Event()  # deliveries wait until it is set
        async with pipeline.classify_agent.test_context() as agent:
            event = await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(lambda: len(sender.on(classified)) == 1)
            await asyncio.sleep(0.1)
            assert not event.message.acked  # produced, not yet acknowledged by "Kafka"
            sender.hold.set()
            await wait_until(lambda: event.message.acked)

    asyncio.run(scenario())


def test_refused_output_goes_to_dead_letter_with_reason_delivery(
    build, sender, make_mention, wait_until
):
    pipeline, registry = build()
    topics = pipeline.topics
    classified = topics.classified.get_topic_name()
    dead_topic = topics.dead_letter.get_topic_name()
    sender.refuse[classified] = 1
    sender.refuse[dead_topic] = 1  # the first dead-letter attempt fails too: retried
    post = make_mention("40", "broken")

    async def scenario() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(lambda: len(sender.on(dead_topic)) == 1, timeout=5)

    asyncio.run(scenario())
    (dead,) = [orjson.loads(v) for _, v in sender.on(dead_topic)]
    assert dead["reason"] == "delivery"
    assert decode_mention(dead["payload"]).classification.label == "complaint"
    assert (
        registry.get_sample_value(
            "brandlistener_dead_letter_total", {"stage": "classify", "reason": "delivery"}
        )
        == 1
    )


SPLIT = {"complaint": 0.30, "praise": 0.0, "question": 0.25, "other": 0.45}


class CalibratedClassifier:
    """Says "other" with the scores above and the model's calibrated "needs a response"."""

    name = "calibrated@test"
    labels = LABELS

    def predict(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        return [Prediction("other", dict(SPLIT), True, 0.55) for _ in texts]


def test_classification_carries_the_model_needs_response_decision() -> None:
    c = classification_of(Prediction("other", dict(SPLIT), True, 0.55), "m@1")
    assert (c.label, c.needs_response, c.needs_response_score) == ("other", True, 0.55)
    # float32 sums can overshoot 1 by an ulp: clamped, not rejected
    full = {"complaint": 0.9, "praise": 0.0, "question": 0.1, "other": 0.0}
    assert (
        classification_of(Prediction("complaint", full, True, 1.0000001), "m").needs_response_score
        == 1.0
    )
    # a classifier without a calibrated decision leaves both unset
    plain = classification_of(Prediction("other", dict(SPLIT)), "m@1")
    assert (plain.needs_response, plain.needs_response_score) == (None, None)


def test_a_sources_own_threshold_replaces_the_models_decision() -> None:
    calibrated = Prediction("other", dict(SPLIT), True, 0.55)
    assert decided_at(calibrated, None) is calibrated
    assert decided_at(calibrated, 0.6).needs_response is False
    assert decided_at(calibrated, 0.55).needs_response is True  # inclusive, as the model's
    assert decided_at(Prediction("other", dict(SPLIT), False, 0.55), 0.5).needs_response is True
    # no calibrated decision or no score: left to the router's confidence fallback
    assert decided_at(Prediction("other", dict(SPLIT)), 0.1).needs_response is None
    assert decided_at(Prediction("other", dict(SPLIT), True, None), 0.9).needs_response is True


def test_the_classify_agent_decides_at_each_sources_threshold(
    build, sender, make_mention, wait_until
):
    by_source = {"bluesky": 0.6, "mastodon": 0.1}
    pipeline, _ = build(
        CalibratedClassifier(),
        model=ModelSettings(needs_response_threshold_by_source=by_source),
    )
    post = make_mention("1", "where do I report this?")  # bluesky: 0.55 < 0.6
    other = post.model_copy(update={"id": "x:2", "source": "x"})  # not listed: the model's
    classify_all(pipeline, sender, wait_until, [post, other])
    records = sender.on(pipeline.topics.classified.get_topic_name())
    classified = [decode_mention(value) for _, value in records]
    decided = {m.source: m.classification.needs_response for m in classified if m.classification}
    assert decided == {"bluesky": False, "x": True}


def test_source_thresholds_must_be_probabilities() -> None:
    with pytest.raises(ValidationError, match="reddit"):
        ModelSettings(needs_response_threshold_by_source={"reddit": 1.5})


def test_split_post_is_classified_then_queued_by_the_model_decision(
    build, sender, make_mention, wait_until
):
    pipeline, _ = build(CalibratedClassifier(), dedup_window_s=0)  # straight to the queue
    topics = pipeline.topics
    post = make_mention("1", "the app logs me out and I cannot find where to report it")

    async def classify() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(lambda: len(sender.on(topics.classified.get_topic_name())) == 1)

    asyncio.run(classify())
    ((_, value),) = sender.on(topics.classified.get_topic_name())
    classified = decode_mention(value)
    assert classified.classification is not None
    assert classified.classification.needs_response is True
    assert classified.classification.needs_response_score == 0.55

    async def route() -> None:
        async with pipeline.route_agent.test_context() as agent:
            await agent.put(value, key=post.id.encode())
            await wait_until(lambda: len(sender.on(topics.needs_response.get_topic_name())) == 1)

    asyncio.run(route())
    ((_, queued),) = sender.on(topics.needs_response.get_topic_name())
    routing = decode_mention(queued).routing
    assert routing is not None and routing.needs_response is True
    assert routing.rule_ids == ("complaint", LABEL_FROM_SCORES)


def test_an_output_over_the_record_limit_is_dead_lettered_too_large_not_sent(
    build, sender, make_mention, wait_until
):
    pipeline, registry = build()
    topics = pipeline.topics
    classified = topics.classified.get_topic_name()
    dead_topic = topics.dead_letter.get_topic_name()
    post = make_mention("50", "broken")
    post = post.model_copy(update={"text": "broken <b>x</b> " + "y" * (MAX_RECORD_BYTES - 600)})
    assert len(encode_mention(post)) <= MAX_RECORD_BYTES  # the input fits; its output does not

    async def scenario() -> None:
        async with pipeline.classify_agent.test_context() as agent:
            event = await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(lambda: len(sender.on(dead_topic)) == 1, timeout=5)
            await wait_until(lambda: event.message.acked)

    asyncio.run(scenario())
    assert sender.on(classified) == []
    (value,) = [v for _, v in sender.on(dead_topic)]
    dead = orjson.loads(value)
    assert len(value) <= MAX_RECORD_BYTES
    assert (dead["stage"], dead["reason"], dead["payload_truncated"]) == (
        "classify",
        "too_large",
        True,
    )
    assert dead["payload_bytes"] > MAX_RECORD_BYTES
    labels = {"stage": "classify", "reason": "too_large"}
    assert registry.get_sample_value("brandlistener_dead_letter_total", labels) == 1
