"""A worker whose graceful stop cannot finish exits at its deadline instead of hanging.

Real broker (its own, not the session's: this test freezes it), real model, the
worker as a subprocess. With the broker frozen (SIGSTOP) the worker's stop waits on
commits and flushes that cannot complete; ``AGENTS_SHUTDOWN_TIMEOUT_S`` bounds it
(agents/runtime/shutdown.py). After the broker thaws, a new worker of the same group and
data directory goes on with the next posts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from kafka_fixtures import TOPIC_PARTITIONS, start_broker

from agents.runtime.shutdown import EXIT_SHUTDOWN_TIMEOUT
from integration.helpers import Tail, Worker, make_posts, produce, running
from listener.kafka_admin import create_topics
from listener.record import encode_mention
from listener.topics import TopicNames

DEADLINE_S = 4


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
