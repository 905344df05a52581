"""The worker's stop (agents/shutdown.py): real broker, real model, the worker as a subprocess.

* Stopped while posts keep arriving, a worker drains and exits 0 in a few seconds,
  and across several such stops nothing is lost. Without the drain, Faust's stop
  hung in 2 of 5 and 1 of 4 such tries (it waits for events it dropped itself).
* A worker whose graceful stop cannot finish (its broker frozen with SIGSTOP: this
  test starts its own broker) exits at its deadline with status 75 instead of
  hanging; after the broker thaws, a new worker of the same group and data
  directory goes on with the next posts.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka_fixtures import TOPIC_PARTITIONS, start_broker

from agents.shutdown import EXIT_SHUTDOWN_TIMEOUT
from integration.helpers import Tail, Worker, make_posts, produce, running
from listener.kafka_local import create_topics
from listener.record import encode_mention
from listener.topics import TopicNames

DEADLINE_S = 4


def test_workers_stopped_while_posts_arrive_stop_cleanly_and_lose_nothing(
    kafka_bootstrap: str, topics: TopicNames, group_id: str, tmp_path: Path
) -> None:
    produced: list[str] = []
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:  # ~400 posts/s until told to stop: the worker's queues stay busy
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
        n = 0
        try:
            while feeding.is_set():
                for post in make_posts(f"arriving{n}", 40):
                    producer.send(topics.raw, key=post.id.encode(), value=encode_mention(post))
                    produced.append(post.id)
                producer.flush(timeout=30)
                n += 1
                time.sleep(0.1)
        finally:
            producer.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    classified = Tail(kafka_bootstrap, topics.classified)
    try:
        for attempt in range(4):
            worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
            worker.args[worker.args.index("--batch-size") + 1] = "512"  # the default
            worker.env["AGENTS_SHUTDOWN_TIMEOUT_S"] = "20"  # a hang shows as exit 75
            with running(worker):
                time.sleep(4)  # busy: posts keep arriving
                started = time.monotonic()
                code = worker.stop(signal.SIGTERM)
                took = time.monotonic() - started
                assert code == 0, f"stop {attempt}: exit {code} after {took:.1f} s\n{worker.tail()}"
                assert took < 15, f"stop {attempt} took {took:.1f} s"
        feeding.clear()
        feeder.join(30)
        last = Worker(tmp_path, kafka_bootstrap, topics, group_id)
        with running(last):
            want = set(produced)
            classified.until(lambda: set(classified.ids()) >= want, timeout=120)
            assert last.stop(signal.SIGTERM) == 0, last.tail()
        missing = set(produced) - set(classified.ids())
        assert not missing, f"{len(missing)} of {len(produced)} posts never classified"
    finally:
        feeding.clear()
        classified.close()


def test_a_worker_stuck_in_its_graceful_stop_exits_at_the_deadline(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    broker = start_broker(tmp_path_factory, "kafka-frozen")
    frozen = False
    try:
        topics = TopicNames(prefix="frozen.")
        create_topics(broker.bootstrap, topics.all(), partitions=TOPIC_PARTITIONS)
        posts = make_posts("frozen", 20)
        classified = Tail(broker.bootstrap, topics.classified)
        worker = Worker(tmp_path, broker.bootstrap, topics, "g-frozen")
        worker.env["AGENTS_SHUTDOWN_TIMEOUT_S"] = str(DEADLINE_S)
        with running(worker):
            produce(
                broker.bootstrap, topics.raw, [(p.id.encode(), encode_mention(p)) for p in posts]
            )
            classified.until(lambda: len(set(classified.ids())) >= len(posts), timeout=90)
            pid = broker.pid()
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            frozen = True
            started = time.monotonic()
            code = worker.stop(signal.SIGTERM, timeout=60)
            took = time.monotonic() - started
            log = worker.tail(60)
        os.kill(pid, signal.SIGCONT)
        frozen = False
        assert code == EXIT_SHUTDOWN_TIMEOUT, log
        assert DEADLINE_S - 0.5 <= took < DEADLINE_S + 10, f"exited after {took:.1f} s"
        assert f"worker did not stop within {DEADLINE_S} s of SIGTERM" in log

        # The forced exit leaves the group and the data directory usable: a new worker of
        # the same group, same data directory, takes the next posts too.
        more = make_posts("after", 10)
        produce(broker.bootstrap, topics.raw, [(p.id.encode(), encode_mention(p)) for p in more])
        again = Worker(tmp_path, broker.bootstrap, topics, "g-frozen")
        with running(again):
            want = {p.id for p in posts + more}
            classified.until(lambda: set(classified.ids()) >= want, timeout=90)
            assert again.stop(signal.SIGTERM) == 0, again.tail()
        classified.close()
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        broker.stop()
