"""Routing rules as data, and the one pure function that applies them.

No I/O and no Faust here: :func:`route` maps a classified Mention to a
:class:`~listener.record.Routing`, and ``agents/route.py`` is its only caller
in the pipeline. The built-in table is :data:`RULES` with :data:`SLA`; a
deployment replaces both with a YAML file (``agents/rules_file.py``). First
match wins; nothing else decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from zoneinfo import ZoneInfo

from agents.business_hours import BusinessHours, due_at
from listener.errors import SkippableError
from listener.record import Mention, Priority, Routing

URGENT_TERMS: tuple[str, ...] = (
    "outage",
    "hacked",
    "lawsuit",
    "lawyer",
    "injured",
    "injury",
    "stolen",
    "fraud",
    "data breach",
    "unsafe",
)
"""Words that make a complaint P1; matched case-insensitively on word boundaries."""

SLA: dict[str, timedelta] = {
    "P1": timedelta(hours=1),
    "P2": timedelta(hours=4),
    "P3": timedelta(hours=24),
}
"""Time to first response by priority, from the post's ``created_at``; P4 has none."""

BELOW_THRESHOLD = "confidence.below_threshold"
"""Rule id added when a label that wants a response is below the confidence threshold."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One routing rule.

    Attributes:
        id: Stable name, recorded in ``Routing.rule_ids``.
        labels: Intent labels the rule matches.
        priority: Priority given when it matches.
        team: Team that owns the mention.
        responds: Whether a matching mention needs a human response (subject to the
            confidence threshold).
        terms: If set, at least one of these words/phrases must occur in the text.
        min_confidence: If set, the classifier's confidence must be at least this.
        brands: If set, one of the mention's brands must be one of these (any case).
        sources: If set, the mention's source must be one of these.
        languages: If set, the mention's language must be one of these.
        min_followers: If set, the author must have at least this many followers.
        verified: If set, the author's verified flag must equal it.
        hours: If set, ``(start, end)`` local time of ``created_at`` in ``timezone``;
            the window may wrap midnight (22:00-06:00).
        timezone: IANA zone of ``hours``.
        sinks: Sinks to notify; empty means every configured sink that accepts it.
        min_vetting_score: If set, ``signals["vetting"]["score"]`` must be at least this
            (a mention with no vetting counts as 0).
        max_vetting_score: If set, the vetting score must be at most this.
        author_flags: If set, the author must have one of these vetting flags
            (``repost_only``, ``link_heavy``, ``many_domains``, ``self_promotion``,
            ``mass_mentions``, ``high_rate``, ``duplicate_text``; see ``agents/vetting.py``).
        business_hours: If set, the SLA clock of a matching mention runs only in these
            hours (:func:`agents.business_hours.due_at`); None: every hour counts.

    An empty ``labels`` matches every label.
    """

    id: str
    labels: frozenset[str]
    priority: Priority
    team: str
    responds: bool
    terms: tuple[str, ...] = ()
    min_confidence: float | None = None
    brands: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()
    languages: frozenset[str] = frozenset()
    min_followers: int | None = None
    verified: bool | None = None
    hours: tuple[time, time] | None = None
    timezone: str = "UTC"
    sinks: tuple[str, ...] = ()
    min_vetting_score: float | None = None
    max_vetting_score: float | None = None
    author_flags: frozenset[str] = frozenset()
    business_hours: BusinessHours | None = None

    def matches(self, mention: Mention, label: str) -> bool:
        """Whether this rule applies to ``mention`` classified as ``label``."""
        if self.labels and label not in self.labels:
            return False
        confidence = mention.classification.confidence if mention.classification else 0.0
        if self.min_confidence is not None and confidence < self.min_confidence:
            return False
        if self.brands and not self.brands & {b.lower() for b in mention.brands}:
            return False
        if self.sources and mention.source not in self.sources:
            return False
        if self.languages and (mention.lang or "") not in self.languages:
            return False
        author = mention.author
        if self.min_followers is not None and (author.followers or 0) < self.min_followers:
            return False
        if self.verified is not None and bool(author.verified) != self.verified:
            return False
        if self.hours is not None and not _in_hours(self.hours, self.timezone, mention):
            return False
        if not self._vetting_matches(mention):
            return False
        return not self.terms or _terms_pattern(self.terms).search(mention.text) is not None

    def _vetting_matches(self, mention: Mention) -> bool:
        vetting = mention.signals.get("vetting")
        vetting = vetting if isinstance(vetting, dict) else {}
        score = float(vetting.get("score", 0.0))
        if self.min_vetting_score is not None and score < self.min_vetting_score:
            return False
        if self.max_vetting_score is not None and score > self.max_vetting_score:
            return False
        return not self.author_flags or bool(self.author_flags & set(vetting.get("flags", ())))


RULES: tuple[Rule, ...] = (
    Rule("complaint.urgent", frozenset({"complaint"}), "P1", "escalations", True, URGENT_TERMS),
    Rule("complaint", frozenset({"complaint"}), "P2", "support", True),
    Rule("question", frozenset({"question"}), "P3", "support", True),
    Rule("praise", frozenset({"praise"}), "P4", "community", False),
    Rule("other", frozenset({"other"}), "P4", "social", False),
)
"""Ordered table; the first rule that matches decides."""

_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def _in_hours(hours: tuple[time, time], timezone: str, mention: Mention) -> bool:
    start, end = hours
    local = mention.created_at.astimezone(ZoneInfo(timezone)).time()
    return start <= local < end if start <= end else local >= start or local < end


def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    pattern = _PATTERNS.get(terms)
    if pattern is None:
        alternatives = "|".join(r"\s+".join(map(re.escape, t.split())) for t in terms)
        pattern = _PATTERNS[terms] = re.compile(rf"\b(?:{alternatives})\b", re.IGNORECASE)
    return pattern


def route(
    mention: Mention,
    threshold: float,
    rules: tuple[Rule, ...] = RULES,
    sla: Mapping[str, timedelta] = SLA,
) -> Routing:
    """Decide whether ``mention`` needs a human response, how urgently and by whom.

    Args:
        mention: A classified Mention.
        threshold: Minimum classifier confidence for a response (inclusive).
        rules: The rule table, first match wins.
        sla: Time to first response by priority (a priority not in it has none).

    Returns:
        The routing decision; ``sla_due_at`` is set only when a response is needed,
        counting only the rule's business hours when it has them.

    Raises:
        SkippableError: reason ``"unclassified"`` when the mention has no classification,
            ``"no_rule"`` when no rule matches its label.
    """
    classification = mention.classification
    if classification is None:
        raise SkippableError("unclassified", f"{mention.id} has no classification to route on")
    label = classification.label
    rule = next((r for r in rules if r.matches(mention, label)), None)
    if rule is None:
        raise SkippableError("no_rule", f"no routing rule matches label {label!r}")
    confident = classification.confidence >= threshold
    needs_response = rule.responds and confident
    rule_ids = (rule.id,) if confident or not rule.responds else (rule.id, BELOW_THRESHOLD)
    due = sla.get(rule.priority) if needs_response else None
    return Routing(
        needs_response=needs_response,
        priority=rule.priority,
        team=rule.team,
        sla_due_at=due_at(mention.created_at, due, rule.business_hours)
        if due is not None
        else None,
        rule_ids=rule_ids,
        sinks=rule.sinks,
    )
