"""``brand-listener replay``: a JSON Lines file of posts into ``mentions.raw``, optionally paced.

Each line is one JSON object. Only ``text`` is required; the other keys are
``id``, ``source``, ``author`` (an object with id/handle/name/followers/url/
verified, or a handle string), ``created_at`` (ISO 8601, or unix seconds),
``url``, ``lang``, ``brands`` (a list, or one string), ``reply_to_id``,
``reply_to_author`` (the parent's author, as ``author``), ``thread_id`` and
``own_account_of`` (the brands whose own account wrote the
post: a list, or one string). Unknown keys are ignored, so a dump of
``Mention`` records replays too. Blank lines are skipped.

``--brands FILE.yaml`` (a ``listen.yaml``, or any YAML with a ``brands`` list)
marks the posts of the brands' ``own_accounts`` and the replies to them, as
``listen`` does (:meth:`listener.brands.BrandMatcher.annotate`); the brands a
line names are kept, and no line is dropped for matching no brand.

Defaults: ``source`` is ``--source`` (``"replay"``); ``created_at`` is now (a
timestamp without an offset is read as UTC); a missing ``id`` becomes a hash
of source, line number and text (:func:`stable_native_id`), so replaying the
same file twice produces the same ids and downstream idempotency absorbs the
second run. Editing the file above a line changes that line's id.

A line that cannot become a Mention is reported on stderr with its line number
and reason, produced to the dead-letter topic with ``origin={"file", "line"}``,
and the replay goes on.

Delivery: at-least-once, keyed by ``Mention.id`` (see :mod:`listener.producer`).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson
from pydantic import ValidationError
from tqdm import tqdm

from listener.brands import BrandMatcher, BrandSettings
from listener.errors import FatalError, MentionError, SkippableError
from listener.pacing import Pacer
from listener.producer import MentionProducer
from listener.record import Mention, describe_validation_error
from listener.settings import KafkaSettings, ListenerSettings

DEFAULT_SOURCE = "replay"
_DESCRIPTION = (
    "Replay a JSON Lines file of posts into mentions.raw (keyed by Mention id). Each line is "
    'a JSON object with at least "text"; optional: id, source, author (object or handle), '
    "created_at (ISO 8601 or unix seconds), url, lang, brands, reply_to_id, reply_to_author, "
    "thread_id, own_account_of. With --brands, posts by the brands' own_accounts (and replies to "
    "them) are marked as listen marks them. "
    "A line without an id gets a stable one (a hash of source, line number and text), so "
    "replaying the same file twice produces the same ids. Bad lines are reported on stderr "
    "with their line number and sent to the dead-letter topic; the replay goes on. Kafka "
    "settings come from LISTENER_KAFKA_* variables unless given as flags."
)
EXIT_OK, EXIT_FILE, EXIT_KAFKA = 0, 1, 3
_OPTIONAL_STR_FIELDS = ("url", "lang", "reply_to_id", "thread_id")


# --- pure: one line -> Mention --------------------------------------------------------------


def stable_native_id(source: str, line_no: int, text: str) -> str:
    """A deterministic native id for a line that has none: 20 hex chars of SHA-256."""
    digest = hashlib.sha256(f"{source}\x1f{line_no}\x1f{text}".encode()).hexdigest()
    return digest[:20]


def _created_at(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise SkippableError("validation", "created_at: expected ISO 8601 text or unix seconds")
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise SkippableError("validation", f"created_at: {value!r} is out of range") from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise SkippableError("validation", f"created_at: {value!r} is not ISO 8601") from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise SkippableError("validation", "created_at: expected ISO 8601 text or unix seconds")


def _author(value: Any, field: str = "author") -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"handle": value}
    if isinstance(value, dict):
        known = ("id", "handle", "name", "followers", "url", "verified")
        return {k: value[k] for k in known if k in value}
    raise SkippableError("validation", f"{field}: expected an object or a handle string")


def _native_id(value: Any, source: str, line_no: int, text: str) -> str:
    if value is None:
        return stable_native_id(source, line_no, text)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise SkippableError("validation", "id: expected a string or an integer")
    native = str(value).strip()
    native = native.removeprefix(f"{source}:")  # a dumped Mention's id
    if not native:
        raise SkippableError("validation", "id: is empty")
    return native


def parse_line(raw: bytes | str, line_no: int, *, default_source: str = DEFAULT_SOURCE) -> Mention:
    """Turn one line of a replay file into a Mention.

    Args:
        raw: The line, with or without its newline.
        line_no: 1-based line number (used for the default id).
        default_source: ``source`` for lines that do not name one.

    Returns:
        A new Mention, stamped as ingested now.

    Raises:
        SkippableError: With ``reason`` ``"decode"`` (not UTF-8 or not JSON),
            ``"not_object"`` (valid JSON but not an object), ``"missing_text"``
            (no ``text``, or blank) or ``"validation"`` (a field has a bad
            value; the message names it).
    """
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SkippableError("decode", f"not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise SkippableError("not_object", f"expected a JSON object, got {type(obj).__name__}")
    text = obj.get("text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise SkippableError("missing_text", "text is missing or empty")
    if not isinstance(text, str):
        raise SkippableError("validation", f"text: expected a string, got {type(text).__name__}")
    source = obj.get("source", default_source)
    if not isinstance(source, str):
        raise SkippableError("validation", "source: expected a string")
    fields: dict[str, Any] = {k: obj[k] for k in _OPTIONAL_STR_FIELDS if obj.get(k) is not None}
    for key in ("author", "reply_to_author"):
        author = _author(obj.get(key), key)
        if author is not None:
            fields[key] = author
    for key in ("brands", "own_account_of"):
        value = obj.get(key)
        if value is not None:
            fields[key] = (value,) if isinstance(value, str) else value
    return Mention.create(
        source=source,
        native_id=_native_id(obj.get("id"), source, line_no, text),
        text=text,
        created_at=_created_at(obj.get("created_at")),
        **fields,
    )


# --- I/O ----------------------------------------------------------------------------------


def load_brands(path: Path) -> BrandMatcher:
    """A matcher for the ``brands`` list of a YAML file (a ``listen.yaml`` works as is).

    Raises:
        FatalError: The file cannot be read, is not YAML, has no ``brands`` list,
            or a brand is invalid (the message names the brand and the field).
    """
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise FatalError(f"{path}: cannot read brands: {exc}") from exc
    brands = data.get("brands") if isinstance(data, dict) else None
    if not isinstance(brands, list) or not brands:
        raise FatalError(f"{path}: expected a 'brands' list")
    settings = []
    for n, brand in enumerate(brands):
        try:
            settings.append(BrandSettings.model_validate(brand))
        except ValidationError as exc:
            raise FatalError(f"{path}: brands[{n}]: {describe_validation_error(exc)}") from exc
    return BrandMatcher(settings)


class ReplayTarget(Protocol):
    """Where replayed records go (``MentionProducer`` in production)."""

    def send_mention(self, mention: Mention, *, stage: str = ...) -> bool:
        """Queue a Mention for ``mentions.raw``; False if it was dead-lettered (too large)."""

    def send_dead_letter(
        self,
        payload: bytes | str | None,
        *,
        stage: str,
        reason: str,
        error: str,
        origin: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> None:
        """Queue a dead-letter record."""


@dataclass(slots=True)
class ReplayStats:
    """What one replay did."""

    produced: int = 0
    dead_lettered: int = 0
    own_accounts: int = 0
    blank: int = 0
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        """Records (good and bad) per second of wall time."""
        total = self.produced + self.dead_lettered
        return total / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self, path: Path | str) -> str:
        """One human line, e.g. ``"replayed f.jsonl: 98 produced, 2 dead-lettered, ..."``."""
        own = f" ({self.own_accounts} by brands' own accounts)" if self.own_accounts else ""
        return (
            f"replayed {path}: {self.produced} produced{own}, {self.dead_lettered} dead-lettered"
            f" in {self.elapsed:.2f} s ({self.rate:.1f} posts/s)"
        )


def iter_lines(fh: IO[bytes], limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` for non-blank lines, 1-based, at most ``limit`` of them."""
    taken = 0
    for line_no, line in enumerate(fh, start=1):
        if limit is not None and taken >= limit:
            return
        if not line.strip():
            continue
        taken += 1
        yield line_no, line.rstrip(b"\r\n")


def count_lines(path: Path, limit: int | None = None) -> int:
    """Number of non-blank lines in ``path`` (capped at ``limit``): the progress bar's total."""
    with path.open("rb") as fh:
        total = sum(1 for line in fh if line.strip())
    return total if limit is None else min(total, limit)


def replay_file(
    path: Path,
    target: ReplayTarget,
    *,
    rate: float | None = None,
    limit: int | None = None,
    default_source: str = DEFAULT_SOURCE,
    progress: bool | None = None,
    err: IO[str] | None = None,
    brands: BrandMatcher | None = None,
) -> ReplayStats:
    """Replay ``path`` line by line into ``target``; bad lines are reported and dead-lettered.

    Args:
        path: The JSON Lines file.
        target: Where records go; the caller flushes it.
        rate: Posts per second (good and bad lines both count); ``None`` for as fast as possible.
        limit: Stop after this many non-blank lines.
        default_source: ``source`` for lines that do not name one.
        progress: Show a progress bar on ``err``; ``None`` shows one only on a terminal.
        err: Where bad-line reports and the progress bar go (default stderr).
        brands: If given, marks own-account posts and replies to them
            (:meth:`BrandMatcher.annotate`), in file order.

    Raises:
        OSError: The file cannot be opened or read.
        RetryableError: The target could not queue a record.
        FatalError: The target failed permanently.
    """
    err = sys.stderr if err is None else err
    pacer = Pacer(rate) if rate else None
    stats = ReplayStats()
    total = count_lines(path, limit)
    started = time.perf_counter()
    with (
        path.open("rb") as fh,
        tqdm(
            total=total, unit="post", file=err, disable=None if progress is None else not progress
        ) as bar,
    ):
        for line_no, line in iter_lines(fh, limit):
            if pacer is not None:
                pacer.wait()
            try:
                mention = parse_line(line, line_no, default_source=default_source)
                if brands is not None:
                    mention = brands.annotate(mention)
            except SkippableError as exc:
                bar.write(f"{path}:{line_no}: {exc.reason}: {exc}", file=err)
                target.send_dead_letter(
                    line,
                    stage="replay",
                    reason=exc.reason,
                    error=str(exc),
                    origin={"file": str(path), "line": line_no},
                )
                stats.dead_lettered += 1
            else:
                if target.send_mention(mention, stage="replay"):
                    stats.produced += 1
                    stats.own_accounts += bool(mention.own_account_of)
                else:
                    bar.write(f"{path}:{line_no}: too_large: dead-lettered", file=err)
                    stats.dead_lettered += 1
            bar.update(1)
    stats.elapsed = time.perf_counter() - started
    return stats


# --- command ------------------------------------------------------------------------------


def register_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``replay`` to the top-level parser."""
    p = sub.add_parser(
        "replay",
        help="replay a JSON Lines file of posts into mentions.raw",
        description=_DESCRIPTION,
        epilog="exit status: 0 file read through (bad lines included), 1 file missing or "
        "unreadable, 3 Kafka unreachable or delivery failed",
    )
    p.add_argument("file", type=Path, metavar="FILE.jsonl", help="one JSON object per line")
    p.add_argument("--rate", type=_positive_float, metavar="N", help="posts per second")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="stop after N lines")
    p.add_argument(
        "--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (default 127.0.0.1:9092)"
    )
    p.add_argument("--topic-prefix", metavar="P", help="topic-name prefix (default none)")
    p.add_argument(
        "--source", default=DEFAULT_SOURCE, help="source for lines without one (default: replay)"
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive_float,
        metavar="S",
        help="seconds to wait for a broker before giving up",
    )
    p.add_argument(
        "--brands",
        type=Path,
        metavar="FILE.yaml",
        help="listen.yaml (or a file with a brands list): mark the brands' own-account posts",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_replay)


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def kafka_settings_from_args(args: argparse.Namespace) -> KafkaSettings:
    """The environment's Kafka settings with the command-line flags applied on top."""
    flags = {
        "bootstrap_servers": args.bootstrap,
        "topic_prefix": args.topic_prefix,
        "bootstrap_timeout_s": args.connect_timeout,
    }
    return ListenerSettings.load(kafka=flags).kafka


def run_replay(args: argparse.Namespace) -> int:
    """Run ``brand-listener replay``; returns the exit status."""
    path: Path = args.file
    if not getattr(args, "verbose", False):
        # kafka-python logs every connection attempt (and each refusal at ERROR); this
        # command reports failures itself, in one line. -v brings the client's logs back.
        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    if not path.is_file():
        print(f"error: {path}: no such file", file=sys.stderr)
        return EXIT_FILE
    try:
        kafka = kafka_settings_from_args(args)
    except ValidationError as exc:
        print(f"error: bad Kafka setting: {describe_validation_error(exc)}", file=sys.stderr)
        return EXIT_KAFKA
    try:
        brands = load_brands(args.brands) if args.brands is not None else None
    except FatalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FILE
    try:
        with MentionProducer(kafka) as producer:
            started = time.perf_counter()
            stats = replay_file(
                path,
                producer,
                rate=args.rate,
                limit=args.limit,
                default_source=args.source,
                progress=False if args.no_progress else None,
                brands=brands,
            )
            producer.flush()
            stats.elapsed = time.perf_counter() - started
    except OSError as exc:
        print(f"error: {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FILE
    except MentionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_KAFKA
    print(stats.summary(path))
    return EXIT_OK
