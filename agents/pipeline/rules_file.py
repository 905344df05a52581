"""Routing rules from a YAML file (one per deployment), validated with pydantic at start-up.

The file replaces the built-in table (:data:`agents.pipeline.rules.RULES`) and SLA::

    sla: {P1: 1h, P2: 4h, P3: 24h}        # optional; P4 has none unless given
    business_hours: {timezone: Europe/Berlin, hours: "09:00-17:00", priorities: [P2, P3]}
    rules:                                 # first match wins
      - id: complaint.legal
        when: {label: complaint, keywords: [lawsuit, lawyer], min_confidence: 0.6}
        then: {needs_response: true, priority: P1, team: legal, sinks: [zendesk, pagerduty]}
    default:                               # what matches no rule (required)
      then: {needs_response: false, priority: P4, team: social}

Every error names the rule (by id, and its position) and the field, e.g.
``rules[2] (complaint.legal): when.min_confidence: Input should be less than
or equal to 1``. See ``deploy/rules.example.yaml`` for every condition.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from pathlib import Path
from typing import Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agents.pipeline.business_hours import BusinessHoursSpec
from agents.pipeline.rules import Rule
from listener.record import Priority

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_STRICT = ConfigDict(frozen=True, extra="forbid")


RuleTable = tuple[tuple[Rule, ...], dict[str, timedelta]]
"""The rule table (first match wins, the default last) and the SLA by priority."""


class RulesError(ValueError):
    """The rules file is missing, not YAML, or not a valid rule set."""


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, str | int | float) else value


VettingFlag = Literal[
    "repost_only", "link_heavy", "many_domains", "self_promotion", "mass_mentions", "high_rate",
    "duplicate_text",
]  # fmt: skip
"""The author flags of ``agents/pipeline/vetting.py`` (its ``WEIGHTS`` keys)."""


class When(BaseModel):
    """A rule's conditions; all given conditions must hold (none given: always)."""

    model_config = _STRICT

    label: tuple[Literal["complaint", "praise", "question", "other"], ...] = ()
    min_confidence: float | None = Field(default=None, ge=0, le=1)
    brand: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    language: tuple[str, ...] = ()
    min_followers: int | None = Field(default=None, ge=0)
    verified: bool | None = None
    keywords: tuple[str, ...] = Field(default=(), description="Words or phrases, any case.")
    hours: str | None = Field(default=None, description='Local time window "HH:MM-HH:MM".')
    timezone: str = "UTC"
    min_vetting_score: float | None = Field(default=None, ge=0, le=1)
    max_vetting_score: float | None = Field(default=None, ge=0, le=1)
    author_flags: tuple[VettingFlag, ...] = Field(default=(), description="Any of these flags.")
    is_reply: bool | None = Field(default=None, description="The post is (not) a reply.")
    reply_to_own_account: bool | None = Field(
        default=None, description="The post replies (does not reply) to a brand's own post."
    )
    thread_answered_by_brand: bool | None = Field(
        default=None, description="A brand's own account posted (did not post) in the thread."
    )
    rating_at_most: float | None = Field(
        default=None, ge=1, le=5, description="A review of at most this many stars (of 5)."
    )
    rating_at_least: float | None = Field(
        default=None, ge=1, le=5, description="A review of at least this many stars (of 5)."
    )

    _tuple = field_validator(
        "label", "brand", "source", "language", "keywords", "author_flags", mode="before"
    )(_as_tuple)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            parse_hours(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class Then(BaseModel):
    """What a matching rule decides."""

    model_config = _STRICT

    needs_response: bool
    priority: Priority = "P4"
    team: str = Field(default="social", min_length=1)
    sinks: tuple[str, ...] = ()
    business_hours: bool | None = Field(
        default=None, description="SLA in business hours only; unset: by priority."
    )

    _tuple = field_validator("sinks", mode="before")(_as_tuple)

    @field_validator("sinks")
    @classmethod
    def _known_sinks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from agents.sinks import SINKS

        unknown = [name for name in value if name not in SINKS]
        if unknown:
            raise ValueError(f"unknown sink(s) {unknown}; known: {', '.join(sorted(SINKS))}")
        return value


class RuleSpec(BaseModel):
    """One rule of the file."""

    model_config = _STRICT

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")
    when: When = Field(default_factory=When)
    then: Then


class DefaultSpec(BaseModel):
    """The catch-all at the end of the table."""

    model_config = _STRICT

    id: str = Field(default="default", min_length=1)
    then: Then


class RulesFile(BaseModel):
    """The whole file."""

    model_config = _STRICT

    sla: dict[Priority, timedelta] = Field(default_factory=dict)
    business_hours: BusinessHoursSpec | None = None
    rules: tuple[RuleSpec, ...] = ()
    default: DefaultSpec

    @model_validator(mode="after")
    def _calendar_given(self) -> Self:
        if self.business_hours is None:
            specs: tuple[RuleSpec | DefaultSpec, ...] = (*self.rules, self.default)
            wanting = [s.id for s in specs if s.then.business_hours]
            if wanting:
                raise ValueError(f"rule(s) {wanting} ask for business_hours; add that block")
        return self

    @field_validator("sla", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: parse_duration(v) if isinstance(v, str) else v for k, v in value.items()}

    @field_validator("rules")
    @classmethod
    def _unique(cls, value: tuple[RuleSpec, ...]) -> tuple[RuleSpec, ...]:
        seen: set[str] = set()
        for spec in value:
            if spec.id in seen:
                raise ValueError(f"duplicate rule id {spec.id!r}")
            seen.add(spec.id)
        return value


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"4h"``, ``"2d"`` (or anything pydantic reads as a timedelta)."""
    match = _DURATION.match(text)
    if match is None:
        from pydantic import TypeAdapter

        return TypeAdapter(timedelta).validate_python(text)
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


def parse_hours(text: str) -> tuple[time, time]:
    """``"09:00-17:30"`` -> (09:00, 17:30).

    Raises:
        ValueError: Not two ``HH:MM`` times joined by ``-``, or an empty window.
    """
    parts = [p.strip() for p in text.split("-")]
    try:
        start, end = (time.fromisoformat(p) for p in parts)
    except ValueError as exc:
        raise ValueError(f'hours must look like "09:00-17:00", not {text!r}') from exc
    if start == end:
        raise ValueError(f"hours {text!r} is an empty window")
    return start, end


def to_rule(spec: RuleSpec | DefaultSpec, hours: BusinessHoursSpec | None = None) -> Rule:
    """The evaluator's :class:`~agents.pipeline.rules.Rule` for one validated spec.

    Args:
        spec: The rule.
        hours: The file's business hours, if any; they apply to the rule when
            ``then.business_hours`` says so, or (unset) when its priority is listed.
    """
    when = spec.when if isinstance(spec, RuleSpec) else When()
    then = spec.then
    uses = then.business_hours
    if uses is None:
        uses = hours is not None and then.priority in hours.priorities
    return Rule(
        id=spec.id,
        labels=frozenset(when.label),
        priority=then.priority,
        team=then.team,
        responds=then.needs_response,
        terms=when.keywords,
        min_confidence=when.min_confidence,
        brands=frozenset(b.lower() for b in when.brand),
        sources=frozenset(when.source),
        languages=frozenset(when.language),
        min_followers=when.min_followers,
        verified=when.verified,
        hours=parse_hours(when.hours) if when.hours else None,
        timezone=when.timezone,
        sinks=then.sinks,
        min_vetting_score=when.min_vetting_score,
        max_vetting_score=when.max_vetting_score,
        author_flags=frozenset(when.author_flags),
        is_reply=when.is_reply,
        reply_to_own_account=when.reply_to_own_account,
        thread_answered_by_brand=when.thread_answered_by_brand,
        rating_at_most=when.rating_at_most,
        rating_at_least=when.rating_at_least,
        business_hours=hours.calendar() if uses and hours is not None else None,
    )


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``rules[2] (complaint.legal): when.min_confidence`` from a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = data.get("rules") if isinstance(data, dict) else None
        spec = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        rule_id = spec.get("id") if isinstance(spec, dict) else None
        field = ".".join(str(p) for p in loc[2:]) or "(rule)"
        return f"rules[{loc[1]}] ({rule_id or 'no id'}): {field}"
    return ".".join(str(p) for p in loc) or "(file)"


def parse_rules(
    data: Any, origin: str = "<rules>"
) -> tuple[tuple[Rule, ...], dict[str, timedelta]]:
    """Validate a parsed rules document.

    Args:
        data: The YAML document (a mapping).
        origin: Where it came from, for messages.

    Returns:
        The rule table (the default rule last) and the SLA by priority.

    Raises:
        RulesError: Every problem, one per line, naming the rule and the field.
    """
    try:
        parsed = RulesFile.model_validate(data)
    except ValidationError as exc:
        lines = [f"{_where(tuple(e['loc']), data)}: {e['msg']}" for e in exc.errors()]
        raise RulesError(f"{origin}: invalid routing rules:\n  " + "\n  ".join(lines)) from None
    hours = parsed.business_hours
    rules = (*(to_rule(spec, hours) for spec in parsed.rules), to_rule(parsed.default, hours))
    return rules, {str(k): v for k, v in parsed.sla.items()}


def load_rules(path: Path) -> RuleTable:
    """Read and validate a rules file.

    Raises:
        RulesError: The file cannot be read, is not YAML, or is invalid.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"{path}: cannot read routing rules: {exc}") from exc
    return parse_rules(data, str(path))
