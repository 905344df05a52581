"""``brand-listener correct`` and ``brand-listener corrections export``.

``correct ID --label praise [--by alice] [--text ...]`` writes a label
correction (:class:`agents.queue.corrections.Correction`) to the compacted
``mentions.corrections`` topic, keyed by the Mention id. The post's text, the
model's label and its context come from the human queue
(``mentions.needs-response``: the latest record of that id, read from the one
partition its key hashes to); ``--text`` and ``--old-label`` give them for a post that is not on
the queue. ``needs_response`` follows the new label (complaint and question
need an answer) unless ``--needs-response``/``--no-needs-response`` says.
``brand-listener ack ID... --label L`` acknowledges and corrects in one go.

``corrections export --output corrections.jsonl`` reads the whole topic and
writes one training row per post (the latest correction of each id), in the
format of ``../shared/data/intent/train.jsonl`` (:func:`agents.queue.corrections.training_row`).

Kafka settings come from the worker's environment (``AGENTS_KAFKA__BOOTSTRAP_SERVERS``,
``AGENTS_KAFKA__TOPIC_PREFIX``), the flags winning, as for ``ack``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from agents.commands.ack import (
    EXIT_KAFKA,
    EXIT_OK,
    EXIT_USAGE,
    kafka_accepts,
    kafka_settings,
    parse_ids,
)
from agents.pipeline.tables import partition_for
from agents.queue.corrections import Correction, decode_correction, ensure_topic, training_row
from listener.errors import SkippableError
from listener.producer import producer_config
from listener.record import LABELS, Mention, decode_mention
from listener.settings import KafkaSettings
from listener.topics import TopicNames

EXIT_NOT_FOUND = 4


def _records(
    consumer: Any, partitions: list[TopicPartition], timeout_s: float
) -> Iterator[tuple[bytes | None, bytes | None]]:
    """``(key, value)`` of every record of ``partitions``, from the beginning to their end now."""
    if not partitions:
        return
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    while any(consumer.position(tp) < end for tp, end in ends.items()):
        batches = consumer.poll(timeout_ms=int(timeout_s * 1000))
        if not batches:
            raise KafkaError(f"no records within {timeout_s:.0f}s before the end of {partitions}")
        for records in batches.values():
            for record in records:
                yield record.key, record.value


def _consumer(kafka: KafkaSettings) -> Any:
    return KafkaConsumer(
        **kafka.kafka_python(),
        client_id=f"{kafka.client_id}-corrections",
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=int(max(kafka.bootstrap_timeout_s, 5) * 1000) + 1000,
    )


def find_queued(
    consumer: Any, topics: TopicNames, ids: Iterable[str], timeout_s: float = 10.0
) -> dict[str, Mention]:
    """The latest queue record of each id that is on the human queue.

    Reads only the partitions the ids' keys hash to (the queue is keyed by id).
    """
    wanted = {mention_id.encode("utf-8"): mention_id for mention_id in ids}
    count = len(consumer.partitions_for_topic(topics.needs_response) or ())
    if not count or not wanted:
        return {}
    parts = sorted({partition_for(key, count) for key in wanted})
    tps = [TopicPartition(topics.needs_response, p) for p in parts]
    found: dict[str, Mention] = {}
    for key, value in _records(consumer, tps, timeout_s):
        if key in wanted and value:
            try:
                found[wanted[key]] = decode_mention(value)
            except SkippableError:
                continue  # not a Mention: keep the last good one
    return found


def read_corrections(
    consumer: Any, topics: TopicNames, timeout_s: float = 10.0
) -> dict[str, Correction]:
    """The latest correction of each id on the corrections topic (a tombstone removes it)."""
    partitions = consumer.partitions_for_topic(topics.corrections) or set()
    tps = [TopicPartition(topics.corrections, p) for p in sorted(partitions)]
    latest: dict[str, Correction] = {}
    skipped = 0
    for key, value in _records(consumer, tps, timeout_s):
        if key is None:
            continue
        if not value:
            latest.pop(key.decode("utf-8", "replace"), None)
            continue
        try:
            correction = decode_correction(value)
        except ValueError:
            skipped += 1
            continue
        held = latest.get(correction.id)
        if held is None or correction.at >= held.at:
            latest[correction.id] = correction
    if skipped:
        print(f"warning: skipped {skipped} record(s) that are not corrections", file=sys.stderr)
    return latest


def send_corrections(
    client: Any, topics: TopicNames, corrections: Iterable[Correction], timeout_s: float = 30.0
) -> int:
    """Produce each correction keyed by its id and wait until Kafka has them all.

    Raises:
        kafka.errors.KafkaError: A record was not delivered.
    """
    futures = [
        client.send(topics.corrections, key=c.id.encode("utf-8"), value=c.encode())
        for c in corrections
    ]
    client.flush(timeout=timeout_s)
    for future in futures:
        future.get(timeout=timeout_s)
    return len(futures)


def build_corrections(
    kafka: KafkaSettings, ids: list[str], args: argparse.Namespace
) -> list[Correction]:
    """One correction per id, from the queue records and the flags.

    Raises:
        LookupError: An id is not on the queue and no ``--text`` was given.
        ValueError: A bad label or text.
        kafka.errors.KafkaError: The queue could not be read.
    """
    text = getattr(args, "text", None)
    found: dict[str, Mention] = {}
    if text is None:
        consumer = _consumer(kafka)
        try:
            found = find_queued(consumer, kafka.topics, ids, kafka.bootstrap_timeout_s)
        finally:
            consumer.close()
        missing = [i for i in ids if i not in found]
        if missing:
            raise LookupError(
                f"not on {kafka.topics.needs_response}: {', '.join(missing)} "
                "(give the post with --text, and --old-label if known)"
            )
    return [
        Correction.of(
            found.get(mention_id),
            mention_id=mention_id,
            new_label=args.label,
            by=args.by,
            text=text,
            old_label=getattr(args, "old_label", None),
            needs_response=getattr(args, "needs_response", None),
        )
        for mention_id in ids
    ]


def write_corrections(kafka: KafkaSettings, ids: list[str], args: argparse.Namespace) -> int:
    """Build and send the corrections of ``ids``; returns the exit status (messages on stderr)."""
    try:
        corrections = build_corrections(kafka, ids, args)
    except (LookupError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND if isinstance(exc, LookupError) else EXIT_USAGE
    except KafkaError as exc:
        print(f"error: cannot read the queue: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    try:
        ensure_topic(kafka, kafka.topics, timeout_s=kafka.bootstrap_timeout_s)
        client = KafkaProducer(**producer_config(kafka))
    except KafkaError as exc:
        print(f"error: cannot reach Kafka at {kafka.bootstrap_servers}: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    try:
        count = send_corrections(client, kafka.topics, corrections, kafka.delivery_timeout_s)
    except KafkaError as exc:
        print(f"error: corrections not delivered: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    finally:
        client.close(timeout=5)
    for c in corrections:
        print(
            f"corrected {c.id}: {c.old_label or '?'} -> {c.new_label} on {kafka.topics.corrections}"
        )
    return EXIT_OK if count == len(ids) else EXIT_KAFKA


def run_correct(args: argparse.Namespace) -> int:
    """Run ``brand-listener correct``; returns the exit status."""
    try:
        ids = parse_ids([args.id])
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    kafka = kafka_settings(args)
    if not kafka_accepts(kafka):
        return EXIT_KAFKA
    return write_corrections(kafka, ids, args)


def run_export(args: argparse.Namespace) -> int:
    """Run ``brand-listener corrections export``; returns the exit status."""
    kafka = kafka_settings(args)
    if not kafka_accepts(kafka):
        return EXIT_KAFKA
    try:
        consumer = _consumer(kafka)
    except KafkaError as exc:
        print(f"error: cannot reach Kafka at {kafka.bootstrap_servers}: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    try:
        latest = read_corrections(consumer, kafka.topics, kafka.bootstrap_timeout_s)
    except KafkaError as exc:
        print(f"error: cannot read {kafka.topics.corrections}: {exc!r}", file=sys.stderr)
        return EXIT_KAFKA
    finally:
        consumer.close()
    rows = sorted(latest.values(), key=lambda c: (c.at, c.id))
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as fh:
        for correction in rows:
            fh.write(orjson.dumps(training_row(correction)) + b"\n")
    print(f"wrote {len(rows)} correction(s) to {output}")
    return EXIT_OK


def _kafka_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers")
    parser.add_argument(
        "--topic-prefix", metavar="P", help="topic-name prefix (default: the worker's)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for a broker or a read (default: 10)",
    )


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``correct`` and ``corrections export`` to the top-level parser."""
    doc = __doc__ or ""
    correct = sub.add_parser(
        "correct",
        help="correct the model's label of a post (writes mentions.corrections)",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit status: 0 written, 2 bad id or label, 3 Kafka unreachable or delivery "
        "failed, 4 not on the queue (use --text)",
    )
    correct.add_argument("id", metavar="ID", help="Mention id (<source>:<native id>)")
    correct.add_argument("--label", choices=LABELS, required=True, help="the right label")
    correct.add_argument("--by", metavar="NAME", help="who corrects it (kept in the record)")
    correct.add_argument("--text", help="the post's text (else read from the queue)")
    correct.add_argument(
        "--old-label", choices=LABELS, help="the model's label (else from the queue)"
    )
    answer = correct.add_mutually_exclusive_group()
    answer.add_argument(
        "--needs-response",
        dest="needs_response",
        action="store_true",
        default=None,
        help="it needs an answer (default: complaint or question)",
    )
    answer.add_argument(
        "--no-needs-response",
        dest="needs_response",
        action="store_false",
        help="it needs no answer",
    )
    _kafka_flags(correct)
    correct.set_defaults(func=run_correct)

    corrections = sub.add_parser("corrections", help="label corrections tools")
    tools = corrections.add_subparsers(
        dest="corrections_command", required=True, metavar="SUBCOMMAND"
    )
    export = tools.add_parser(
        "export",
        help="write the latest correction of each post as training rows (JSONL)",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--output", type=Path, required=True, metavar="FILE.jsonl", help="where to write"
    )
    _kafka_flags(export)
    export.set_defaults(func=run_export)
