"""Chaos scenarios: failures a deployment sees, under load; each counts lost and duplicate posts.

A :class:`Run` feeds posts into ``mentions.raw`` at a steady rate (a
:class:`Feeder` thread that remembers every id Kafka acknowledged), runs
worker subprocesses (``python -m agents.worker``, the real ONNX model) and
does something bad to them, then lets one last worker drain the backlog and
counts, over every acknowledged post:

* lost: in neither ``mentions.classified`` nor the dead-letter topic (must be 0);
* duplicates: classified records beyond one per id (at-least-once allows them);
* the group's committed lag on ``mentions.raw`` at the end (must be 0: every
  partition's committed offset reached its end);
* each stop's exit status and seconds (target: 0 within 10 s).

The scenarios (:data:`SCENARIOS` and :func:`sink_outage`) are run short by
``tests/chaos/test_chaos.py``
(``make test``) and long by ``tests/chaos/soak.py`` (``make soak``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from agents.runtime.recovery_watchdog import STALL_REPORT
from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, free_port, free_ports
from listener.record import Mention, encode_mention
from listener.topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 4
TEXTS = (
    "@VoltAir my flight {n} was cancelled and nobody answers the phone",
    "@AcmeBank how do I change the address on my account? ref {n}",
    "Thanks @Tastyburger, order {n} was perfect",
    "Saw a @NimbusMobile billboard today, number {n}",
    "@NimbusMobile total outage in my area since {n}am, any update?",
)


@dataclass
class Outcome:
    """What one scenario run found."""

    scenario: str
    produced: int
    lost: list[str]
    duplicates: int
    dead_letters: int
    committed_lag: int
    stops: list[tuple[str, int, float]]
    seconds: float
    recovery_stalls: int = 0
    """Stall reports of the table-recovery watchdog in the workers' logs (each one restarted
    a recovery that read nothing for ``recovery_stall_after_s``)."""

    def line(self) -> str:
        """One line for logs and the README."""
        stops = ", ".join(f"{how} {code} in {s:.1f}s" for how, code, s in self.stops)
        return (
            f"{self.scenario}: produced {self.produced}, lost {len(self.lost)}"
            f"{' ' + str(self.lost[:5]) if self.lost else ''}, duplicates {self.duplicates}, "
            f"dead letters {self.dead_letters}, committed lag {self.committed_lag}, "
            f"{self.seconds:.0f}s; stops: {stops or 'none'}"
            f"{f'; recovery stalls {self.recovery_stalls}' if self.recovery_stalls else ''}"
        )


class Feeder(threading.Thread):
    """Produces posts at ``rate`` per second until stopped; keeps the ids Kafka acknowledged."""

    def __init__(self, bootstrap: str, topic: str, rate: float, tag: str) -> None:
        super().__init__(daemon=True, name=f"feeder-{tag}")
        self.bootstrap, self.topic, self.rate, self.tag = bootstrap, topic, rate, tag
        self.acked: list[str] = []
        self.failed = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        producer = KafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            linger_ms=5,
            retries=2_147_483_647,
            delivery_timeout_ms=300_000,
            request_timeout_ms=10_000,
            reconnect_backoff_max_ms=1_000,
        )
        n, tick = 0, 0.1
        next_at = time.monotonic()
        try:
            while not self._stop_event.is_set():
                for _ in range(max(1, round(self.rate * tick))):
                    post = Mention.create(
                        source="chaos", native_id=f"{self.tag}-{n}", text=TEXTS[n % 5].format(n=n)
                    )
                    future = producer.send(
                        self.topic, key=post.id.encode(), value=encode_mention(post)
                    )
                    future.add_callback(self._acked, post.id)
                    future.add_errback(self._failed)
                    n += 1
                next_at += tick
                time.sleep(max(0.0, next_at - time.monotonic()))
            producer.flush(timeout=300)
        finally:
            producer.close(timeout=30)

    def _acked(self, post_id: str, _metadata: Any) -> None:
        with self._lock:
            self.acked.append(post_id)

    def _failed(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def finish(self) -> None:
        """Stop producing; return once every send is acknowledged or failed."""
        self._stop_event.set()
        self.join(330)


class Worker:
    """One ``python -m agents.worker`` subprocess of the run's group."""

    def __init__(self, run: Run, name: str, env: dict[str, str], program: list[str]) -> None:
        self.name = name
        self.port = free_port()
        self.log = run.tmp / f"worker-{name}.log"
        command = [
            *program, "--bootstrap", run.bootstrap,
            "--topic-prefix", run.topics.prefix, "--app-id", run.app_id,
            "--web-port", str(self.port),
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 - our own module
                command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"worker {self.name} exited {self.proc.returncode}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(  # noqa: S310 - loopback
                    f"http://127.0.0.1:{self.port}/health", timeout=2
                ):
                    return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"worker {self.name} not healthy after {timeout}s:\n{self.tail()}")

    def stop(self, sig: signal.Signals, timeout: float = 60.0) -> tuple[str, int, float]:
        """Send ``sig``; (signal name, exit status, seconds until it exited)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(10)
        return sig.name, code, time.monotonic() - started

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Run:
    """One scenario's topics, group, feeder and workers on a broker."""

    tmp: Path
    bootstrap: str
    scenario: str
    rate: float
    env: dict[str, str] = field(default_factory=dict)
    broker: KafkaBroker | None = None
    workers: list[Worker] = field(default_factory=list)
    stops: list[tuple[str, int, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        stamp = f"{self.scenario}-{time.monotonic_ns() % 10**9}"
        self.topics = TopicNames(f"chaos-{stamp}.")
        self.app_id = f"chaos-{stamp}"
        create_topics(self.bootstrap, self.topics.all(), PARTITIONS)
        self.feeder = Feeder(self.bootstrap, self.topics.raw, self.rate, stamp)
        self.started = time.monotonic()

    def worker(self, program: list[str] | None = None) -> Worker:
        """Start a worker of the group and wait until it serves /health.

        Args:
            program: What to run, with the worker's flags after it (default
                ``python -m agents.worker``).
        """
        env = {
            **os.environ,
            "AGENTS_DATA_DIR": str(self.tmp / "faust-data" / str(len(self.workers))),
            "AGENTS_SESSION_TIMEOUT_S": "6",
            "AGENTS_HEALTH__WEB_HOST": "127.0.0.1",
            "BRAND_LISTENER_TRACE_COMMITS": "1",
            **self.env,
        }
        program = program or [sys.executable, "-m", "agents.worker"]
        worker = Worker(self, f"{self.scenario}-{len(self.workers)}", env, program)
        self.workers.append(worker)
        worker.wait_healthy()
        return worker

    def stop(self, worker: Worker, sig: signal.Signals) -> None:
        self.stops.append(worker.stop(sig))

    def drain(
        self,
        timeout: float = 300.0,
        last: Worker | None = None,
        also: Callable[[], bool] = lambda: True,
    ) -> Outcome:
        """Stop feeding, let one worker (``last``, or a new one) finish the backlog, and count.

        ``also`` must hold too before the last worker is stopped (e.g. every ticket made).
        """
        self.feeder.finish()
        want = set(self.feeder.acked)
        last = last or self.worker()
        deadline = time.monotonic() + timeout
        classified: Counter[str] = Counter()
        dead: set[str] = set()
        while time.monotonic() < deadline:
            classified = ids_in(self.bootstrap, self.topics.classified)
            dead = set(ids_in(self.bootstrap, self.topics.dead_letter, inner="payload"))
            if want <= set(classified) | dead and committed_lag(self) == 0 and also():
                break
            time.sleep(2)
        self.stop(last, signal.SIGTERM)
        lag = committed_lag(self)
        lost = sorted(want - set(classified) - dead)
        duplicates = sum(classified.values()) - len(classified)
        return Outcome(
            self.scenario,
            len(want),
            lost,
            duplicates,
            len(dead & want),
            lag,
            self.stops,
            time.monotonic() - self.started,
            sum(w.log_text().count(STALL_REPORT) for w in self.workers),
        )

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ({w.log})\n{w.tail(25)}" for w in self.workers)

    def where(self, ids: list[str]) -> str:
        """Where ``ids`` are in ``mentions.raw`` and what the group committed: to find a loss."""
        found = offsets_of(self.bootstrap, self.topics.raw, set(ids))
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.app_id)
        try:
            parts = [TopicPartition(self.topics.raw, p) for p in range(PARTITIONS)]
            committed = {tp.partition: consumer.committed(tp) for tp in parts}
        finally:
            consumer.close()
        places = ", ".join(f"{i} at [{p}]@{o}" for i, (p, o) in sorted(found.items()))
        return f"lost posts in {self.topics.raw}: {places}; committed: {committed}"


def records_of(bootstrap: str, topic: str) -> Iterator[Any]:
    """Every record of ``topic``, start to the end offsets at the call (60 s at most)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        parts = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        end = consumer.end_offsets(parts)
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp] for tp in parts) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                yield from records
    finally:
        consumer.close()


def ids_in(bootstrap: str, topic: str, inner: str | None = None) -> Counter[str]:
    """How often each Mention id is in ``topic`` (for dead letters: in the ``inner`` payload)."""
    found: Counter[str] = Counter()
    for record in records_of(bootstrap, topic):
        value = orjson.loads(record.value)
        if inner is not None:
            payload = value.get(inner)
            value = (
                orjson.loads(payload)
                if isinstance(payload, str) and payload.startswith("{")
                else {}
            )
        if isinstance(value, dict) and "id" in value:
            found[str(value["id"])] += 1
    return found


def offsets_of(bootstrap: str, topic: str, ids: set[str]) -> dict[str, tuple[int, int]]:
    """(partition, offset) of each of ``ids`` in ``topic``."""
    found: dict[str, tuple[int, int]] = {}
    for record in records_of(bootstrap, topic):
        post_id = str(orjson.loads(record.value).get("id"))
        if post_id in ids:
            found[post_id] = (record.partition, record.offset)
    return found


def committed_lag(run: Run) -> int:
    """Records of ``mentions.raw`` the group has not committed (over all partitions)."""
    consumer = KafkaConsumer(bootstrap_servers=run.bootstrap, group_id=run.app_id)
    try:
        parts = [TopicPartition(run.topics.raw, p) for p in range(PARTITIONS)]
        ends = consumer.end_offsets(parts)
        return sum(ends[tp] - (consumer.committed(tp) or 0) for tp in parts)
    finally:
        consumer.close()


# -- the scenarios --------------------------------------------------------


def stops_in_turn(run: Run, busy_s: float, sig: signal.Signals, stops: int = 4) -> None:
    """Under load, ``stops`` times: start one more worker, then stop the oldest with ``sig``."""
    live = [run.worker()]
    for _ in range(stops):
        time.sleep(busy_s)
        live.append(run.worker())
        time.sleep(busy_s / 2)
        oldest = live.pop(0)
        run.stop(oldest, sig)


def sigterm_in_turn(run: Run, busy_s: float) -> None:
    """SIGTERM four workers in turn under load."""
    stops_in_turn(run, busy_s, signal.SIGTERM)


def kill9_in_turn(run: Run, busy_s: float) -> None:
    """kill -9 four workers in turn under load."""
    stops_in_turn(run, busy_s, signal.SIGKILL)


def scale_up_and_down(run: Run, busy_s: float) -> None:
    """Workers join 1 -> 3 and leave 3 -> 1 under load (SIGTERM)."""
    live = [run.worker()]
    for _ in range(2):
        time.sleep(busy_s)
        live.append(run.worker())
    for _ in range(2):
        time.sleep(busy_s)
        run.stop(live.pop(), signal.SIGTERM)
    time.sleep(busy_s)
    run.stop(live.pop(), signal.SIGTERM)


def broker_restart(run: Run, busy_s: float) -> None:
    """The broker stops mid-stream for a few seconds and starts again; two workers ride it out."""
    assert run.broker is not None, "broker_restart needs a broker of its own"
    live = [run.worker(), run.worker()]
    time.sleep(busy_s)
    run.broker.stop()
    time.sleep(5)
    run.broker.start(die_with_parent=True)
    time.sleep(busy_s)
    for worker in live:
        run.stop(worker, signal.SIGTERM)


SCENARIOS: dict[str, Callable[[Run, float], None]] = {
    "sigterm_in_turn": sigterm_in_turn,
    "kill9_in_turn": kill9_in_turn,
    "scale_up_and_down": scale_up_and_down,
    "broker_restart": broker_restart,
}
"""The worker and broker scenarios; the sink outage is :func:`sink_outage` (it needs a server)."""


@contextmanager
def own_broker(tmp: Path) -> Iterator[KafkaBroker]:
    """A broker for one scenario (the broker restart must not hit the suite's shared one)."""
    port, controller = free_ports(2)
    broker = KafkaBroker(tmp / "kafka", port=port, controller_port=controller)
    broker.start(die_with_parent=True)
    try:
        yield broker
    finally:
        broker.stop()


def run_scenario(
    name: str,
    tmp: Path,
    bootstrap: str,
    rate: float,
    busy_s: float,
    broker: KafkaBroker | None = None,
    drain_timeout_s: float = 300.0,
) -> Outcome:
    """Run scenario ``name`` once: feed, do it, drain (at most ``drain_timeout_s``), count."""
    run = Run(tmp, bootstrap, name, rate, broker=broker)
    try:
        run.feeder.start()
        SCENARIOS[name](run, busy_s)
        outcome = run.drain(drain_timeout_s)
    except BaseException:
        print(run.logs(), file=sys.stderr)
        raise
    finally:
        run.close()
    if outcome.lost or outcome.committed_lag:
        print(run.logs(), file=sys.stderr)
        if outcome.lost:
            print(run.where(outcome.lost), file=sys.stderr)
    return outcome


@dataclass
class SinkOutcome:
    """What reached the ticketing system in the sink-outage scenario."""

    queued: int
    tickets: int
    missing: list[str]
    repeated: dict[str, int]
    dead_lettered: int
    requests: int

    def line(self) -> str:
        return (
            f"sink outage: {self.queued} queued, {self.tickets} tickets, missing "
            f"{len(self.missing)}, repeated {len(self.repeated)}, dead-lettered "
            f"{self.dead_lettered}, {self.requests} POSTs to the sink"
        )


def sink_outage(
    tmp: Path, bootstrap: str, rate: float, busy_s: float, drain_timeout_s: float = 300.0
) -> tuple[Outcome, SinkOutcome]:
    """Zendesk answers 503 while posts arrive (two workers, one SIGTERMed), then comes back.

    Every queued Mention must become exactly one ticket (or a dead letter after
    its retry budget, which this run sets high enough that none should be).
    """
    from contract.sink_servers import ZendeskServer
    from integration.helpers import FAST_RETRIES, Servers

    zendesk = ZendeskServer()
    down = threading.Event()
    zendesk.down = down.is_set
    with Servers(zendesk) as servers:
        run = Run(tmp, bootstrap, "sink_outage", rate)
        sinks = {"zendesk": {"url": zendesk.url, "email": "agent@acme.test", "api_token": "tok"}}
        run.env = {
            "AGENTS_SINKS": orjson.dumps(sinks).decode(),
            "AGENTS_DELIVERY": orjson.dumps({**FAST_RETRIES, "max_attempts": 10_000}).decode(),
        }
        try:
            down.set()
            run.feeder.start()
            first, second = run.worker(), run.worker()
            time.sleep(busy_s)
            run.stop(first, signal.SIGTERM)
            time.sleep(busy_s)
            down.clear()

            def tickets() -> Counter[str]:
                created = servers.run(lambda: list(zendesk.created.values()))
                return Counter(str(t["external_id"]) for t in created)

            def every_queued_post_has_a_ticket_or_a_dead_letter() -> bool:
                queued = set(ids_in(bootstrap, run.topics.needs_response))
                letters = set(ids_in(bootstrap, run.topics.dead_letter, inner="payload"))
                return bool(queued) and queued <= set(tickets()) | letters

            outcome = run.drain(
                drain_timeout_s, last=second, also=every_queued_post_has_a_ticket_or_a_dead_letter
            )
            queued = set(ids_in(bootstrap, run.topics.needs_response))
            letters = set(ids_in(bootstrap, run.topics.dead_letter, inner="payload"))
            made = tickets()
            posts = servers.run(lambda: sum(1 for r in zendesk.requests if r[0] == "POST"))
        except BaseException:
            print(run.logs(), file=sys.stderr)
            raise
        finally:
            run.close()
    sink = SinkOutcome(
        queued=len(queued),
        tickets=sum(made.values()),
        missing=sorted(queued - set(made) - letters),
        repeated={i: n for i, n in made.items() if n > 1},
        dead_lettered=len(queued & letters),
        requests=posts,
    )
    return outcome, sink
