from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.rules import BELOW_THRESHOLD, RULES, SLA, URGENT_TERMS, Rule, route
from listener.errors import SkippableError
from listener.record import LABELS, Classification, Mention

CREATED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def _mention(label: str | None, confidence: float = 0.9, text: str = "hello @brand") -> Mention:
    mention = Mention.create(source="bluesky", native_id="1", text=text, created_at=CREATED)
    if label is None:
        return mention
    rest = (1.0 - confidence) / 3
    scores = {name: (confidence if name == label else rest) for name in LABELS}
    return mention.model_copy(
        update={"classification": Classification(label=label, scores=scores, model="kw@1")}
    )


@pytest.mark.parametrize(
    ("label", "text", "priority", "team", "needs", "rule_id"),
    [
        ("complaint", "my bill is wrong again", "P2", "support", True, "complaint"),
        ("complaint", "Total OUTAGE since 9am", "P1", "escalations", True, "complaint.urgent"),
        ("complaint", "my account was hacked!", "P1", "escalations", True, "complaint.urgent"),
        ("complaint", "I will file a lawsuit", "P1", "escalations", True, "complaint.urgent"),
        ("complaint", "they had a data  breach", "P1", "escalations", True, "complaint.urgent"),
        ("question", "how do I reset my router?", "P3", "support", True, "question"),
        ("praise", "love the new app", "P4", "community", False, "praise"),
        ("other", "saw an ad on the bus", "P4", "social", False, "other"),
    ],
)
def test_each_rule(
    label: str, text: str, priority: str, team: str, needs: bool, rule_id: str
) -> None:
    routing = route(_mention(label, 0.9, text), threshold=0.5)
    assert routing.priority == priority
    assert routing.team == team
    assert routing.needs_response is needs
    assert routing.rule_ids == (rule_id,)


def test_urgent_terms_match_whole_words_only() -> None:
    # "outages" is not the term "outage", and a question is never P1.
    assert route(_mention("complaint", text="outages are not words here"), 0.5).priority == "P2"
    assert route(_mention("question", text="was my card stolen?"), 0.5).priority == "P3"


@pytest.mark.parametrize("label", ["complaint", "question"])
def test_threshold_is_inclusive(label: str) -> None:
    at = route(_mention(label, 0.6), threshold=0.6)
    below = route(_mention(label, 0.59), threshold=0.6)
    assert at.needs_response is True
    assert at.sla_due_at is not None
    assert below.needs_response is False
    assert below.sla_due_at is None
    assert below.rule_ids == (label, BELOW_THRESHOLD)
    assert below.priority == at.priority  # priority still recorded


@pytest.mark.parametrize(
    ("text", "label", "hours"),
    [
        ("hacked", "complaint", 1),
        ("late", "complaint", 4),
        ("how?", "question", 24),
    ],
)
def test_sla_due_from_created_at(text: str, label: str, hours: int) -> None:
    routing = route(_mention(label, 0.9, text), 0.5)
    assert routing.sla_due_at == CREATED + timedelta(hours=hours)
    assert SLA[routing.priority or ""] == timedelta(hours=hours)


def test_no_sla_when_no_response_needed() -> None:
    assert route(_mention("praise", 0.99), 0.5).sla_due_at is None


def test_unclassified_is_skippable() -> None:
    with pytest.raises(SkippableError) as info:
        route(_mention(None), 0.5)
    assert info.value.reason == "unclassified"


def test_custom_table_without_match_is_skippable() -> None:
    only = (Rule("q", frozenset({"question"}), "P3", "support", True),)
    with pytest.raises(SkippableError) as info:
        route(_mention("praise"), 0.5, rules=only)
    assert info.value.reason == "no_rule"


def test_table_covers_every_label_and_ids_are_unique() -> None:
    assert {label for rule in RULES for label in rule.labels} == set(LABELS)
    assert len({rule.id for rule in RULES}) == len(RULES)
    assert "outage" in URGENT_TERMS
