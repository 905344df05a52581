"""Label corrections by support staff: the record, its compacted topic, the counting agent.

A person who reads a queue item and finds the model's label wrong writes a
correction (``brand-listener correct``, or ``brand-listener ack --label``;
:mod:`agents.commands.corrections`) to ``mentions.corrections``: a compacted topic
keyed by the Mention id, so Kafka keeps the latest correction of each post.
The value is a :class:`Correction` as JSON. ``brand-listener corrections
export`` turns the topic into training rows (:func:`training_row`), the same
fields as ``../shared/data/intent/*.jsonl`` plus where each row came from.

Each worker runs ``count_corrections`` (:func:`register`), which counts every
correction it reads in ``brandlistener_label_corrections_total{old_label,
new_label,source}``: the support dashboard's view of where the model is wrong,
and on which source (a source corrected far more than the others may want its
own needs_response threshold: ``model.needs_response_threshold_by_source``). Like
every agent it reads as the worker group, so each correction is counted by one
worker (again after a crash before its offset was committed; a new app id
counts the whole topic again). The counter starts at zero on every start;
Prometheus' ``increase()`` handles that.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
import orjson
from faust.types import EventT, StreamT
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents.observability.metrics import AgentMetrics
from agents.pipeline.classify import post_kind as post_kind_of
from agents.runtime.batches import DeadLetterBatch, run_events
from listener.kafka_admin import COMPACTED, create_topics
from listener.record import RESPONSE_LABELS, Label, Mention, describe_validation_error
from listener.settings import KafkaConnection
from listener.topics import TopicNames

log = logging.getLogger(__name__)


TRAINING_SOURCE = "corrections"
"""The ``source`` field of exported training rows."""


class Correction(BaseModel):
    """One person's label correction of one post.

    Unknown fields are ignored, so an older exporter reads newer records.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=3, description='The Mention id, "<source>:<native id>".')
    text: str = Field(min_length=1, description="The post's text, as it was classified.")
    old_label: Label | None = Field(default=None, description="The model's label, if known.")
    new_label: Label
    needs_response: bool
    by: str | None = Field(default=None, max_length=200, description="Who corrected it.")
    at: float = Field(description="Unix seconds of the correction.")
    source: str | None = None
    brands: tuple[str, ...] = ()
    lang: str | None = None
    thread: str | None = Field(
        default=None, description='"reply" or "opens" where the post says, else None.'
    )
    model: str | None = Field(default=None, description="name@version that gave old_label.")
    post_kind: str | None = Field(
        default=None,
        description="Where the post sat in its thread as the model read it (models/post_kind.py).",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is empty")
        return text

    @classmethod
    def of(
        cls,
        mention: Mention | None,
        *,
        mention_id: str,
        new_label: str,
        by: str | None = None,
        text: str | None = None,
        old_label: str | None = None,
        needs_response: bool | None = None,
        at: float | None = None,
    ) -> Correction:
        """A correction of ``mention`` (as found on the queue, or None) to ``new_label``.

        Args:
            mention: The post as the pipeline saw it; gives text, old label and context.
            mention_id: Its id (the key of the record).
            new_label: The right label.
            by: Who corrects it.
            text: The post's text; wins over the mention's.
            old_label: The model's label; wins over the mention's classification.
            needs_response: Whether it needs an answer; default: the label is
                complaint or question.
            at: When, unix seconds (default now).

        Raises:
            ValueError: A label is not one of the four, or there is no text.
        """
        classification = mention.classification if mention is not None else None
        thread = post_kind = None
        if mention is not None:
            thread = "reply" if mention.reply_to_id else "opens"
            post_kind = post_kind_of(mention)
        fields: dict[str, Any] = {
            "id": mention_id,
            "text": text if text is not None else (mention.text if mention else ""),
            "old_label": old_label or (classification.label if classification else None),
            "new_label": new_label,
            "needs_response": new_label in RESPONSE_LABELS
            if needs_response is None
            else needs_response,
            "by": by or None,
            "at": time.time() if at is None else at,
            "source": mention.source if mention else mention_id.partition(":")[0],
            "brands": mention.brands if mention else (),
            "lang": mention.lang if mention else None,
            "thread": thread,
            "model": classification.model if classification else None,
            "post_kind": post_kind,
        }
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None

    def encode(self) -> bytes:
        """The topic value (JSON)."""
        return orjson.dumps(self.model_dump(mode="json"))


def decode_correction(value: bytes) -> Correction:
    """Parse a topic value.

    Raises:
        ValueError: Not JSON, or not a valid correction (the message names the field).
    """
    try:
        return Correction.model_validate(orjson.loads(value))
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    except ValidationError as exc:
        raise ValueError(describe_validation_error(exc)) from None


def training_row(correction: Correction) -> dict[str, Any]:
    """The correction as a training example: the fields of ``../shared/data/intent`` rows.

    ``text``, ``label``, ``needs_response`` and ``source`` (``"corrections"``)
    are the fields the training data has; ``split`` is ``"train"``; the rest
    say where the row came from (``id``, ``platform``, ``brand``, ``thread``,
    ``old_label``, ``model``, ``corrected_by``, ``corrected_at``); ``post_kind``,
    where the record has it, is what a post-kind model read (training uses it).
    """
    row: dict[str, Any] = {
        "text": correction.text,
        "label": correction.new_label,
        "needs_response": correction.needs_response,
        "source": TRAINING_SOURCE,
        "split": "train",
        "id": correction.id,
        "platform": correction.source,
        "brand": correction.brands[0] if correction.brands else None,
        "thread": correction.thread,
        "old_label": correction.old_label,
        "model": correction.model,
        "corrected_by": correction.by,
        "corrected_at": datetime.fromtimestamp(correction.at, UTC).isoformat(),
    }
    if correction.post_kind is not None:
        row["post_kind"] = correction.post_kind
    return row


def ensure_topic(
    kafka: KafkaConnection,
    topics: TopicNames,
    partitions: int = 4,
    replication: int = 1,
    timeout_s: float = 30.0,
) -> bool:
    """Create ``mentions.corrections`` compacted if it is missing (worker and commands alike).

    Kafka then keeps the latest correction per Mention id.

    Returns:
        Whether it was created by this call.
    """
    created = create_topics(
        kafka,
        [topics.corrections],
        partitions,
        replication_factor=replication,
        configs=COMPACTED,
        timeout=timeout_s,
    )
    return bool(created)


def register(
    app: faust.App,
    metrics: AgentMetrics,
    topics: TopicNames,
    partitions: int,
    dead_letter: DeadLetterBatch,
) -> faust.types.AgentT:
    """Add ``count_corrections``: count each correction read from ``mentions.corrections``.

    A tombstone or a record that is not a correction is logged and skipped
    (there is nothing to deliver, so nothing to dead-letter).
    """
    source = app.topic(
        topics.corrections,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
        compacting=True,
    )

    def count(event: EventT) -> None:
        value = event.value if isinstance(event.value, bytes) else None
        if not value:
            return  # a tombstone
        try:
            correction = decode_correction(value)
        except ValueError as exc:
            log.warning("skipping a record of %s: %s", topics.corrections, exc)
            return
        old = correction.old_label or ""
        metrics.count_correction(old, correction.new_label, correction.source)

    async def count_corrections(stream: StreamT) -> None:
        await run_events(stream, stage="corrections", handle=count, dead_letter=dead_letter)

    return app.agent(source, name="count_corrections")(count_corrections)
