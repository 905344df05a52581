"""Helpers shared by the integration tests; no test module imports another.

* sample posts and the routing they must get: :func:`make_posts`, :func:`needing_response`;
* the worker (``python -m agents.worker``) as a subprocess: :class:`Worker`, :func:`running`;
* Kafka: :func:`produce`, :class:`Tail`, :func:`read_all`, :func:`committed_lag`;
* sink servers on a background event loop: :class:`Servers`, with :func:`wait_for`
  and :data:`FAST_RETRIES` for the worker's delivery settings;
* ``listen`` on a local Jetstream: :func:`start_listen_on_jetstream`, :func:`stop_listen`.

The model fixture (``classifier``) lives in ``conftest.py`` beside this file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import orjson
import yaml
from contract.sink_servers import SinkServer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from agents.pipeline.classify import classification_of
from agents.pipeline.rules import route
from listener.kafka_local import free_port
from listener.listen import listen, load_settings
from listener.record import Mention
from listener.topics import TopicNames

THRESHOLD = 0.5
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")
FAST_RETRIES = {"retry_base_s": 0.05, "retry_cap_s": 0.5, "breaker_reset_s": 0.5}

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
            "AGENTS_HEALTH__WEB_HOST": "127.0.0.1",
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


def read_all(bootstrap: str, topic: str, timeout: float = 30.0) -> list[tuple[bytes | None, bytes]]:
    """Every record in ``topic`` (all partitions, from the start to the current end)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        records: list[tuple[bytes | None, bytes]] = []
        deadline = time.monotonic() + timeout
        while any(consumer.position(tp) < end[tp] for tp in parts):
            assert time.monotonic() < deadline, f"timed out reading {topic}"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend((r.key, r.value) for r in batch)
        return records
    finally:
        consumer.close()


class Servers:
    """Sink servers on their own event loop in a background thread."""

    def __init__(self, *servers: SinkServer) -> None:
        self.servers = servers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the servers' loop (their state is only touched there)."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def __enter__(self) -> Servers:
        self.thread.start()
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def start_listen_on_jetstream(
    tmp_path: Path, jetstream_url: str, bootstrap: str, topics: TopicNames
) -> asyncio.Task[int]:
    """Start ``listen`` in the running loop: brand ``acme``, bluesky on a local Jetstream.

    Its config is ``tmp_path/listen.yaml`` and its cursors ``tmp_path/cursors``;
    stop it with :func:`stop_listen`.
    """
    config = tmp_path / "listen.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"cursor_dir": str(tmp_path / "cursors"), "metrics_port": None},
                "brands": [{"name": "acme", "keywords": ["acme"]}],
                "connectors": {"bluesky": {"url": jetstream_url, "rewind_s": 0.002}},
            }
        )
    )
    settings = load_settings(config, bootstrap_servers=bootstrap, topic_prefix=topics.prefix)
    return asyncio.create_task(listen(settings, registry_=CollectorRegistry()))


async def stop_listen(task: asyncio.Task[int]) -> int:
    """SIGTERM this process (``listen``'s own handler stops the runner); its exit status."""
    os.kill(os.getpid(), signal.SIGTERM)
    return await asyncio.wait_for(task, 30)
