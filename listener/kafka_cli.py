"""``brand-listener kafka fetch|start|stop|status|logs``: a local single-node Kafka broker.

The broker runs in the background (``start`` returns once it accepts requests) and keeps
its config, ``broker.log``, pid file and data in ``--data-dir`` (default ``.demo/kafka``
under the current directory), so topics and committed offsets survive a stop/start. The
jars are fetched once with Maven into ``$BRAND_LISTENER_KAFKA_HOME`` (default
``~/.cache/brand-listener/kafka-4.4.0``); Java 17+ and Maven must be installed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from listener.kafka_admin import create_topics
from listener.kafka_local import KafkaBroker, KafkaLocalError, resolve_jars
from listener.topics import TopicNames

DEFAULT_DATA_DIR = Path(".demo/kafka")
EXIT_OK, EXIT_ERROR, EXIT_NOT_RUNNING = 0, 1, 3


def _broker(args: argparse.Namespace) -> KafkaBroker:
    """The broker for ``--data-dir``; host and ports come from its config when not given."""
    broker = KafkaBroker(args.data_dir, kafka_home=args.kafka_home)
    if getattr(args, "port", None) is not None:  # start: the command line decides
        broker.host, broker.port = args.host, args.port
        broker.controller_port, broker.partitions = args.controller_port, args.partitions
    elif broker.config_file.is_file():  # stop/status/logs: what the broker was started with
        for line in broker.config_file.read_text().splitlines():
            if line.startswith("advertised.listeners=PLAINTEXT://"):
                host, _, port = line.split("//", 1)[1].rpartition(":")
                broker.host, broker.port = host, int(port)
    return broker


def cmd_fetch(args: argparse.Namespace) -> int:
    """Resolve the broker jars with Maven now (CI, offline preparation); later starts reuse them."""
    try:
        libs = resolve_jars(args.kafka_home)
    except KafkaLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"Kafka jars ready in {libs}")
    return EXIT_OK


def cmd_start(args: argparse.Namespace) -> int:
    """Start the broker in the background (or the foreground) and print its bootstrap address."""
    broker = _broker(args)
    if broker.is_running():
        print(
            f"Kafka already running at {broker.bootstrap} (pid {broker.pid()}, {broker.data_dir})"
        )
        return EXIT_OK
    print(f"starting Kafka in {broker.data_dir} ...", file=sys.stderr)
    started = time.monotonic()
    try:
        broker.start(timeout=args.timeout)
        if args.topics:
            names = TopicNames(args.topic_prefix).all()
            create_topics(broker.bootstrap, names, partitions=args.partitions)
            print(f"topics ready: {', '.join(names)}", file=sys.stderr)
    except KafkaLocalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    took = time.monotonic() - started
    print(
        f"Kafka running (pid {broker.pid()}, {took:.1f}s); log: {broker.log_file}", file=sys.stderr
    )
    print(broker.bootstrap)
    if not args.foreground:
        return EXIT_OK
    print("press Ctrl-C to stop", file=sys.stderr)
    try:
        while broker.is_running():
            time.sleep(0.5)
        print(f"error: the broker exited; see {broker.log_file}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        broker.stop()
        print("Kafka stopped", file=sys.stderr)
        return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    """Stop the broker of ``--data-dir``; a broker that is not running is not an error."""
    broker = _broker(args)
    if broker.stop(timeout=args.timeout):
        print(f"Kafka stopped ({broker.data_dir})")
    else:
        print(f"Kafka was not running ({broker.data_dir})")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Print whether the broker runs; exit 0 when it does, 3 when it does not."""
    status = _broker(args).status()
    if status.running:
        print(f"running: pid {status.pid}, bootstrap {status.bootstrap}, data {status.data_dir}")
        return EXIT_OK
    print(f"not running (data dir {status.data_dir})")
    return EXIT_NOT_RUNNING


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the end of ``broker.log``; with ``--follow``, keep printing new lines."""
    broker = _broker(args)
    if not broker.log_file.is_file():
        print(f"no broker log yet at {broker.log_file}", file=sys.stderr)
        return EXIT_ERROR
    print(broker.log_tail(args.lines))
    if not args.follow:
        return EXIT_OK
    with open(broker.log_file, errors="replace") as log:
        log.seek(0, 2)
        try:
            while True:
                line = log.readline()
                if line:
                    print(line, end="", flush=True)
                else:
                    time.sleep(0.5)
        except KeyboardInterrupt:
            return EXIT_OK


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``kafka start|stop|status|logs`` to the top-level parser."""
    kafka = sub.add_parser(
        "kafka",
        help="run a local single-node Kafka broker (KRaft) for development and the demo",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = kafka.add_subparsers(dest="kafka_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="broker config, log, pid file and data (default: ./.demo/kafka)",
    )
    common.add_argument(
        "--kafka-home",
        type=Path,
        help="jar cache (default: $BRAND_LISTENER_KAFKA_HOME, else "
        "~/.cache/brand-listener/kafka-4.4.0)",
    )

    fetch = actions.add_parser(
        "fetch", parents=[common], help="resolve the broker jars from Maven Central (once)"
    )
    fetch.set_defaults(func=cmd_fetch)

    start = actions.add_parser(
        "start",
        parents=[common],
        help="start the broker and print its bootstrap address",
        epilog="exit status: 0 running, 1 could not start (the message says why)",
    )
    start.add_argument("--host", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    start.add_argument("--port", type=int, default=9092, help="client port (default: 9092)")
    start.add_argument(
        "--controller-port", type=int, default=9093, help="KRaft controller port (default: 9093)"
    )
    start.add_argument(
        "--partitions", type=int, default=4, help="partitions per new topic (default: 4)"
    )
    start.add_argument("--topics", action="store_true", help="also create the five pipeline topics")
    start.add_argument("--topic-prefix", default="", help="prefix for --topics names")
    start.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for readiness (default: 60)"
    )
    start.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C stops the broker"
    )
    start.set_defaults(func=cmd_start)

    stop = actions.add_parser("stop", parents=[common], help="stop the broker (SIGTERM, then KILL)")
    stop.add_argument(
        "--timeout", type=float, default=30.0, help="seconds before SIGKILL (default: 30)"
    )
    stop.set_defaults(func=cmd_stop)

    status = actions.add_parser(
        "status",
        parents=[common],
        help="is the broker running?",
        epilog="exit status: 0 running, 3 not running",
    )
    status.set_defaults(func=cmd_status)

    logs = actions.add_parser("logs", parents=[common], help="show the end of broker.log")
    logs.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default: 50)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)
