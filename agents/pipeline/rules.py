"""Routing rules as data, and the one pure function that applies them.

No I/O and no Faust here: :func:`route` maps a classified Mention to a
:class:`~listener.record.Routing`, and ``agents/pipeline/route.py`` is its only caller
in the pipeline. The built-in table is :data:`RULES` with :data:`SLA`; a
deployment replaces both with a YAML file (``agents/pipeline/rules_file.py``). First
match wins; nothing else decides.

Whether a matching rule that responds queues the post is the model's
calibrated needs_response decision when the classification carries one
(P(complaint) + P(question) at or above the model's threshold, see
``models/intent-minilm/README.md``), and the worker's confidence threshold on
the top label otherwise (records from before the decision existed, models
without a calibrated threshold). :func:`route` documents the details.

Before any rule, a post written by one of its brand's own accounts
(``Mention.own_account_of``, set at ingest from ``listen.yaml``) is never
queued: it gets the rule id :data:`OWN_ACCOUNT` and no rule of the table runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from typing import TypeGuard
from zoneinfo import ZoneInfo

from agents.pipeline.business_hours import BusinessHours, due_at
from listener.errors import SkippableError
from listener.record import (
    RESPONSE_LABELS,
    Mention,
    Priority,
    Routing,
    routing_label,
)

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

MODEL_SAYS_NO = "needs_response.below_threshold"
"""Rule id added when a complaint/question rule responds but the model's calibrated
needs_response score is below its threshold (the post is not queued)."""

OWN_ACCOUNT = "own_account"
"""Rule id of a post by one of its brand's own accounts: never queued, whatever the rules say."""

LABEL_FROM_SCORES = "needs_response.label_from_scores"
"""Rule id added when the rules matched the higher of complaint/question instead of the
top label (praise or other), because the model's needs_response decision was yes."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One routing rule.

    Attributes:
        id: Stable name, recorded in ``Routing.rule_ids``.
        labels: Intent labels the rule matches.
        priority: Priority given when it matches.
        team: Team that owns the mention.
        responds: Whether a matching mention needs a human response (subject to the
            model's needs_response decision or the confidence threshold, see
            :func:`route`).
        terms: If set, at least one of these words/phrases must occur in the text.
        min_confidence: If set, the classifier's score for the label being matched
            must be at least this (the top label's, unless :func:`route` matches on
            complaint/question from the model's needs_response decision).
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
            ``mass_mentions``, ``high_rate``, ``duplicate_text``; see
            ``agents/pipeline/vetting.py``).
        business_hours: If set, the SLA clock of a matching mention runs only in these
            hours (:func:`agents.pipeline.business_hours.due_at`); None: every hour counts.
        is_reply: If set, whether the post must (True) or must not (False) be a reply
            (``reply_to_id`` set).
        reply_to_own_account: If set, whether the post must (not) reply to a post by one
            of its brand's own accounts (``signals["reply_to_own_account"]``, set at ingest).
        thread_answered_by_brand: If set, whether the post must (not) be in a thread
            where one of its brand's own accounts already posted
            (``signals["thread_answered_by_brand"]``).
        rating_at_most: If set, the post must carry a star rating
            (``signals["rating"] = {"stars": n, "of": m}``, set by the review
            connectors) of at most this many stars out of 5 (other scales scaled to 5).
        rating_at_least: If set, a star rating of at least this many out of 5.

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
    is_reply: bool | None = None
    reply_to_own_account: bool | None = None
    thread_answered_by_brand: bool | None = None
    rating_at_most: float | None = None
    rating_at_least: float | None = None

    def matches(self, mention: Mention, label: str) -> bool:
        """Whether this rule applies to ``mention`` classified as ``label``."""
        if self.labels and label not in self.labels:
            return False
        classification = mention.classification
        confidence = classification.scores.get(label, 0.0) if classification else 0.0
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
        if not self._vetting_matches(mention) or not self._thread_matches(mention):
            return False
        if not self._rating_matches(mention):
            return False
        return not self.terms or _terms_pattern(self.terms).search(mention.text) is not None

    def _thread_matches(self, mention: Mention) -> bool:
        wanted = (
            (self.is_reply, mention.reply_to_id is not None),
            (self.reply_to_own_account, bool(mention.signals.get("reply_to_own_account"))),
            (self.thread_answered_by_brand, bool(mention.signals.get("thread_answered_by_brand"))),
        )
        return all(want is None or want == have for want, have in wanted)

    def _rating_matches(self, mention: Mention) -> bool:
        if self.rating_at_most is None and self.rating_at_least is None:
            return True
        stars = stars_of_five(mention)
        if stars is None:
            return False
        if self.rating_at_most is not None and stars > self.rating_at_most:
            return False
        return self.rating_at_least is None or stars >= self.rating_at_least

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
    # An author support staff marked as spam in the inbox (vetting flag marked_spam).
    Rule(
        "author.marked_spam",
        frozenset({"complaint", "question", "praise", "other"}),
        "P4",
        "trust-safety",
        False,
        author_flags=frozenset({"marked_spam"}),
    ),
    Rule("complaint.urgent", frozenset({"complaint"}), "P1", "escalations", True, URGENT_TERMS),
    Rule("complaint", frozenset({"complaint"}), "P2", "support", True),
    Rule("question", frozenset({"question"}), "P3", "support", True),
    Rule("praise", frozenset({"praise"}), "P4", "community", False),
    Rule("other", frozenset({"other"}), "P4", "social", False),
)
"""Ordered table; the first rule that matches decides."""

_PATTERNS: dict[tuple[str, ...], re.Pattern[str]] = {}


def stars_of_five(mention: Mention) -> float | None:
    """The post's star rating on a 5-star scale (``signals["rating"]``), or None without one."""
    rating = mention.signals.get("rating")
    if not isinstance(rating, dict):
        return None
    stars, of = rating.get("stars"), rating.get("of", 5)
    if not (_number(stars) and _number(of)) or of <= 0:
        return None
    return float(stars) * 5.0 / float(of)


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


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

    A post by one of its brand's own accounts (``own_account_of``) never needs
    one: its routing has the single rule id :data:`OWN_ACCOUNT`, no priority,
    team or SLA, and the table is not consulted. Otherwise the rules are matched
    on :func:`routing_label`. A matching rule that does not respond never
    queues. One that responds queues:

    * when the classification carries the model's calibrated needs_response
      decision and the matched label is complaint or question: by that
      decision (a "no" adds :data:`MODEL_SAYS_NO` to the rule ids);
    * otherwise (records without the decision, and custom rules that respond
      to praise or other): when the top label's confidence is at least
      ``threshold`` (a "no" adds :data:`BELOW_THRESHOLD`), as before the
      decision existed.

    A post matched on complaint/question instead of its top label carries
    :data:`LABEL_FROM_SCORES` in its rule ids.

    Args:
        mention: A classified Mention.
        threshold: Minimum top-label confidence for a response (inclusive), used
            where the model's needs_response decision does not apply (above).
        rules: The rule table, first match wins.
        sla: Time to first response by priority (a priority not in it has none).

    Returns:
        The routing decision; ``sla_due_at`` is set only when a response is needed,
        counting only the rule's business hours when it has them.

    Raises:
        SkippableError: reason ``"unclassified"`` when the mention has no classification,
            ``"no_rule"`` when no rule matches its label.
    """
    if mention.own_account_of:
        return Routing(needs_response=False, rule_ids=(OWN_ACCOUNT,))
    classification = mention.classification
    if classification is None:
        raise SkippableError("unclassified", f"{mention.id} has no classification to route on")
    label = routing_label(classification)
    rule = next((r for r in rules if r.matches(mention, label)), None)
    if rule is None:
        raise SkippableError("no_rule", f"no routing rule matches label {label!r}")
    rule_ids: tuple[str, ...] = (rule.id,)
    if label != classification.label:
        rule_ids += (LABEL_FROM_SCORES,)
    decision = classification.needs_response
    needs_response = False
    if rule.responds and decision is not None and label in RESPONSE_LABELS:
        needs_response = decision
        rule_ids += () if needs_response else (MODEL_SAYS_NO,)
    elif rule.responds:
        needs_response = classification.confidence >= threshold
        rule_ids += () if needs_response else (BELOW_THRESHOLD,)
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
