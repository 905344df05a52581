"""The worker end to end: real broker, real ONNX model, the worker as a real subprocess.

Expected routing is computed in this process with the same model (one post per
ONNX run on both sides, so int8 results do not depend on batch-mates), the
classify agent's record (:func:`agents.classify.classification_of`, with the
model's needs_response decision) and :func:`agents.rules.route`; the worker
must queue exactly those ids.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.classify import classification_of
from agents.rules import route
from agents.settings import AgentSettings
from listener.kafka_local import free_port
from listener.record import Mention, encode_mention
from listener.topics import TopicNames

THRESHOLD = 0.5
ROOT = Path(__file__).resolve().parents[2]

TEMPLATES = (
    "@{b} your app crashes every time I open it, order #{n} is stuck",
    "Been waiting {n} days for my refund from @{b}. Worst service ever.",
    "@{b} charged me twice this month and nobody answers the phone ({n})",
    "my @{b} account was hacked and my card got stolen, help!!! ref {n}",
    "Total outage again @{b}, no service in the whole city since {n}am",
    "Does @{b} ship to Canada? Asking for order {n}",
    "How do I reset my @{b} password? tried {n} times",
    "@{b} is the new plan available in my area? zip {n}",
    "When does the @{b} store on Main St open tomorrow? ({n})",
    "Huge thanks to @{b} support, fixed my issue in {n} minutes!",
    "Loving the new @{b} update, best app on my phone #{n}",
    "@{b} delivered a day early, great job team ({n})",
    "@{b} announced a new store opening downtown, {n} jobs",
    "Saw a @{b} billboard on the highway today, number {n}",
    "@{b} quarterly results are out, revenue up {n}%",
)
BRANDS = ("NimbusMobile", "AcmeBank", "Tastyburger", "VoltAir")


def make_posts(tag: str, count: int) -> list[Mention]:
    return [
        Mention.create(
            source="itest",
            native_id=f"{tag}-{i}",
            text=TEMPLATES[i % len(TEMPLATES)].format(b=BRANDS[i % len(BRANDS)], n=i + 7),
        )
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def classifier():  # type: ignore[no-untyped-def]
    """The model the worker runs: the bundled one, or ``AGENTS_MODEL_DIR`` (inherited by it)."""
    from models.runtime import OnnxIntentClassifier

    return OnnxIntentClassifier(AgentSettings().model_dir, batch_size=1)


def needing_response(classifier, posts: list[Mention]) -> set[str]:  # type: ignore[no-untyped-def]
    """The ids the worker must queue: same model, same rules, computed here."""
    expected = set()
    for post, prediction in zip(posts, classifier.predict([p.text for p in posts]), strict=True):
        classification = classification_of(prediction, classifier.name)
        classified = post.with_stage("classified", classification=classification)
        if route(classified, THRESHOLD).needs_response:
            expected.add(post.id)
    return expected


class Worker:
    """``python -m agents.worker`` as a subprocess, logging to a file."""

    def __init__(self, tmp: Path, bootstrap: str, topics: TopicNames, group_id: str) -> None:
        self.port = free_port()
        self.log_path = tmp / f"worker-{self.port}.log"
        self.args = [
            sys.executable, "-m", "agents.worker",
            "--bootstrap", bootstrap, "--topic-prefix", topics.prefix, "--app-id", group_id,
            "--web-port", str(self.port), "--threshold", str(THRESHOLD),
            "--model-batch-size", "1", "--batch-size", "32",
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "AGENTS_DATA_DIR": str(tmp / "faust-data"),
            "AGENTS_SESSION_TIMEOUT_S": "6",
            "AGENTS_WEB_HOST": "127.0.0.1",
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            if self.get("/health")[0] == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker not healthy after {timeout}s:\n{self.tail()}")

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                return response.status, response.read()
        except OSError:
            return 0, b""

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker ignored signal {sig}:\n{self.tail()}") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    try:
        worker.start()
        yield worker
    finally:
        worker.kill()


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
            pause_s: float = 0.0) -> None:  # fmt: skip
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key, value=value)
            if pause_s:
                time.sleep(pause_s)
        producer.flush(timeout=30)
    finally:
        producer.close()


class Tail:
    """Reads a whole topic from the beginning, with no consumer group."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        parts = self.consumer.partitions_for_topic(topic) or set()
        self.consumer.assign([TopicPartition(topic, p) for p in sorted(parts)])
        self.consumer.seek_to_beginning()
        self.records: list[tuple[bytes | None, bytes]] = []

    def until(self, done: Callable[[], bool], timeout: float, quiet_s: float = 0.0) -> None:
        """Poll until ``done()`` and nothing new for ``quiet_s``, or ``timeout``."""
        deadline = time.monotonic() + timeout
        last_new = time.monotonic()
        while time.monotonic() < deadline:
            batch = self.consumer.poll(timeout_ms=300)
            for messages in batch.values():
                self.records.extend((m.key, m.value) for m in messages)
                last_new = time.monotonic()
            if done() and time.monotonic() - last_new >= quiet_s:
                return

    def ids(self) -> list[str]:
        return [orjson.loads(value)["id"] for _, value in self.records]

    def close(self) -> None:
        self.consumer.close()


def committed_lag(bootstrap: str, topic: str, group_id: str) -> int:
    """Records of ``topic`` not yet committed by ``group_id``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(parts)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in parts)
    finally:
        consumer.close()


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
