"""``brand-listener ack ID [ID...]``: acknowledge queue items, stopping their SLA clocks.

Writes one record per Mention id to ``mentions.acks``, keyed by the id, with the
value :mod:`agents.queue.sla` reads: ``{"acked_at": <unix seconds>, "by": <name>}``
(``by`` only when given). The worker's ``track_queue`` agent then removes the
item from the queue, observes its time in queue, and stops counting it overdue.
An id that was never queued (or not yet) is kept by the worker as a marker, so
acknowledging before the item arrives works too; acknowledging twice is harmless.

``--label L`` also corrects the model's label of each item: it writes a
correction to ``mentions.corrections`` first (see :mod:`agents.commands.corrections`;
the post's text and old label are read from the queue), then the acknowledgements.

Kafka settings come from the worker's environment (``AGENTS_KAFKA__BOOTSTRAP_SERVERS``,
``AGENTS_KAFKA__TOPIC_PREFIX``) so the acks reach the topics that worker reads; the
flags win over it. ``-`` as an id reads ids from standard input, one per line.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from agents.settings import AgentSettings
from listener.kafka_admin import KafkaSecurityError, check_security
from listener.producer import producer_config
from listener.record import LABELS
from listener.settings import KafkaSettings
from listener.topics import TopicNames

EXIT_OK, EXIT_USAGE, EXIT_KAFKA = 0, 2, 3


def ack_value(acked_at: float, by: str | None = None) -> bytes:
    """The acks-topic value for an acknowledgement at ``acked_at`` (unix seconds) by ``by``."""
    body: dict[str, Any] = {"acked_at": acked_at}
    if by:
        body["by"] = by
    return orjson.dumps(body)


def parse_ids(raw: Iterable[str], stdin: Iterable[str] = ()) -> list[str]:
    """The Mention ids to acknowledge, in order, without duplicates.

    Args:
        raw: The command-line ids; ``-`` stands for the lines of ``stdin``.
        stdin: Lines read when ``-`` is given (blank lines and ``#`` comments skipped).

    Raises:
        ValueError: An id is not of the form ``<source>:<native id>``.
    """
    ids: list[str] = []
    for item in raw:
        if item == "-":
            lines = (line.strip() for line in stdin)
            ids.extend(line for line in lines if line and not line.startswith("#"))
        else:
            ids.append(item.strip())
    for mention_id in ids:
        source, _, native = mention_id.partition(":")
        if not source or not native:
            raise ValueError(f"not a Mention id (<source>:<native id>): {mention_id!r}")
    return list(dict.fromkeys(ids))


def send_acks(
    client: Any,
    topics: TopicNames,
    ids: Iterable[str],
    *,
    by: str | None = None,
    clock: Callable[[], float] = time.time,
    timeout_s: float = 30.0,
) -> int:
    """Produce one acknowledgement per id and wait until Kafka has them all.

    Args:
        client: A ``kafka.KafkaProducer`` (or anything with its ``send``/``flush``).
        topics: Topic names (the acks topic is used).
        ids: Mention ids.
        by: Who acknowledged, recorded in the value.
        clock: Wall-clock seconds (injected in tests).
        timeout_s: How long to wait for the broker's acknowledgement of every record.

    Returns:
        How many acknowledgements were written.

    Raises:
        kafka.errors.KafkaError: A record was not delivered.
    """
    futures = [
        client.send(topics.acks, key=mention_id.encode("utf-8"), value=ack_value(clock(), by))
        for mention_id in ids
    ]
    client.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    return len(futures)


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """The worker's Kafka settings (``AGENTS_*``) with ``--bootstrap``/``--topic-prefix`` on top."""
    flags = {
        "bootstrap_servers": args.bootstrap,
        "topic_prefix": args.topic_prefix,
        "client_id": "brand-listener-ack",
        "bootstrap_timeout_s": args.connect_timeout,
    }
    return AgentSettings.load(kafka=flags).kafka


def kafka_accepts(kafka: KafkaSettings) -> bool:
    """Whether Kafka accepts the TLS/SASL settings; if not, says why on stderr."""
    try:
        check_security(kafka, kafka.bootstrap_timeout_s)
    except KafkaSecurityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def run_ack(args: argparse.Namespace) -> int:
    """Run ``brand-listener ack``; returns the exit status."""
    try:
        ids = parse_ids(args.ids, sys.stdin if "-" in args.ids else ())
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not ids:
        print("error: no ids to acknowledge", file=sys.stderr)
        return EXIT_USAGE
    kafka = kafka_settings(args)
    if not kafka_accepts(kafka):
        return EXIT_KAFKA
    if getattr(args, "label", None) is not None:
        from agents.commands.corrections import write_corrections

        status = write_corrections(kafka, ids, args)
        if status != EXIT_OK:
            return status
    try:
        client = KafkaProducer(**producer_config(kafka))
    except KafkaError as exc:
        print(
            f"error: cannot connect to Kafka at {kafka.bootstrap_servers}: {exc}", file=sys.stderr
        )
        return EXIT_KAFKA
    try:
        count = send_acks(client, kafka.topics, ids, by=args.by, timeout_s=kafka.delivery_timeout_s)
    except KafkaError as exc:
        print(f"error: acknowledgements not delivered: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    finally:
        client.close(timeout=5)
    print(f"acknowledged {count} item(s) on {kafka.topics.acks}")
    return EXIT_OK


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``ack`` to the top-level parser."""
    p = sub.add_parser(
        "ack",
        help="acknowledge queue items by Mention id (stops their SLA clocks)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 written, 2 bad id, 3 Kafka unreachable or delivery failed, "
        "4 --label given for an id that is not on the queue",
    )
    p.add_argument("ids", nargs="+", metavar="ID", help="Mention id (<source>:<native id>), or -")
    p.add_argument("--by", metavar="NAME", help="who acknowledged (kept in the record)")
    p.add_argument(
        "--label",
        choices=LABELS,
        help="also correct the model's label of each item (writes mentions.corrections)",
    )
    p.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    p.add_argument("--topic-prefix", metavar="P", help="topic-name prefix (default: the worker's)")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for a broker (default: 10)",
    )
    p.set_defaults(func=run_ack)
