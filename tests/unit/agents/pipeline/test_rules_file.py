"""Routing rules from YAML: validation errors that name the rule and field; each condition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.pipeline.rules import route
from agents.pipeline.rules_file import RulesError, load_rules, parse_rules
from listener.record import LABELS, Author, Classification, Mention

EXAMPLE = Path(__file__).resolve().parents[4] / "deploy" / "rules.example.yaml"
CREATED = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _mention(label: str, text: str = "hi @acme", confidence: float = 0.9, **fields: Any) -> Mention:
    fields.setdefault("created_at", CREATED)
    mention = Mention.create(source="bluesky", native_id="1", text=text, **fields)
    rest = (1.0 - confidence) / 3
    scores = {name: (confidence if name == label else rest) for name in LABELS}
    return mention.model_copy(
        update={"classification": Classification(label=label, scores=scores, model="kw@1")}
    )


def test_example_file_loads_and_routes() -> None:
    rules, sla = load_rules(EXAMPLE)
    assert rules[-1].id == "other" and sla["P1"] == timedelta(hours=1)
    legal = route(_mention("complaint", "I will call my lawyer"), 0.5, rules, sla)
    assert (legal.priority, legal.team, legal.sinks) == ("P1", "legal", ("zendesk", "pagerduty"))
    assert legal.rule_ids == ("complaint.legal",)
    assert legal.sla_due_at == CREATED + timedelta(hours=1)
    plain = route(_mention("complaint", "bill wrong"), 0.5, rules, sla)
    assert (plain.rule_ids, plain.sinks, plain.team) == (("complaint",), (), "support")
    big = _mention("complaint", "bill wrong", author=Author(handle="x", followers=50_000))
    assert route(big, 0.5, rules, sla).rule_ids == ("complaint.influencer",)
    night = _mention("complaint", "bill wrong", created_at=datetime(2026, 3, 2, 23, tzinfo=UTC))
    assert route(night, 0.5, rules, sla).team == "night-shift"
    fan = _mention("praise", "love it", 0.95, author=Author(handle="y", verified=True))
    assert route(fan, 0.5, rules, sla).sinks == ("slack",)
    assert route(_mention("praise", "love it", 0.7), 0.5, rules, sla).needs_response is False
    other = route(_mention("other"), 0.5, rules, sla)
    assert (other.rule_ids, other.needs_response) == (("other",), False)


def test_brand_source_language_conditions() -> None:
    doc = {
        "rules": [
            {
                "id": "acme.fr",
                "when": {"brand": "ACME", "source": ["mastodon"], "language": "fr"},
                "then": {"needs_response": True, "priority": "P3", "team": "fr"},
            }
        ],
        "default": {"then": {"needs_response": False}},
    }
    rules, sla = parse_rules(doc)
    hit = _mention("other", brands=("acme",), lang="fr").model_copy(update={"source": "mastodon"})
    assert route(hit, 0.5, rules, sla).team == "fr"
    assert route(hit.model_copy(update={"lang": "de"}), 0.5, rules, sla).rule_ids == ("default",)
    assert sla == {}


def test_errors_name_rule_and_field() -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())  # rules[0:2]: the author vetting rules
    doc["rules"][5]["when"]["min_confidence"] = 1.5  # rules[4]: review.low_rating
    doc["rules"][6]["when"]["hours"] = "late"
    doc["rules"][8]["then"]["priority"] = "P9"  # rules[7]: thread.follow_up
    doc["rules"][9]["then"]["sinks"] = ["zendsk"]
    doc["rules"][10]["when"]["labl"] = "praise"
    doc["rules"].append({"id": "complaint", "then": {"needs_response": False}})
    with pytest.raises(RulesError) as info:
        parse_rules(doc, "rules.yaml")
    text = str(info.value)
    assert "rules[5] (complaint.influencer): when.min_confidence:" in text
    assert (
        'rules[6] (complaint.night): when.hours: Value error, hours must look like "09:00' in text
    )
    assert "rules[8] (complaint): then.priority:" in text
    assert "rules[9] (question): then.sinks: Value error, unknown sink(s) ['zendsk']" in text
    assert "rules[10] (praise.thank): when.labl: Extra inputs are not permitted" in text
    clean = yaml.safe_load(EXAMPLE.read_text())
    with pytest.raises(RulesError, match="rules: Value error, duplicate rule id 'question'"):
        parse_rules({**clean, "rules": clean["rules"][9:10] * 2})
    with pytest.raises(RulesError, match="default: Field required"):
        parse_rules({"rules": []})


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules: [\n")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(bad)


def test_business_hours_by_priority_with_a_per_rule_override() -> None:
    doc = {
        "sla": {"P1": "1h", "P2": "4h", "P3": "4h"},
        "business_hours": {"timezone": "Europe/Berlin", "hours": "09:00-17:00",
                           "priorities": ["P2", "P3"]},
        "rules": [
            {"id": "urgent", "when": {"keywords": ["hacked"]},
             "then": {"needs_response": True, "priority": "P1", "team": "sec"}},
            {"id": "vip", "when": {"min_followers": 1000},
             "then": {"needs_response": True, "priority": "P2", "business_hours": False}},
            {"id": "complaint", "when": {"label": "complaint"},
             "then": {"needs_response": True, "priority": "P2"}},
        ],
        "default": {"then": {"needs_response": True, "priority": "P3", "business_hours": True}},
    }  # fmt: skip
    rules, sla = parse_rules(doc)
    saturday = datetime(2026, 3, 7, 12, tzinfo=UTC)
    monday_13h = datetime(2026, 3, 9, 12, tzinfo=UTC)  # 09:00 CET + 4h
    cases = {
        "urgent": ("complaint", "I was hacked", {}, saturday + timedelta(hours=1)),
        "vip": ("complaint", "bill wrong", {"author": Author(followers=5000)},
                saturday + timedelta(hours=4)),
        "complaint": ("complaint", "bill wrong", {}, monday_13h),
        "default": ("question", "how?", {}, monday_13h),
    }  # fmt: skip
    for rule_id, (label, text, fields, expected) in cases.items():
        routing = route(_mention(label, text, created_at=saturday, **fields), 0.5, rules, sla)
        assert (routing.rule_ids, routing.sla_due_at) == ((rule_id,), expected), rule_id


def test_business_hours_errors_are_clear() -> None:
    base = {"default": {"then": {"needs_response": True, "business_hours": True}}}
    with pytest.raises(RulesError, match=r"\['default'\] ask for business_hours"):
        parse_rules(base)
    bad = {**base, "business_hours": {"hours": "17:00-09:00", "timezone": "Nowhere/Here"}}
    with pytest.raises(RulesError, match="business_hours: Value error"):
        parse_rules(bad)


def test_thread_conditions_from_yaml() -> None:
    doc = {
        "rules": [
            {
                "id": "thread.follow_up",
                "when": {"reply_to_own_account": True, "label": ["complaint", "question"]},
                "then": {"needs_response": True, "priority": "P2", "team": "support"},
            },
            {
                "id": "thread.chatter",
                "when": {"thread_answered_by_brand": True, "is_reply": True},
                "then": {"needs_response": False},
            },
        ],
        "default": {"then": {"needs_response": False}},
    }
    rules, sla = parse_rules(doc)
    follow_up = _mention("complaint", "it's been 8 days", reply_to_id="bluesky:0").model_copy(
        update={"signals": {"reply_to_own_account": ["acme"]}}
    )
    assert route(follow_up, 0.5, rules, sla).rule_ids == ("thread.follow_up",)
    chatter = _mention("complaint", "same here", reply_to_id="bluesky:5").model_copy(
        update={"signals": {"thread_answered_by_brand": ["acme"]}}
    )
    assert route(chatter, 0.5, rules, sla).rule_ids == ("thread.chatter",)
    with pytest.raises(RulesError, match="when.is_reply"):
        parse_rules(
            {
                "rules": [
                    {"id": "x", "when": {"is_reply": "maybe"}, "then": {"needs_response": False}}
                ],
                "default": {"then": {"needs_response": False}},
            }
        )


def test_example_file_never_queues_own_accounts() -> None:
    rules, sla = load_rules(EXAMPLE)
    own = _mention("complaint", "Sorry! Please DM us.", 0.99).model_copy(
        update={"own_account_of": ("acme",)}
    )
    assert route(own, 0.5, rules, sla).rule_ids == ("own_account",)
    follow_up = _mention("complaint", "it's been 8 days", reply_to_id="bluesky:0").model_copy(
        update={"signals": {"reply_to_own_account": ["acme"]}}
    )
    assert route(follow_up, 0.5, rules, sla).rule_ids == ("thread.follow_up",)
    legal = follow_up.model_copy(update={"text": "my lawyer will hear about this"})
    assert route(legal, 0.5, rules, sla).rule_ids == ("complaint.legal",)
