"""Soak: stop workers of one group while posts keep arriving; count posts never classified.

At-least-once says every post reaches ``mentions.classified`` (or the dead-letter
topic) however often workers stop. This starts its own broker, feeds ~``--rate``
posts/s, starts and SIGTERMs ``--stops`` workers one after another (each runs
``--busy`` seconds under load), then lets a last worker finish the backlog and
reports each stop's exit status and the produced posts found in neither topic.

Not part of ``make test``: it finds a loss that is still open (README, *Delivery
semantics*). Measured 2026-11-24 00:12-00:37 UTC, 4 stops, ~400 posts/s, one run
at a time: with 512-event batches (the default) posts were lost in 2 of 5 runs (16 of
19,840 and 14 of 18,440), with ``AGENTS_BATCH_SIZE=64`` in 1 of 5 (16 of 9,800); no
dead letters; the lost posts were produced around a stop that exited 0. An
earlier pytest variant of the same scenario lost 115 of 13,280 posts in one of
four runs (none in three), and 2 of 10,040 in one of five runs with a drain
before the stop (reverted, 509be24): the loss is intermittent in size.

    .venv/bin/python tests/perf/soak_stop_under_load.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from listener.kafka_local import KafkaBroker, create_topics, free_ports
from listener.record import Mention, encode_mention
from listener.topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
TEXTS = (
    "@VoltAir my flight {n} was cancelled and nobody answers the phone",
    "@AcmeBank how do I change the address on my account? ref {n}",
    "Thanks @Tastyburger, order {n} was perfect",
    "Saw a @NimbusMobile billboard today, number {n}",
)


def ids_in(bootstrap: str, topic: str, field: str | None = None) -> set[str]:
    """Every Mention id in ``topic`` (for dead letters: inside ``field``)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in parts])
    consumer.seek_to_beginning()
    found: set[str] = set()
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 3:
        for records in consumer.poll(timeout_ms=500).values():
            idle_since = time.monotonic()
            for record in records:
                value = orjson.loads(record.value)
                inner = value.get(field) if field else value
                if isinstance(inner, str):
                    inner = orjson.loads(inner) if inner.startswith("{") else {}
                if isinstance(inner, dict) and "id" in inner:
                    found.add(str(inner["id"]))
    consumer.close()
    return found


def start_worker(
    broker: KafkaBroker, topics: TopicNames, data: Path, log: Path
) -> subprocess.Popen[bytes]:
    """A worker subprocess (defaults but a free web port), once healthy."""
    (web,) = free_ports(1)
    command = [
        sys.executable, "-m", "agents.cli", "worker", "--bootstrap", broker.bootstrap,
        "--topic-prefix", topics.prefix, "--app-id", "soak", "--web-port", str(web),
        "--data-dir", str(data),
    ]  # fmt: skip
    proc = subprocess.Popen(  # noqa: S603
        command, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=dict(os.environ)
    )
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{web}/health", timeout=2)  # noqa: S310
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"worker exited with {proc.returncode}; see {log}") from None
            time.sleep(0.5)


def one_run(args: argparse.Namespace, tmp: Path) -> None:
    """Stops under load, then the count of posts never classified."""
    port, cport = free_ports(2)
    broker = KafkaBroker(tmp / "kafka", port=port, controller_port=cport)
    broker.start(die_with_parent=True)
    topics = TopicNames("soak.")
    create_topics(broker.bootstrap, topics.all(), partitions=4)
    produced: list[str] = []
    feeding = threading.Event()
    feeding.set()

    def feed() -> None:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
        n = 0
        while feeding.is_set():
            for _ in range(int(args.rate / 10)):
                post = Mention.create(
                    source="soak", native_id=str(n), text=TEXTS[n % 4].format(n=n)
                )
                producer.send(topics.raw, key=post.id.encode(), value=encode_mention(post))
                produced.append(post.id)
                n += 1
            producer.flush(timeout=30)
            time.sleep(0.1)
        producer.close()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    codes = []
    try:
        for i in range(args.stops):
            proc = start_worker(broker, topics, tmp / "data", tmp / f"worker-{i}.log")
            time.sleep(args.busy)
            started = time.monotonic()
            proc.terminate()
            codes.append((proc.wait(120), round(time.monotonic() - started, 1)))
        feeding.clear()
        feeder.join(30)
        proc = start_worker(broker, topics, tmp / "data", tmp / "worker-last.log")
        want = set(produced)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            seen = ids_in(broker.bootstrap, topics.classified)
            if want <= seen:
                break
        proc.terminate()
        codes.append((proc.wait(120), None))
        dead = ids_in(broker.bootstrap, topics.dead_letter, "payload")
        missing = want - seen - dead
        print(
            f"stops (exit status, seconds): {codes}; produced {len(want)}, dead letters "
            f"{len(dead & want)}, never classified {len(missing)} {sorted(missing)[:5]}",
            flush=True,
        )
    finally:
        feeding.clear()
        broker.stop()


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--stops", type=int, default=4)
    parser.add_argument("--rate", type=float, default=400.0, help="posts/s offered")
    parser.add_argument("--busy", type=float, default=4.0, help="seconds under load per worker")
    args = parser.parse_args()
    for run in range(args.runs):
        with tempfile.TemporaryDirectory(prefix=f"soak-{run}-") as tmp:
            one_run(args, Path(tmp))


if __name__ == "__main__":
    main()
