"""End-to-end benchmark through a real broker: sustained posts/s and ingest -> queue latency.

Starts its own Kafka broker and one worker (real model, default settings: vetting,
copy dedup and spikes on; ``--workers N`` starts N, each with cores/N model threads),
then:
1. offers posts at a fixed rate (``--rate``) for ``--seconds`` and reports the achieved
   throughput and p50/p99 latency from ingest to arrival on the queue topic (every hop:
   classify, route, dedup) of the items that reach the queue;
2. produces a burst of ``--burst`` posts at once and reports the drain rate, next to the
   in-process classifier throughput measured in the same run (the pipeline's overhead).
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
from kafka import KafkaConsumer, TopicPartition

from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, free_ports
from listener.pacing import Pacer
from listener.producer import MentionProducer
from listener.record import Mention, decode_mention
from listener.settings import KafkaSettings
from listener.topics import TopicNames
from models.runtime import OnnxIntentClassifier, available_cores

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_STREAM = ROOT / "listener" / "samples" / "brand_posts.jsonl"


def sample_texts() -> list[str]:
    """Texts of the bundled sample stream."""
    return [
        orjson.loads(line)["text"]
        for line in SAMPLE_STREAM.read_bytes().splitlines()
        if line.strip()
    ]


def produce(
    settings: KafkaSettings, texts: list[str], prefix: str, count: int, rate: float | None
) -> float:
    """Produce ``count`` posts (cycling ``texts``) at ``rate``/s; returns the wall time taken."""
    pacer = Pacer(rate) if rate else None
    started = time.perf_counter()
    with MentionProducer(settings) as producer:
        for i in range(count):
            if pacer is not None:
                pacer.wait()
            producer.send_mention(
                # A number per post: the sample texts cycle, and copy-paste dedup would
                # keep all but the first copy of a text out of the queue.
                Mention.create(
                    source="bench",
                    native_id=f"{prefix}-{i}",
                    text=f"{texts[i % len(texts)]} ({i})",
                )
            )
    return time.perf_counter() - started


class Collector:
    """Consumes the classified and needs-response topics in a thread, timing arrivals."""

    def __init__(self, bootstrap: str, topics: TopicNames) -> None:
        self.classified: dict[str, float] = {}
        self.latencies: dict[str, float] = {}
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None
        )
        parts = []
        for topic in (topics.classified, topics.needs_response):
            parts += [
                TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic) or ()
            ]
        self._consumer.assign(parts)
        self._needs = topics.needs_response
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for tp, records in self._consumer.poll(timeout_ms=200).items():
                now = time.time()
                for record in records:
                    mention = decode_mention(record.value)
                    if tp.topic == self._needs:  # arrival in the queue, every hop included
                        ingested = mention.stage_times["ingested"]
                        self.latencies.setdefault(mention.id, now - ingested)
                    else:
                        self.classified[mention.id] = now

    def wait_for(self, prefix: str, count: int, timeout: float) -> bool:
        """Wait until ``count`` posts with id prefix ``prefix`` were classified."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for k in list(self.classified) if k.startswith(f"bench:{prefix}-")) >= count:
                return True
            time.sleep(0.1)
        return False

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Run both phases and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=150.0, help="offered posts/s in phase 1")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of phase 1")
    parser.add_argument("--burst", type=int, default=6000, help="posts in phase 2")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes in one consumer group, each with cores/N model threads",
    )
    args = parser.parse_args()
    texts = sample_texts()

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        port, cport, *webs = free_ports(2 + args.workers)
        broker = KafkaBroker(Path(tmp) / "kafka", port=port, controller_port=cport)
        broker.start(die_with_parent=True)
        topics = TopicNames("bench.")
        create_topics(broker.bootstrap, topics.all(), partitions=4)
        log = open(Path(tmp) / "worker.log", "wb")  # noqa: SIM115 - closed below
        env = dict(os.environ, AGENTS_MODEL__THREADS=str(max(1, available_cores() // args.workers)))
        workers = []
        for i, web in enumerate(webs):
            command = [
                sys.executable, "-m", "agents.commands.cli", "worker",
                "--bootstrap", broker.bootstrap,
                "--topic-prefix", topics.prefix, "--web-port", str(web),
                "--data-dir", str(Path(tmp) / f"worker-{i}"),
            ]  # fmt: skip
            workers.append(
                subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
            )
        collector = Collector(broker.bootstrap, topics)
        settings = KafkaSettings(bootstrap_servers=broker.bootstrap, topic_prefix=topics.prefix)
        try:
            deadline = time.monotonic() + 180
            for web in webs:
                while True:
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{web}/health", timeout=2)  # noqa: S310
                        break
                    except OSError as exc:
                        died = any(w.poll() is not None for w in workers)
                        if died or time.monotonic() > deadline:
                            log_text = (Path(tmp) / "worker.log").read_text()
                            raise SystemExit(f"worker did not start; log:\n{log_text}") from exc
                        time.sleep(0.5)
            produce(settings, texts, "warmup", 300, None)
            if not collector.wait_for("warmup", 300, 120):
                raise SystemExit("warm-up posts were not classified in 120 s")
            collector.latencies.clear()

            n = int(args.rate * args.seconds)
            t0 = time.time()
            produce(settings, texts, "steady", n, args.rate)
            ok = collector.wait_for("steady", n, 120)
            done = max(v for k, v in collector.classified.items() if k.startswith("bench:steady-"))
            lat = [v for k, v in collector.latencies.items() if k.startswith("bench:steady-")]
            print(
                f"phase 1: offered {args.rate:g} posts/s for {args.seconds:g} s ({n} posts): "
                f"{'all' if ok else 'NOT all'} classified; "
                f"achieved {n / (done - t0):,.0f} posts/s; ingest->queue latency over "
                f"{len(lat)} queued posts: p50 {pct(lat, 0.5) * 1000:.0f} ms, "
                f"p99 {pct(lat, 0.99) * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms"
            )

            t0 = time.time()
            produce(settings, texts, "burst", args.burst, None)
            ok = collector.wait_for("burst", args.burst, 300)
            done = max(v for k, v in collector.classified.items() if k.startswith("bench:burst-"))
            burst_rate = args.burst / (done - t0)
            print(
                f"phase 2: burst of {args.burst} posts {'drained' if ok else 'NOT drained'} at "
                f"{burst_rate:,.0f} posts/s end to end"
            )
        finally:
            collector.close()
            for worker in workers:
                worker.terminate()
            troubles = []
            for worker in workers:
                try:
                    if code := worker.wait(timeout=30):  # 75: it hit its shutdown deadline
                        troubles.append(f"a worker exited with status {code} after SIGTERM")
                except subprocess.TimeoutExpired:
                    troubles.append("a worker did not stop within 30 s of SIGTERM")
                    worker.kill()
                    worker.wait()
            log.close()
            broker.stop()
            if troubles:
                tail = (Path(tmp) / "worker.log").read_text(errors="replace").splitlines()[-40:]
                print(*troubles, "worker log tail:", *tail, sep="\n")

    classifier = OnnxIntentClassifier()
    batch = [texts[i % len(texts)] for i in range(4000)]
    classifier.predict(batch[:64])
    started = time.perf_counter()
    classifier.predict(batch)
    inproc = len(batch) / (time.perf_counter() - started)
    print(
        f"baseline, same run: in-process classifier alone {inproc:,.0f} posts/s on the same texts; "
        f"pipeline burst reaches {burst_rate / inproc:.0%} of it"
    )


if __name__ == "__main__":
    main()
