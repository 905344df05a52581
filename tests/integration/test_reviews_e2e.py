"""End to end for reviews: a local Trustpilot server -> ``listen`` -> real Kafka -> a real
worker subprocess (the real model, ``deploy/rules.example.yaml``) -> ``mentions.needs-response``.

A 1-star complaint about the brand's own business (its text names no brand) must be
queued by the rating rule ``review.low_rating`` (P2, team reviews); a 5-star praise
review must be classified and not queued.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from contract.servers import HARNESSES
from prometheus_client import CollectorRegistry

from integration.helpers import ROOT, Tail, Worker, running, stop_listen
from listener.listen import listen, load_settings
from listener.record import decode_mention
from listener.topics import TopicNames

pytestmark = pytest.mark.timeout(180)
RULES = ROOT / "deploy" / "rules.example.yaml"
NATIVE = ("66f0c0000000000000000001", "66f0c0000000000000000002")
COMPLAINT, PRAISE = (f"trustpilot:{n}" for n in NATIVE)


def _review(review_id: str, stars: int, title: str, text: str, name: str) -> dict[str, Any]:
    return {
        "id": review_id,
        "consumer": {"id": f"c-{review_id[-4:]}", "displayName": name},
        "stars": stars,
        "title": title,
        "text": text,
        "language": "en",
        "createdAt": "2026-03-02T12:00:00Z",
        "companyReply": None,
        "status": "active",
        "links": [],
    }


def _start_listen(tmp_path: Path, api_url: str, unit: str, key: str, bootstrap: str,
                  topics: TopicNames) -> asyncio.Task[int]:  # fmt: skip
    config = tmp_path / "listen.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"cursor_dir": str(tmp_path / "cursors"), "metrics_port": None},
                "brands": [{"name": "acme", "keywords": ["acme"]}],
                "connectors": {
                    "trustpilot": {
                        "api_key": key,
                        "api_url": api_url,
                        "business_units": [{"id": unit, "brand": "acme"}],
                        "poll_interval_s": 1,
                    }
                },
            }
        )
    )
    settings = load_settings(config, bootstrap_servers=bootstrap, topic_prefix=topics.prefix)
    return asyncio.create_task(listen(settings, registry_=CollectorRegistry()))


def test_low_star_review_reaches_needs_response_with_the_rating_rule(
    tmp_path: Path,
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
) -> None:
    started = time.monotonic()
    harness: Any = HARNESSES["trustpilot"]()
    harness.units = {
        harness.ACME: [
            _review(NATIVE[0], 1, "Never again",
                    "My order arrived broken and support ignored my three emails. "
                    "I want my money back.", "Dana K"),
            _review(NATIVE[1], 5, "Fantastic service",
                    "Quick delivery and really friendly help, thank you so much!", "Lars"),
        ]
    }  # fmt: skip
    worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
    worker.args += ["--rules", str(RULES)]
    raw = Tail(kafka_bootstrap, topics.raw)
    classified = Tail(kafka_bootstrap, topics.classified)
    queue = Tail(kafka_bootstrap, topics.needs_response)

    async def go() -> int:
        await harness.start()
        try:
            task = _start_listen(
                tmp_path, harness.base, harness.ACME, harness.KEY, kafka_bootstrap, topics
            )
            await asyncio.to_thread(raw.until, lambda: len(raw.records) >= 2, 30)
            return await stop_listen(task)
        finally:
            await harness.stop()

    try:
        with running(worker):
            assert asyncio.run(go()) == 0
            posts = {m.id: m for m in (decode_mention(v) for _, v in raw.records)}
            classified.until(lambda: {COMPLAINT, PRAISE} <= set(classified.ids()), timeout=60)
            queue.until(lambda: COMPLAINT in queue.ids(), timeout=40, quiet_s=2.0)
            routed = [orjson.loads(v) for _, v in queue.records]
            seen = set(classified.ids())
    finally:
        raw.close()
        classified.close()
        queue.close()
    assert set(posts) == {COMPLAINT, PRAISE}, worker.tail()
    assert posts[COMPLAINT].brands == ("acme",)  # the brand's own business, named nowhere
    assert posts[COMPLAINT].signals["matched_terms"] == {"acme": ["source"]}
    assert posts[COMPLAINT].signals["rating"] == {"stars": 1, "of": 5}
    assert {COMPLAINT, PRAISE} <= seen, "both reviews were classified"
    assert [r["id"] for r in routed] == [COMPLAINT], worker.tail()
    routing = routed[0]["routing"]
    assert routing["needs_response"] is True
    assert (routing["priority"], routing["team"]) == ("P2", "reviews")
    assert routing["rule_ids"] == ["review.low_rating"]
    assert routed[0]["classification"]["label"] == "complaint"
    assert time.monotonic() - started < 120
