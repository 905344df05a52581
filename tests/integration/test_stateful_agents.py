"""The stateful agents across workers and restarts: real broker, real model, worker subprocesses.

Copy dedup and author vetting keep their state in changelog-backed Faust
tables, keyed like their input topics (``agents/pipeline/tables.py``). So:

* a copy-paste campaign posted by many authors, processed by two workers of
  one app, is one queue item with the whole count, not one per worker;
* a worker restart keeps that campaign (a later copy is counted into it, no
  new item) and each author's vetting window (a third repost after the
  restart is scored on all three).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka_fixtures import TOPIC_PARTITIONS

from integration.helpers import Tail, Worker, produce, running
from listener.record import Author, Mention, encode_mention
from listener.topics import TopicNames

BRAND = "VoltAir"
CAMPAIGN = "Boycott @VoltAir, they cancelled my flight and kept my money! Share this {url}"
REPOSTS = (
    "RT @angrydan: @VoltAir lost my bag again and nobody answers the phone, flight {n}",
    "RT @sue_k: @VoltAir charged me twice for one ticket and support hung up, ref {n}",
    "RT @mo_b: @VoltAir the app crashes at checkout and my booking {n} is gone",
)


def campaign_copy(n: int) -> Mention:
    """Copy ``n`` of the campaign: its own author and link, the same words."""
    return Mention.create(
        source="itest",
        native_id=f"copy-{n}",
        text=CAMPAIGN.format(url=f"https://t.co/x{n}"),
        brands=(BRAND,),
        author=Author(id=f"fan-{n}", handle=f"fan{n}"),
    )


def repost(n: int) -> Mention:
    return Mention.create(
        source="itest",
        native_id=f"rt-{n}",
        text=REPOSTS[n % len(REPOSTS)].format(n=n + 100),
        brands=(BRAND,),
        author=Author(id="repost-bot-7", handle="repostbot7"),
    )


def records(posts: list[Mention]) -> list[tuple[bytes | None, bytes]]:
    return [(p.id.encode(), encode_mention(p)) for p in posts]


def latest(queue: Tail) -> dict[str, dict[str, Any]]:
    """The queue as a compacted topic holds it: the last record per Mention id."""
    return {orjson.loads(value)["id"]: orjson.loads(value) for _, value in queue.records}


def workers(
    tmp_path: Path, bootstrap: str, topics: TopicNames, group_id: str, n: int
) -> Iterator[Worker]:
    for i in range(n):
        home = tmp_path / f"worker-{i}"
        home.mkdir(exist_ok=True)
        yield Worker(home, bootstrap, topics, group_id)


def test_a_campaign_is_one_queue_item_across_two_workers_and_a_restart(
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
    classifier: Any,
    tmp_path: Path,
) -> None:
    copies = [campaign_copy(n) for n in range(12)]
    labels = {p.label for p in classifier.predict([copies[0].text, repost(0).text])}
    assert labels <= {"complaint", "question"}, "the campaign and reposts must need a response"
    queue = Tail(kafka_bootstrap, topics.needs_response)
    try:
        with ExitStack() as stack:
            pair = [
                stack.enter_context(running(w))
                for w in workers(tmp_path, kafka_bootstrap, topics, group_id, 2)
            ]
            produce(
                kafka_bootstrap, topics.raw, records(copies[:10] + [repost(0), repost(1)]), 0.05
            )
            queue.until(
                lambda: any(
                    item["signals"].get("duplicates", {}).get("count") == 10
                    for item in latest(queue).values()
                ),
                timeout=90,
                quiet_s=2,
            )
            for worker in pair:
                assert worker.stop(signal.SIGTERM) == 0, worker.tail()
        queued = latest(queue)
        campaign = {i: item for i, item in queued.items() if i.startswith("itest:copy-")}
        assert len(campaign) == 1, f"one item per campaign, got {sorted(campaign)}"
        ((first_id, first),) = campaign.items()
        assert first["signals"]["duplicates"] == {"of": first_id, "count": 10}

        (again,) = workers(tmp_path, kafka_bootstrap, topics, group_id, 1)
        with running(again):
            produce(kafka_bootstrap, topics.raw, records(copies[10:] + [repost(2)]), 0.05)
            queue.until(
                lambda: (
                    latest(queue)[first_id]["signals"]["duplicates"]["count"] == 12
                    and "itest:rt-2" in latest(queue)
                ),
                timeout=90,
                quiet_s=2,
            )
        queued = latest(queue)
        assert {i for i in queued if i.startswith("itest:copy-")} == {first_id}, (
            "after the restart a copy joins the campaign, no new item"
        )
        assert queued[first_id]["signals"]["duplicates"]["count"] == 12
        vetting = queued["itest:rt-2"]["signals"]["vetting"]
        assert vetting["posts"] == 3, f"the author's window survived the restart: {vetting}"
        assert "repost_only" in vetting["flags"] and vetting["score"] > 0
    finally:
        queue.close()


def test_a_worker_refuses_topics_partitioned_unlike_its_tables(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, tmp_path: Path
) -> None:
    """The tables are partitioned like their input topics: a mismatch must stop the worker."""
    (worker,) = workers(tmp_path, kafka_bootstrap, topics, group_id, 1)
    worker.env["AGENTS_KAFKA__TOPIC_PARTITIONS"] = str(TOPIC_PARTITIONS + 1)
    with pytest.raises(AssertionError, match="exited with 1"):
        worker.start(timeout=60)
    assert "AGENTS_KAFKA__TOPIC_PARTITIONS" in worker.tail() and topics.classified in worker.tail()
