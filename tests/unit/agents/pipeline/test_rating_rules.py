"""The star-rating conditions (``rating_at_most`` / ``rating_at_least``) and the example rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agents.pipeline.rules import Rule, route, stars_of_five
from agents.pipeline.rules_file import RulesError, load_rules, parse_rules
from listener.record import LABELS, Classification, Mention

EXAMPLE = Path(__file__).resolve().parents[4] / "deploy" / "rules.example.yaml"
CREATED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _review(label: str, rating: Any, text: str = "meh", **signals: Any) -> Mention:
    extra = {"rating": rating} if rating is not None else {}
    mention = Mention.create(
        source="trustpilot",
        native_id="r1",
        text=text,
        created_at=CREATED,
        signals={**extra, **signals},
    )
    scores = {name: (0.91 if name == label else 0.03) for name in LABELS}
    return mention.model_copy(
        update={"classification": Classification(label=label, scores=scores, model="kw@1")}
    )


@pytest.mark.parametrize(
    ("rating", "at_most_2", "at_least_4"),
    [
        ({"stars": 1, "of": 5}, True, False),
        ({"stars": 2, "of": 5}, True, False),
        ({"stars": 3, "of": 5}, False, False),
        ({"stars": 4, "of": 5}, False, True),
        ({"stars": 5, "of": 5}, False, True),
        ({"stars": 4, "of": 10}, True, False),  # 2 of 5
        ({"stars": 9, "of": 10}, False, True),
        (None, False, False),  # no rating: neither
        ({"stars": "1", "of": 5}, False, False),  # not a number: no rating
        ({"stars": True, "of": 5}, False, False),
    ],
)
def test_rating_conditions(rating: Any, at_most_2: bool, at_least_4: bool) -> None:
    review = _review("complaint", rating)
    low = Rule("low", frozenset(), "P2", "reviews", True, rating_at_most=2)
    high = Rule("high", frozenset(), "P4", "community", False, rating_at_least=4)
    assert low.matches(review, "complaint") is at_most_2
    assert high.matches(review, "complaint") is at_least_4
    assert Rule("any", frozenset(), "P4", "social", False).matches(review, "complaint")


def test_stars_of_five() -> None:
    assert stars_of_five(_review("other", {"stars": 3, "of": 5})) == 3.0
    assert stars_of_five(_review("other", {"stars": 3, "of": 0})) is None
    assert stars_of_five(_review("other", "3")) is None


def test_rating_conditions_from_yaml_are_validated() -> None:
    doc = {
        "rules": [
            {
                "id": "review.mid",
                "when": {"rating_at_least": 2.5, "rating_at_most": 3.5},
                "then": {"needs_response": True, "priority": "P3"},
            }
        ],
        "default": {"then": {"needs_response": False}},
    }
    rules, sla = parse_rules(doc)
    assert route(_review("question", {"stars": 3, "of": 5}), 0.5, rules, sla).rule_ids == (
        "review.mid",
    )
    assert route(_review("question", {"stars": 4, "of": 5}), 0.5, rules, sla).rule_ids == (
        "default",
    )
    doc["rules"][0]["when"] = {"rating_at_most": 6}
    with pytest.raises(RulesError, match=r"rules\[0\] \(review.mid\): when.rating_at_most"):
        parse_rules(doc)


def test_example_low_rating_rule() -> None:
    rules, sla = load_rules(EXAMPLE)
    one_star = route(_review("complaint", {"stars": 1, "of": 5}, "broke in a day"), 0.5, rules, sla)
    assert (one_star.rule_ids, one_star.priority, one_star.team) == (
        ("review.low_rating",),
        "P2",
        "reviews",
    )
    assert one_star.needs_response and one_star.sla_due_at == CREATED + timedelta(hours=4)
    # Legal words still win over the rating.
    legal = route(_review("complaint", {"stars": 1, "of": 5}, "my lawyer"), 0.5, rules, sla)
    assert legal.rule_ids == ("complaint.legal",)
    # Already answered by the brand: the ordinary complaint rule.
    answered = _review("complaint", {"stars": 2, "of": 5}, thread_answered_by_brand=["acme"])
    assert route(answered, 0.5, rules, sla).rule_ids == ("complaint",)
    # Five stars of praise: not queued.
    praise = route(_review("praise", {"stars": 5, "of": 5}, "love it"), 0.5, rules, sla)
    assert praise.rule_ids == ("praise",) and not praise.needs_response
