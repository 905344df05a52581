"""The worker end to end: real broker, real ONNX model, the worker as a real subprocess.

Expected routing is computed in this process with the same model (one post per
ONNX run on both sides, so int8 results do not depend on batch-mates), the
classify agent's record (:func:`agents.pipeline.classify.classification_of`, with the
model's needs_response decision) and :func:`agents.pipeline.rules.route`; the worker
must queue exactly those ids.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import suppress
from pathlib import Path

import orjson

from integration.helpers import (
    Tail,
    Worker,
    committed_lag,
    make_posts,
    needing_response,
    produce,
    running,
)
from listener.record import encode_mention
from listener.topics import TopicNames


def test_worker_routes_exactly_what_the_model_says_and_survives_poison(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, classifier, tmp_path: Path
) -> None:
    posts = make_posts("a", 200)
    expected = needing_response(classifier, posts)
    assert 0 < len(expected) < len(posts), "the sample should mix queued and not-queued posts"
    # One post that needs a response is held back and sent after the poison.
    last = next(p for p in reversed(posts) if p.id in expected)
    first = [p for p in posts if p is not last]
    invalid = orjson.loads(encode_mention(posts[0]))
    invalid["text"], invalid["id"] = "  ", "itest:poison"
    queue = Tail(kafka_bootstrap, topics.needs_response)
    dead = Tail(kafka_bootstrap, topics.dead_letter)
    worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
    try:
        with running(worker):
            produce(
                kafka_bootstrap, topics.raw, [(p.id.encode(), encode_mention(p)) for p in first]
            )
            produce(kafka_bootstrap, topics.raw, [
                (b"poison-1", b"\x00\x01 definitely not json"),
                (b"poison-2", orjson.dumps(invalid)),
                (last.id.encode(), encode_mention(last)),
            ])  # fmt: skip
            queue.until(lambda: set(queue.ids()) >= expected, timeout=90, quiet_s=3)
            dead.until(lambda: len(dead.records) >= 2, timeout=10)
            status, metrics = worker.get("/metrics")
            code = worker.stop(signal.SIGTERM)
            log = worker.tail(200)
        got = queue.ids()
        assert set(got) == expected, (
            f"missing {sorted(expected - set(got))[:10]}, extra {sorted(set(got) - expected)[:10]}"
        )
        assert last.id in got  # processed after the poison
        letters = [orjson.loads(v) for _, v in dead.records]
        assert sorted((d["stage"], d["reason"]) for d in letters) == [
            ("classify", "decode"), ("classify", "validation")
        ]  # fmt: skip
        assert status == 200
        assert b"brandlistener_mentions_processed_total{" in metrics
        assert b'brandlistener_dead_letter_total{reason="decode",stage="classify"} 1.0' in metrics
        assert code == 0, log
        assert committed_lag(kafka_bootstrap, topics.raw, group_id) == 0  # committed on SIGTERM
        assert committed_lag(kafka_bootstrap, topics.classified, group_id) == 0
        print(
            f"\n{len(posts)} posts, {len(expected)} queued, {len(got) - len(set(got))} duplicates"
        )
    finally:
        queue.close()
        dead.close()


def test_kill_9_mid_stream_loses_nothing(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, classifier, tmp_path: Path
) -> None:
    posts = make_posts("k", 300)
    expected = needing_response(classifier, posts)
    records = [(p.id.encode(), encode_mention(p)) for p in posts]
    queue = Tail(kafka_bootstrap, topics.needs_response)
    worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
    feeder = threading.Thread(
        target=produce, args=(kafka_bootstrap, topics.raw, records, 0.01), daemon=True
    )
    try:
        with running(worker):
            feeder.start()  # ~3 s of steady input
            queue.until(lambda: len(queue.records) >= 5, timeout=60)
            assert queue.records, f"no output before the kill:\n{worker.tail()}"
            os.kill(worker.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            worker.proc.wait(10)  # type: ignore[union-attr]
            seen_before_restart = len(queue.records)
        feeder.join(30)
        with running(Worker(tmp_path, kafka_bootstrap, topics, group_id)) as again:
            queue.until(lambda: set(queue.ids()) >= expected, timeout=90, quiet_s=3)
            with suppress(AssertionError):
                again.stop(signal.SIGTERM, timeout=30)
        got = queue.ids()
        assert set(got) == expected, f"missing {sorted(expected - set(got))[:10]}"
        duplicates = len(got) - len(set(got))
        print(f"\nkill -9 after {seen_before_restart} queued: {len(expected)} expected, "
              f"{len(got)} received, {duplicates} duplicates")  # fmt: skip
    finally:
        queue.close()
