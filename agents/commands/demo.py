"""``brand-listener demo``: broker, worker and the bundled sample stream on one machine.

Starts (or reuses) a local Kafka broker with a persistent data dir, starts one
worker process and the support inbox (``--inbox-port``, default 8086; the URL and
a demo login, ``demo`` with a random password, are printed), replays the bundled
sample stream at a visible pace and prints, live, every post the router sends
to the human queue. The stream is replayed
with the sample brands' config (``--brands``), which lists each brand's own
accounts: their replies are marked as the brand's own and never queued. Ctrl-C stops the worker
and the broker it started; nothing is left running.

``--live bluesky --brand NAME [--keyword K ...]`` needs internet: instead of the
bundled file it runs ``brand-listener listen`` on a generated config (the
Bluesky Jetstream connector, public Jetstream unless ``--jetstream-url``) for
that brand, so real posts flow through the same worker. ``--duration S`` stops
the listener after S seconds (then ``--exit-when-done`` ends the demo once the
queue is quiet); without it a live demo runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml

from agents.inbox.demo import DEMO_USER, start_demo_inbox
from listener.brands import BrandMatcher, BrandSettings
from listener.connectors.bluesky import BlueskySettings
from listener.errors import FatalError
from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, die_with_parent, port_in_use
from listener.producer import MentionProducer
from listener.record import Mention, decode_mention, routing_label
from listener.replay import ReplayStats, load_brands, replay_file
from listener.samples import BRAND_POSTS, BRANDS
from listener.settings import KafkaSettings
from listener.topics import TopicNames

_COLOURS = {"complaint": "31", "question": "33", "praise": "32", "other": "37"}


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the top-level parser."""
    parser = sub.add_parser(
        "demo",
        help="run broker + worker + the bundled sample stream locally and show the human queue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=Path(".demo"), help="state dir (default .demo)"
    )
    parser.add_argument("--port", type=int, default=9092, help="Kafka client port (default 9092)")
    parser.add_argument(
        "--web-port", type=int, default=6066, help="worker /metrics port (default 6066)"
    )
    parser.add_argument(
        "--inbox-port", type=int, default=8086, help="support inbox port (default 8086)"
    )
    parser.add_argument("--stream", type=Path, default=BRAND_POSTS, help="JSONL posts to replay")
    parser.add_argument(
        "--brands",
        type=Path,
        default=BRANDS,
        metavar="FILE.yaml",
        help="brands (listen.yaml shape) whose own accounts are kept out of the queue "
        "(default: the sample brands)",
    )
    parser.add_argument(
        "--rate", type=float, default=40.0, help="replay pace, posts/s (default 40)"
    )
    parser.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop once the stream is replayed and the queue is quiet (default: keep running)",
    )
    parser.add_argument(
        "--keep-broker", action="store_true", help="leave the broker running on exit"
    )
    live = parser.add_argument_group("live mode (needs internet; the default demo is offline)")
    live.add_argument(
        "--live",
        choices=("bluesky",),
        help="listen to a live source instead of replaying --stream",
    )
    live.add_argument("--brand", metavar="NAME", help="live: the brand to listen for")
    live.add_argument(
        "--keyword",
        action="append",
        default=[],
        metavar="K",
        help="live: a keyword of the brand (repeatable; default: the brand name)",
    )
    live.add_argument(
        "--jetstream-url",
        default=BlueskySettings.model_fields["url"].default,
        metavar="URL",
        help="live bluesky: Jetstream /subscribe URL (default: %(default)s)",
    )
    live.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help="live: stop listening after S seconds (default: until Ctrl-C)",
    )
    parser.set_defaults(func=run_demo)


def _say(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m" if sys.stdout.isatty() else f"==> {message}", flush=True)


def _format_item(mention: Mention, tty: bool) -> str:
    cls, routing = mention.classification, mention.routing
    label = routing_label(cls) if cls else "?"
    confidence = cls.confidence if cls else 0.0
    priority = routing.priority if routing and routing.priority else "--"
    text = " ".join(mention.text.split())
    text = text if len(text) <= 90 else text[:87] + "..."
    tag = f"{label:<9}"
    if tty:
        tag = f"\033[{_COLOURS.get(label, '37')}m{tag}\033[0m"
    return f"{priority}  {tag} {confidence:4.2f}  {mention.source:<10} {text}"


def _wait_healthy(url: str, worker: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise RuntimeError(
                f"the worker exited with code {worker.returncode}; its log ends:\n{tail}"
            )
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not answer {url} within {timeout:.0f}s (log: {log})")


def _start_worker(
    args: argparse.Namespace, bootstrap: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    cmd = [
        sys.executable, "-m", "agents.commands.cli", "worker",
        "--bootstrap", bootstrap,
        "--web-port", str(args.web_port),
        "--data-dir", str(args.data_dir / "worker"),
    ]  # fmt: skip
    return subprocess.Popen(  # noqa: S603
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops the worker cleanly
        preexec_fn=die_with_parent,
    )


def _terminate(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM a child (the worker, the listener) and wait; kill it after 30 s."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def live_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ``listen`` config of a live demo: one brand, the Bluesky Jetstream connector."""
    brand = BrandSettings(name=args.brand, keywords=tuple(args.keyword) or (args.brand,))
    return {
        "listen": {"cursor_dir": str(args.data_dir / "live-cursors"), "metrics_port": None},
        "brands": [{"name": brand.name, "keywords": list(brand.keywords)}],
        "connectors": {"bluesky": {"url": args.jetstream_url}},
    }


def _start_listen(
    args: argparse.Namespace, bootstrap: str, log: IO[bytes]
) -> subprocess.Popen[bytes]:
    config = args.data_dir / "live-listen.yaml"
    config.write_text(yaml.safe_dump(live_config(args), sort_keys=False), encoding="utf-8")
    cmd = [
        sys.executable, "-m", "agents.commands.cli", "listen", "--config", str(config),
        "--bootstrap", bootstrap,
    ]  # fmt: skip
    return subprocess.Popen(  # noqa: S603
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def _queue_consumer(bootstrap: str, topic: str) -> Any:
    """A consumer on the human queue positioned at its end, so only this run's items show."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    partitions = consumer.partitions_for_topic(topic) or set()
    assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assignment)
    consumer.seek_to_end(*assignment)
    for tp in assignment:  # resolve the lazy seek now, before anything is produced
        consumer.position(tp)
    return consumer


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _check_live_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the live-mode flags, or None."""
    if args.live is None:
        live_only = ("brand", "duration")
        if any(getattr(args, a) is not None for a in live_only) or args.keyword:
            return "--brand, --keyword and --duration are for --live"
        return None
    if not args.brand or not args.brand.strip():
        return "--live needs --brand NAME"
    if args.duration is not None and args.duration <= 0:
        return "--duration must be positive"
    return None


class ReplayStopped(Exception):
    """The demo is stopping: the replay thread ends here."""


class StoppableTarget:
    """A replay target that stops the replay once ``stop`` is set (Ctrl-C, SIGTERM)."""

    def __init__(self, producer: MentionProducer, stop: threading.Event) -> None:
        self._producer, self._stop = producer, stop

    def send_mention(self, mention: Mention, *, stage: str = "replay") -> bool:
        """The producer's, unless the demo is stopping."""
        if self._stop.is_set():
            raise ReplayStopped
        return self._producer.send_mention(mention, stage=stage)

    def send_dead_letter(self, payload: bytes | str | None, **kwargs: Any) -> None:
        """The producer's, unless the demo is stopping."""
        if self._stop.is_set():
            raise ReplayStopped
        self._producer.send_dead_letter(payload, **kwargs)


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo until the stream is done (``--exit-when-done``) or Ctrl-C."""
    problem = _check_live_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.live is None and not args.stream.is_file():
        print(f"error: sample stream {args.stream} not found", file=sys.stderr)
        return 2
    brands: BrandMatcher | None = None
    if args.live is None:
        try:
            brands = load_brands(args.brands)
        except FatalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    args.data_dir.mkdir(parents=True, exist_ok=True)
    tty = sys.stdout.isatty()
    broker = KafkaBroker(args.data_dir / "kafka", port=args.port, controller_port=args.port + 1)
    topics = TopicNames()
    started_broker = False
    worker: subprocess.Popen[bytes] | None = None
    listener: subprocess.Popen[bytes] | None = None
    inbox: subprocess.Popen[bytes] | None = None
    consumer: Any = None
    source_thread: threading.Thread | None = None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        if broker.is_running():
            _say(f"reusing the Kafka broker already running at {broker.bootstrap}")
        else:
            if port_in_use(broker.host, args.port):
                print(
                    f"error: port {args.port} is taken by something else; use --port",
                    file=sys.stderr,
                )
                return 2
            _say("starting Apache Kafka (KRaft, single node); the first run fetches its jars")
            broker.start(die_with_parent=not args.keep_broker)
            started_broker = True
            _say(f"Kafka is up at {broker.bootstrap} (data in {broker.data_dir})")
        create_topics(broker.bootstrap, topics.all(), partitions=4)

        worker_log_path = args.data_dir / "worker.log"
        _say(f"starting a worker: classify -> route (log: {worker_log_path})")
        with open(worker_log_path, "ab") as worker_log:
            worker = _start_worker(args, broker.bootstrap, worker_log)
        metrics_url = f"http://127.0.0.1:{args.web_port}/metrics"
        _wait_healthy(
            f"http://127.0.0.1:{args.web_port}/health", worker, worker_log_path, timeout=180
        )
        inbox_url = "(not running)"
        with open(args.data_dir / "inbox.log", "ab") as inbox_log:
            try:
                inbox, inbox_url, password = start_demo_inbox(
                    args.data_dir, broker.bootstrap, args.inbox_port, inbox_log
                )
                _say(f"support inbox: {inbox_url}  login: {DEMO_USER} / {password} (new each run)")
            except RuntimeError as exc:  # the queue below still works without it
                _say(f"the support inbox did not start ({exc}; log: {inbox_log.name})")
        consumer = _queue_consumer(broker.bootstrap, topics.needs_response)

        replay_done = threading.Event()
        # Set before the demo itself stops the listener: its exit is then expected.
        listener_stopping = threading.Event()
        replay_error: list[BaseException] = []
        replayed: list[ReplayStats] = []

        def replay() -> None:
            try:
                with MentionProducer(KafkaSettings(bootstrap_servers=broker.bootstrap)) as producer:
                    target = StoppableTarget(producer, stop)
                    replayed.append(
                        replay_file(
                            args.stream, target, rate=args.rate, progress=False, brands=brands
                        )
                    )
            except ReplayStopped:
                pass  # Ctrl-C or SIGTERM: the producer above was flushed and closed
            except BaseException as exc:  # reported by the main thread
                replay_error.append(exc)
            finally:
                replay_done.set()

        source: Callable[[], None] = replay
        if args.live is not None:
            listen_log_path = args.data_dir / "listen.log"
            with open(listen_log_path, "ab") as listen_log:
                listener = _start_listen(args, broker.bootstrap, listen_log)
            running = listener

            def listen_for() -> None:  # the live stream has no end: --duration gives it one
                stop.wait(args.duration)  # None: until the demo stops
                listener_stopping.set()
                _terminate(running)
                if running.returncode not in (0, -signal.SIGTERM):
                    replay_error.append(
                        RuntimeError(f"listen exited {running.returncode}; see {listen_log_path}")
                    )
                replay_done.set()

            source = listen_for
            until = f"for {args.duration:g} s" if args.duration is not None else "until Ctrl-C"
            _say(
                f"listening live to {args.live} ({args.jetstream_url}) for brand "
                f"{args.brand!r} {until} (log: {listen_log_path}); routed to the human queue:"
            )
        else:
            _say(
                f"replaying {args.stream.name} at {args.rate:g} posts/s; routed to the human queue:"
            )
        print(f"{'prio':<4}  {'label':<9} {'conf':>4}  {'source':<10} text", flush=True)
        source_thread = threading.Thread(target=source, name="source", daemon=True)
        source_thread.start()

        shown, latencies, quiet_since = 0, [], time.monotonic()
        summary_printed = False
        while not stop.is_set():
            batches = consumer.poll(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    mention = decode_mention(record.value)
                    print(_format_item(mention, tty), flush=True)
                    shown += 1
                    stages = mention.stage_times
                    if "routed" in stages and "ingested" in stages:
                        latencies.append(stages["routed"] - stages["ingested"])
                    quiet_since = time.monotonic()
            if worker.poll() is not None:
                print(
                    f"error: the worker exited (code {worker.returncode}); see {worker_log_path}",
                    file=sys.stderr,
                )
                return 1
            if (
                listener is not None
                and not listener_stopping.is_set()
                and listener.poll() is not None
            ):
                print(
                    f"error: the listener exited (code {listener.returncode}); "
                    f"see {args.data_dir / 'listen.log'}",
                    file=sys.stderr,
                )
                return 1
            if replay_done.is_set() and not summary_printed and time.monotonic() - quiet_since > 8:
                if replay_error:
                    what = "listen" if args.live else "replay"
                    print(f"error: {what} failed: {replay_error[0]}", file=sys.stderr)
                    return 1
                summary_printed = True
                _say(
                    f"{shown} posts need a human answer; ingest -> routed latency "
                    f"p50 {_percentile(latencies, 0.5) * 1000:.0f} ms, "
                    f"p99 {_percentile(latencies, 0.99) * 1000:.0f} ms"
                )
                if replayed and replayed[0].own_accounts:
                    _say(
                        f"{replayed[0].own_accounts} posts by the brands' own accounts were "
                        "kept out of the queue (rule own_account)"
                    )
                _say(f"metrics: {metrics_url}   worker log: {worker_log_path}   inbox: {inbox_url}")
                if args.exit_when_done:
                    break
                if args.live:
                    _say("the listener stopped; the worker still serves the queue; Ctrl-C stops")
                else:
                    _say(
                        "still listening (replay more: brand-listener replay FILE.jsonl); "
                        "Ctrl-C stops"
                    )
        return 0
    except KeyboardInterrupt:
        print("", flush=True)
        return 0
    finally:
        # Stop in order, ignoring a second Ctrl-C so nothing is orphaned; every Kafka
        # client of this process is closed before the broker stops (no burst of errors).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop.set()
        if source_thread is not None:
            source_thread.join(timeout=15)
        if consumer is not None:
            consumer.close()
        if listener is not None and listener.poll() is None:
            _say("stopping the listener")
            _terminate(listener)
        if inbox is not None:
            _terminate(inbox)
        if worker is not None:
            _say("stopping the worker")
            _terminate(worker)
        if started_broker and not args.keep_broker:
            _say("stopping Kafka")
            broker.stop()
        signal.signal(signal.SIGINT, previous)
