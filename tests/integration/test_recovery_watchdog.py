"""A table recovery that cannot finish is reported, restarted, then ended by a crash.

Real broker, real model, the worker as a subprocess. The stall is real too: a
record written to one partition of the ``sla-queue`` changelog in a Kafka
transaction leaves the commit marker as the partition's last offset, and Faust
0.15.3 (outside exactly-once mode) reads a changelog partition until it has
seen the offset before the highwater, which is that marker: consumers never
receive markers, so the recovery never ends (the same symptom as the stall of
docs/chaos/2026-12-05-recovery-hang.md: streams paused, nothing committed).
The watchdog (agents/runtime/recovery_watchdog.py) must say so in the log, in
/metrics and in /health/live, restart the recovery, and finally crash the
worker so it leaves the group; the posts stay uncommitted (nothing is lost).
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from pathlib import Path

from kafka import KafkaProducer
from kafka_fixtures import TOPIC_PARTITIONS

from agents.queue.sla import TABLE
from integration.helpers import Worker, committed_lag, make_posts, produce, read_all, wait_for
from listener.kafka_admin import COMPACTED, create_topics
from listener.record import encode_mention
from listener.topics import TopicNames

STALL_AFTER_S = 3
RESTARTS = 2


def write_in_a_transaction(bootstrap: str, topic: str, partition: int) -> None:
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=f"{topic}-writer", enable_idempotence=True
    )
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(topic, key=b"some-id", value=b"{}", partition=partition)
        producer.commit_transaction()
    finally:
        producer.close(timeout=10)


def get(worker: Worker, path: str) -> tuple[int, bytes]:
    """Status and body, a 503 included (``Worker.get`` reports any error status as 0)."""
    url = f"http://127.0.0.1:{worker.port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else None


def test_a_table_recovery_that_cannot_finish_is_restarted_then_the_worker_leaves(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = TopicNames(prefix=f"stuck-{int(time.time() * 1000)}.")
    group = f"g-{topics.prefix.rstrip('.')}"
    create_topics(kafka_bootstrap, topics.all(), partitions=TOPIC_PARTITIONS)
    changelog = f"{group}-{TABLE}-changelog"
    create_topics(kafka_bootstrap, [changelog], partitions=TOPIC_PARTITIONS, configs=COMPACTED)
    write_in_a_transaction(kafka_bootstrap, changelog, partition=2)
    posts = make_posts("stuck", 12)
    produce(kafka_bootstrap, topics.raw, [(p.id.encode(), encode_mention(p)) for p in posts])

    worker = Worker(tmp_path, kafka_bootstrap, topics, group)
    worker.env["AGENTS_HEALTH__RECOVERY_STALL_AFTER_S"] = str(STALL_AFTER_S)
    worker.env["AGENTS_HEALTH__RECOVERY_RESTARTS"] = str(RESTARTS)
    try:
        worker.start()
        assert worker.proc is not None
        # Stalled: the error names the stuck changelog partition, liveness fails, metrics count.
        wait_for(
            lambda: "table recovery made no progress" in worker.log_path.read_text(),
            timeout=90,
            what="the watchdog's stall report",
        )
        status, body = get(worker, "/health/live")
        _, metrics = get(worker, "/metrics")
        exit_code = worker.proc.wait(timeout=90)
        log = worker.log_path.read_text()
    finally:
        worker.kill()

    assert f"{changelog}[2]: read up to 0, highwater 1" in log, log[-4000:]
    assert f"{changelog}[2]: fetched" in log, "the consumer's view of the stuck partition"
    assert "restarting table recovery (2 of 2)" in log
    assert "TableRecoveryStalled('table recovery made no progress" in log, "the crash's reason"
    # Between the first stall and the crash (RESTARTS x STALL_AFTER_S) liveness fails and
    # the metrics say what happened.
    assert status == 503, body
    assert b"table recovery made no progress" in body
    text = metrics.decode()
    assert (metric(text, "brandlistener_table_recovery_seconds") or 0) >= STALL_AFTER_S
    restarted = '{action="restarted"}'
    assert metric(text, "brandlistener_table_recovery_stalls_total", restarted) == 1
    assert exit_code != 0, "a worker that gives up exits with an error, leaving the group"
    # Nothing was classified past the stall, and nothing was committed: a healthy worker
    # of the group would process every post.
    assert read_all(kafka_bootstrap, topics.classified) == []
    assert committed_lag(kafka_bootstrap, topics.raw, group) == len(posts)
