from __future__ import annotations

import asyncio

import orjson

from listener.record import LABELS, Classification, Mention, decode_mention, encode_mention


def _classified(make_mention, native_id: str, text: str, label: str, confidence: float) -> Mention:
    rest = (1 - confidence) / 3
    scores = {name: (confidence if name == label else rest) for name in LABELS}
    return make_mention(native_id, text).with_stage(
        "classified", classification=Classification(label=label, scores=scores, model="kw@1")
    )


def test_only_posts_needing_response_are_queued(build, sender, make_mention, wait_until):
    pipeline, registry = build(dedup_window_s=0)  # no copy dedup hop: straight to the queue
    topics = pipeline.topics
    queue = topics.needs_response.get_topic_name()
    posts = [
        _classified(make_mention, "1", "app broken", "complaint", 0.9),
        _classified(make_mention, "2", "my account was hacked", "complaint", 0.8),
        _classified(make_mention, "3", "how do I pay?", "question", 0.7),
        _classified(make_mention, "4", "love it", "praise", 0.95),
        _classified(make_mention, "5", "meh?", "question", 0.4),  # below threshold 0.5
        _classified(make_mention, "6", "saw it", "other", 0.9),
    ]

    async def scenario() -> None:
        async with pipeline.route_agent.test_context() as agent:
            for post in posts:
                await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(
                lambda: (
                    registry.get_sample_value("brandlistener_end_to_end_latency_seconds_count")
                    == len(posts)
                )
            )

    asyncio.run(scenario())
    out = sender.on(queue)
    assert [k for k, _ in out] == [b"bluesky:1", b"bluesky:2", b"bluesky:3"]
    routed = [decode_mention(v) for _, v in out]
    assert [(m.routing.priority, m.routing.team) for m in routed] == [
        ("P2", "support"),
        ("P1", "escalations"),
        ("P3", "support"),
    ]
    assert all(m.routing.needs_response and m.routing.sla_due_at for m in routed)
    assert all("routed" in m.stage_times for m in routed)
    get = registry.get_sample_value
    p1 = {"priority": "P1", "team": "escalations", "label": "complaint"}
    assert get("brandlistener_needs_response_total", p1) == 1
    p3 = {"priority": "P3", "team": "support", "label": "question"}
    assert get("brandlistener_needs_response_total", p3) == 1
    assert (
        get("brandlistener_mentions_processed_total", {"stage": "routed", "label": "question"}) == 2
    )
    assert get("brandlistener_stage_latency_seconds_count", {"stage": "routed"}) == 6
    assert sender.on(topics.dead_letter.get_topic_name()) == []


def test_poison_and_unclassified_go_to_dead_letter_and_routing_continues(
    build, sender, make_mention, wait_until
):
    pipeline, registry = build(dedup_window_s=0)
    topics = pipeline.topics
    queue = topics.needs_response.get_topic_name()
    dead_topic = topics.dead_letter.get_topic_name()
    unclassified = make_mention("7", "no classification yet")
    good = _classified(make_mention, "8", "still broken", "complaint", 0.9)

    async def scenario() -> None:
        async with pipeline.route_agent.test_context() as agent:
            await agent.put(b"[1, 2, 3]", key=b"x")
            await agent.put(encode_mention(unclassified), key=unclassified.id.encode())
            await agent.put(encode_mention(good), key=good.id.encode())
            await wait_until(lambda: len(sender.on(queue)) == 1)
            await wait_until(lambda: len(sender.on(dead_topic)) == 2)

    asyncio.run(scenario())
    dead = [orjson.loads(v) for _, v in sender.on(dead_topic)]
    assert [(d["stage"], d["reason"]) for d in dead] == [
        ("route", "decode"),
        ("route", "unclassified"),
    ]
    assert decode_mention(sender.on(queue)[0][1]).id == good.id
    assert (
        registry.get_sample_value(
            "brandlistener_dead_letter_total", {"stage": "route", "reason": "unclassified"}
        )
        == 1
    )


def test_own_account_posts_are_counted_and_never_queued(build, sender, make_mention, wait_until):
    pipeline, registry = build(dedup_window_s=0)
    queue = pipeline.topics.needs_response.get_topic_name()
    reply = _classified(make_mention, "b1", "We're very sorry. Please DM us", "complaint", 0.97)
    reply = reply.model_copy(update={"own_account_of": ("acme",), "brands": ("acme",)})
    customer = _classified(make_mention, "c1", "my parcel never came", "complaint", 0.9)

    async def scenario() -> None:
        async with pipeline.route_agent.test_context() as agent:
            for post in (reply, customer):
                await agent.put(encode_mention(post), key=post.id.encode())
            await wait_until(
                lambda: (
                    registry.get_sample_value("brandlistener_end_to_end_latency_seconds_count") == 2
                )
            )

    asyncio.run(scenario())
    assert [k for k, _ in sender.on(queue)] == [b"bluesky:c1"]
    own = {"brand": "acme", "source": "bluesky"}
    assert registry.get_sample_value("brandlistener_own_account_posts_total", own) == 1
