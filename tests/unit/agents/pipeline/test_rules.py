from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agents.pipeline.rules import (
    BELOW_THRESHOLD,
    LABEL_FROM_SCORES,
    MODEL_SAYS_NO,
    RULES,
    SLA,
    URGENT_TERMS,
    Rule,
    route,
)
from listener.errors import SkippableError
from listener.record import LABELS, Classification, Mention, routing_label

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


# The model's calibrated needs_response decision (issue 3): the shipped model's
# threshold on P(complaint) + P(question) is 0.3977.


def _scored(
    scores: dict[str, float],
    needs_response: bool | None,
    text: str = "hello @brand",
) -> Mention:
    label = max(scores, key=scores.__getitem__)
    classification = Classification(
        label=label,
        scores=scores,
        model="intent-minilm@1.0.0",
        needs_response=needs_response,
        needs_response_score=None
        if needs_response is None
        else scores["complaint"] + scores["question"],
    )
    mention = Mention.create(source="bluesky", native_id="1", text=text, created_at=CREATED)
    return mention.model_copy(update={"classification": classification})


SPLIT = {"complaint": 0.30, "praise": 0.0, "question": 0.25, "other": 0.45}
"""Top label other, but 0.55 on the labels that need a response: over the calibrated 0.3977."""


def test_split_post_over_the_calibrated_score_is_queued_as_complaint() -> None:
    routing = route(_scored(SPLIT, True), threshold=0.5)
    assert routing.needs_response is True
    assert (routing.priority, routing.team) == ("P2", "support")
    assert routing.rule_ids == ("complaint", LABEL_FROM_SCORES)
    assert routing.sla_due_at == CREATED + SLA["P2"]


def test_split_post_leaning_to_question_is_routed_as_question() -> None:
    scores = {"complaint": 0.15, "praise": 0.30, "question": 0.25, "other": 0.30}
    routing = route(_scored(scores, True, "any idea when the outage ends"), threshold=0.5)
    assert routing.needs_response is True
    assert routing.rule_ids == ("question", LABEL_FROM_SCORES)
    assert routing.priority == "P3"  # the urgent terms are complaint rules only


def test_tie_between_complaint_and_question_is_a_complaint() -> None:
    scores = {"complaint": 0.2, "praise": 0.1, "question": 0.2, "other": 0.5}
    assert routing_label(_scored(scores, True).classification) == "complaint"  # type: ignore[arg-type]
    assert route(_scored(scores, True, "outage again"), 0.5).rule_ids == (
        "complaint.urgent",
        LABEL_FROM_SCORES,
    )


def test_split_post_without_the_model_decision_keeps_the_old_rule() -> None:
    # A record from before the decision existed: top label and confidence decide.
    routing = route(_scored(SPLIT, None), threshold=0.5)
    assert routing.needs_response is False
    assert routing.rule_ids == ("other",)


def test_complaint_below_the_calibrated_score_is_not_queued() -> None:
    scores = {"complaint": 0.34, "praise": 0.33, "question": 0.01, "other": 0.32}
    routing = route(_scored(scores, False), threshold=0.3)  # confident enough by the old rule
    assert routing.needs_response is False
    assert routing.sla_due_at is None
    assert routing.rule_ids == ("complaint", MODEL_SAYS_NO)
    assert routing.priority == "P2"  # priority still recorded


def test_the_model_decision_replaces_the_confidence_threshold() -> None:
    scores = {"complaint": 0.40, "praise": 0.05, "question": 0.30, "other": 0.25}
    routing = route(_scored(scores, True), threshold=0.5)  # 0.40 < 0.5: the old rule said no
    assert routing.needs_response is True
    assert routing.rule_ids == ("complaint",)


def test_rule_that_does_not_respond_stays_silent_whatever_the_model_says() -> None:
    quiet = (Rule("author.spam", frozenset(), "P4", "trust-safety", False),)
    routing = route(_scored(SPLIT, True), 0.5, rules=quiet)
    assert routing.needs_response is False
    assert routing.rule_ids == ("author.spam", LABEL_FROM_SCORES)


def test_a_rule_responding_to_praise_keeps_the_confidence_threshold() -> None:
    # The calibrated decision is about complaints and questions; thanking praise is not.
    thank = (
        Rule("praise.thank", frozenset({"praise"}), "P4", "community", True),
        *RULES,
    )
    scores = {"complaint": 0.05, "praise": 0.85, "question": 0.05, "other": 0.05}
    assert route(_scored(scores, False), 0.5, rules=thank).needs_response is True
    assert route(_scored(scores, False), 0.9, rules=thank).rule_ids == (
        "praise.thank",
        BELOW_THRESHOLD,
    )


def test_min_confidence_is_the_score_of_the_label_matched() -> None:
    legal = (
        Rule("complaint.legal", frozenset({"complaint"}), "P1", "legal", True, min_confidence=0.6),
        *RULES,
    )
    # Matched as complaint from the scores: P(complaint) = 0.30 < 0.6, so the next rule.
    assert route(_scored(SPLIT, True), 0.5, rules=legal).rule_ids == (
        "complaint",
        LABEL_FROM_SCORES,
    )
    strong = {"complaint": 0.7, "praise": 0.1, "question": 0.1, "other": 0.1}
    assert route(_scored(strong, True), 0.5, rules=legal).rule_ids == ("complaint.legal",)


def test_own_account_post_is_never_queued_whatever_its_label() -> None:
    from agents.pipeline.rules import OWN_ACCOUNT

    brand_reply = _mention("complaint", 0.99, "We're very sorry. Please DM us your order number")
    assert route(brand_reply, 0.5).needs_response is True
    own = brand_reply.model_copy(update={"own_account_of": ("acme",)})
    routing = route(own, 0.5)
    assert routing.needs_response is False
    assert routing.rule_ids == (OWN_ACCOUNT,)
    assert (routing.priority, routing.team, routing.sla_due_at) == (None, None, None)
    # Even a table that queues everything does not queue it.
    everything = (Rule("all", frozenset(), "P1", "support", True),)
    assert route(own, 0.0, everything).rule_ids == (OWN_ACCOUNT,)
    # Unclassified own posts are routed too (nothing to decide).
    unclassified = _mention(None).model_copy(update={"own_account_of": ("acme",)})
    assert route(unclassified, 0.5).needs_response is False


@pytest.mark.parametrize(
    ("fields", "signals", "hits"),
    [
        ({}, {}, (False, False, False)),
        ({"reply_to_id": "bluesky:0"}, {}, (True, False, False)),
        ({"reply_to_id": "bluesky:0"}, {"reply_to_own_account": ["acme"]}, (True, True, False)),
        ({"thread_id": "bluesky:0"}, {"thread_answered_by_brand": ["acme"]}, (False, False, True)),
    ],
)
def test_thread_conditions(
    fields: dict[str, str], signals: dict[str, list[str]], hits: tuple[bool, bool, bool]
) -> None:
    mention = _mention("question").model_copy(update={**fields, "signals": signals})
    base = Rule("r", frozenset(), "P3", "support", True)
    rules = [
        Rule("r", frozenset(), "P3", "support", True, is_reply=True),
        Rule("r", frozenset(), "P3", "support", True, reply_to_own_account=True),
        Rule("r", frozenset(), "P3", "support", True, thread_answered_by_brand=True),
    ]
    assert tuple(rule.matches(mention, "question") for rule in rules) == hits
    negated = [
        Rule("r", frozenset(), "P3", "support", True, is_reply=False),
        Rule("r", frozenset(), "P3", "support", True, reply_to_own_account=False),
        Rule("r", frozenset(), "P3", "support", True, thread_answered_by_brand=False),
    ]
    assert tuple(rule.matches(mention, "question") for rule in negated) == tuple(
        not hit for hit in hits
    )
    assert base.matches(mention, "question")
