"""The one record every stage reads and writes: ``Mention``, and its orjson codec.

Stages add to a Mention (classification, signals, routing, stage timestamps); they
never change what an earlier stage wrote. ``Mention.id`` is ``"<source>:<native id>"``
and is the idempotency key at every sink.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from listener.errors import SkippableError

SCHEMA_VERSION = 1
"""Bumped on any incompatible change; decoders reject versions newer than they know.

A new optional field (``Routing.sinks``, ``Classification.needs_response``,
``Mention.own_account_of``, ``Mention.reply_to_author``) is not a bump: older
records decode with its default. Builds from before the field reject records
that carry it (unknown fields are forbidden), so upgrade the readers of a topic
before its writers.
"""

LABELS: tuple[str, ...] = ("complaint", "praise", "question", "other")
"""The four intent labels, in a fixed order (the classifier's score order)."""

Label = Literal["complaint", "praise", "question", "other"]

RESPONSE_LABELS: tuple[Label, ...] = ("complaint", "question")
"""The labels that ask for an answer (the needs_response decision), in guideline precedence."""
Priority = Literal["P1", "P2", "P3", "P4"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a timezone (UTC offset)")
    return value.astimezone(UTC)


class Author(BaseModel):
    """Who wrote the post, as far as the source tells."""

    model_config = _FROZEN

    id: str | None = None
    handle: str | None = None
    name: str | None = None
    followers: int | None = Field(default=None, ge=0)
    url: str | None = None
    verified: bool | None = None


class Classification(BaseModel):
    """The classifier's verdict: the label, a score for each of the four labels, the model.

    ``needs_response`` is the model's calibrated decision (``needs_response_score``,
    P(complaint) + P(question), at or above the model's threshold); both are
    ``None`` in records written before they existed and for classifiers without
    a calibrated threshold, and the router then falls back to its confidence
    threshold on the top label (``agents/pipeline/rules.py``).
    """

    model_config = _FROZEN

    label: Label
    scores: dict[str, float]
    model: str = Field(min_length=1, description="name@version of the model")
    needs_response: bool | None = Field(
        default=None, description="The model's calibrated needs_response decision, if any."
    )
    needs_response_score: float | None = Field(
        default=None, ge=0.0, le=1.0, description="P(complaint) + P(question), if reported."
    )

    @field_validator("scores")
    @classmethod
    def _all_labels_scored(cls, scores: dict[str, float]) -> dict[str, float]:
        if set(scores) != set(LABELS):
            raise ValueError(
                f"scores must have exactly the labels {list(LABELS)}, got {sorted(scores)}"
            )
        return scores

    @property
    def confidence(self) -> float:
        """The score of the chosen label."""
        return self.scores[self.label]


class Routing(BaseModel):
    """The router's decision and why it was taken."""

    model_config = _FROZEN

    needs_response: bool
    priority: Priority | None = None
    team: str | None = None
    sla_due_at: datetime | None = None
    rule_ids: tuple[str, ...] = ()
    sinks: tuple[str, ...] = Field(
        default=(), description="Sinks to notify; empty means every sink that accepts it."
    )

    @field_validator("sla_due_at")
    @classmethod
    def _sla_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _utc(value)


class Mention(BaseModel):
    """A public post that mentions a brand, plus what each stage added to it."""

    model_config = _FROZEN

    schema_version: int = SCHEMA_VERSION
    id: str = Field(min_length=3, description='"<source>:<native id>"')
    source: str = Field(min_length=1, pattern=r"^[a-z0-9_.-]+$")
    text: str
    url: str | None = None
    lang: str | None = None
    author: Author = Author()
    created_at: datetime
    ingested_at: datetime
    brands: tuple[str, ...] = ()
    reply_to_id: str | None = Field(
        default=None, description="The parent post's Mention id, if the post is a reply."
    )
    thread_id: str | None = Field(
        default=None, description="The thread's first post's Mention id, where the source says."
    )
    reply_to_author: Author | None = Field(
        default=None,
        description="Who wrote the parent post, where the source says (a Mastodon status's "
        "in_reply_to_account_id, an X tweet's in_reply_to_user_id, a Bluesky parent's DID, ...).",
    )
    own_account_of: tuple[str, ...] = Field(
        default=(),
        description="Brands whose own account wrote the post (listen.yaml own_accounts); "
        "such posts never reach the human queue.",
    )
    classification: Classification | None = None
    signals: dict[str, Any] = Field(default_factory=dict)
    routing: Routing | None = None
    stage_times: dict[str, float] = Field(
        default_factory=dict,
        description="Unix seconds at which each stage finished (ingested, classified, routed).",
    )

    @field_validator("text")
    @classmethod
    def _text_not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("text is empty")
        return text

    @field_validator("created_at", "ingested_at")
    @classmethod
    def _timestamps_utc(cls, value: datetime) -> datetime:
        return _utc(value)

    @model_validator(mode="after")
    def _id_names_source(self) -> Mention:
        if not self.id.startswith(f"{self.source}:") or len(self.id) <= len(self.source) + 1:
            raise ValueError(
                f"id {self.id!r} must be '<source>:<native id>' with source {self.source!r}"
            )
        return self

    @classmethod
    def create(
        cls,
        *,
        source: str,
        native_id: str,
        text: str,
        created_at: datetime | None = None,
        **fields: Any,
    ) -> Mention:
        """Build a fresh Mention as a connector sees it, stamped as ingested now.

        Args:
            source: Connector name, e.g. ``"bluesky"``.
            native_id: The post's id at the source.
            text: Plain text of the post.
            created_at: Source clock; defaults to now.
            **fields: Any other Mention field (url, lang, author, brands, ...).

        Raises:
            SkippableError: The values do not make a valid Mention.
        """
        now = time.time()
        stamp = datetime.fromtimestamp(now, UTC)
        stage_times = dict(fields.pop("stage_times", {}))
        stage_times.setdefault("ingested", now)
        try:
            return cls(
                id=f"{source}:{native_id}",
                source=source,
                text=text,
                created_at=created_at or stamp,
                ingested_at=stamp,
                stage_times=stage_times,
                **fields,
            )
        except ValidationError as exc:
            raise SkippableError("validation", describe_validation_error(exc)) from exc

    def with_stage(self, stage: str, at: float | None = None, **updates: Any) -> Mention:
        """Return a copy with ``updates`` applied and ``stage`` stamped at ``at`` (default now)."""
        stage_times = {**self.stage_times, stage: time.time() if at is None else at}
        return self.model_copy(update={**updates, "stage_times": stage_times})


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every failing field, e.g. ``"author.followers: ... ; text: ..."``."""
    parts = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "<record>"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


def encode_mention(mention: Mention) -> bytes:
    """Serialise a Mention to JSON bytes (orjson; datetimes as RFC 3339 UTC)."""
    return orjson.dumps(mention.model_dump(mode="python"))


def decode_mention(data: bytes | str) -> Mention:
    """Parse and validate JSON bytes into a Mention.

    Raises:
        SkippableError: reason ``"decode"`` for bytes that are not a JSON object,
            ``"schema_version"`` for a record from a newer schema, ``"validation"``
            for a field that fails validation (the message names the field).
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise SkippableError("decode", f"not valid JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise SkippableError("decode", f"expected a JSON object, got {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise SkippableError(
            "schema_version",
            f"schema_version {version!r} is not supported (this build reads <= {SCHEMA_VERSION})",
        )
    try:
        return Mention.model_validate(obj)
    except ValidationError as exc:
        raise SkippableError("validation", describe_validation_error(exc)) from exc


def routing_label(classification: Classification) -> str:
    """The label the routing rules match a post on (and sinks and dashboards show).

    The top label, except when the model's needs_response decision is yes for
    a post whose top label is praise or other (e.g. P(complaint)=0.30,
    P(question)=0.25, P(other)=0.45): then the higher scoring of complaint and
    question (complaint on a tie, as in the guideline's precedence), so the post
    reaches the complaint or question rules, their priority, team and SLA.
    """
    if classification.needs_response and classification.label not in RESPONSE_LABELS:
        return max(RESPONSE_LABELS, key=lambda name: classification.scores[name])
    return classification.label


def author_key(mention: Mention) -> str | None:
    """``"<source>:<author id or handle>"``, or None when the source names no author."""
    who = mention.author.id or mention.author.handle
    return f"{mention.source}:{who.lower()}" if who else None


def classified_key(mention: Mention) -> bytes:
    """The key of ``mentions.classified``: the author (to meet its vetting state), else the id."""
    return (author_key(mention) or mention.id).encode()
