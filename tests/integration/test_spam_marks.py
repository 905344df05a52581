"""A spam mark from the inbox reaches author vetting: real broker, real model, a worker subprocess.

The inbox writes ``{"by", "at"}`` keyed by the author key (``<source>:<id>``)
to ``mentions.spam-authors``; the worker's ``mark_spam_authors`` agent keeps it
in the ``spam-authors`` table, so the author's next post carries the vetting
flag ``marked_spam`` (score 1) and the built-in rule ``author.marked_spam``
keeps it out of the human queue, while another author's same complaint is queued.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from integration.helpers import Tail, Worker, produce, running
from listener.record import Author, Mention, decode_mention, encode_mention
from listener.topics import TopicNames

TEXT = "@VoltAir my flight {n} was cancelled and nobody answers the phone, this is a disgrace"


def test_a_marked_author_is_flagged_and_not_queued(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, tmp_path: Path
) -> None:
    spammer, customer = Author(id="S1", handle="spam<b>mer"), Author(id="C1", handle="cust")
    mark = orjson.dumps({"by": "ann", "at": time.time(), "mention_id": "itest:x"})
    classified = Tail(kafka_bootstrap, topics.classified)
    queue = Tail(kafka_bootstrap, topics.needs_response)
    try:
        with running(Worker(tmp_path, kafka_bootstrap, topics, group_id)):
            produce(kafka_bootstrap, topics.spam_authors, [(b"itest:s1", mark)])
            time.sleep(3)  # the mark is read before the post (both go through the worker)
            posts = [
                Mention.create(
                    source="itest", native_id=f"sp-{n}", text=TEXT.format(n=n), author=who
                )  # fmt: skip
                for n, who in enumerate((spammer, customer))
            ]
            produce(
                kafka_bootstrap, topics.raw, [(p.id.encode(), encode_mention(p)) for p in posts]
            )
            classified.until(lambda: len(classified.records) >= 2, timeout=90)
            queue.until(lambda: len(queue.records) >= 1, timeout=60, quiet_s=3)
        routed = {m.id: m for m in (decode_mention(v) for _, v in queue.records)}
        assert set(routed) == {posts[1].id}, "the marked author's complaint is not queued"
    finally:
        classified.close()
        queue.close()
