"""``brand-listener rules test``: routing sample posts without Kafka."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest

from agents.commands.cli import main
from agents.commands.rules import read_posts, run
from agents.settings import AgentSettings
from agents.worker import routing_rules
from listener.record import LABELS
from models.interface import Prediction

EXAMPLE = Path(__file__).resolve().parents[4] / "deploy" / "rules.example.yaml"


def _posts(tmp_path: Path) -> Path:
    path = tmp_path / "posts.jsonl"
    lines = [
        {"id": "1", "text": "total outage again, calling my lawyer", "brands": ["acme"]},
        {"id": "2", "text": "how do I reset my password?"},
        {"id": "3", "text": "love it, thanks"},
        "not an object",
    ]
    path.write_bytes(b"\n".join(orjson.dumps(line) for line in lines) + b"\n\n")
    return path


def test_each_post_gets_its_routing(tmp_path: Path, keyword_classifier: type) -> None:
    errors, out = io.StringIO(), io.StringIO()
    posts = read_posts(_posts(tmp_path), errors)
    assert len(posts) == 3 and "posts.jsonl:4: skipped (not_object)" in errors.getvalue()
    settings = AgentSettings(rules_file=EXAMPLE)
    assert run(posts, settings, keyword_classifier(), out) == 2
    lines = out.getvalue().splitlines()
    assert (
        "QUEUE  P1  legal  sla=1:00:00  sinks=zendesk,pagerduty  rules=complaint.legal" in lines[0]
    )
    assert "QUEUE  P3  support" in lines[1] and "rules=question" in lines[1]
    assert "  -  P4  community" in lines[2]
    as_json = io.StringIO()
    run(posts[:1], AgentSettings(), keyword_classifier(), as_json, as_json=True)
    routing = orjson.loads(as_json.getvalue())["routing"]
    assert routing["rule_ids"] == ["complaint.urgent"] and routing["sinks"] == []


def test_bad_rules_file_fails_before_the_model_loads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - id: x\n    then: {needs_response: maybe}\ndefault: {}\n")
    assert main(["rules", "test", str(_posts(tmp_path)), "--rules", str(rules)]) == 2
    err = capsys.readouterr().err
    assert "rules[0] (x): then.needs_response:" in err and "default.then: Field required" in err


def test_worker_uses_built_in_table_unless_a_file_is_set() -> None:
    built_in, _ = routing_rules(AgentSettings())
    assert [r.id for r in built_in[:2]] == ["author.marked_spam", "complaint.urgent"]
    from_file, sla = routing_rules(AgentSettings(rules_file=EXAMPLE))
    assert [r.id for r in from_file[:3]] == ["author.spam", "author.link_farm", "complaint.legal"]
    assert "P1" in sla


class SplitClassifier:
    """Top label other, P(complaint)+P(question) = 0.55: over the model's calibrated 0.3977."""

    name = "calibrated@test"
    labels = LABELS

    def predict(
        self, texts: Sequence[str], kinds: Sequence[str | None] | None = None
    ) -> list[Prediction]:
        scores = {"complaint": 0.30, "praise": 0.0, "question": 0.25, "other": 0.45}
        return [Prediction("other", scores, True, 0.55) for _ in texts]


def test_rules_test_routes_by_the_model_needs_response_like_the_worker(tmp_path: Path) -> None:
    out = io.StringIO()
    posts = read_posts(_posts(tmp_path), io.StringIO())[1:2]
    assert run(posts, AgentSettings(), SplitClassifier(), out) == 1
    line = out.getvalue()
    assert "other@0.45  nr=0.55+  QUEUE  P2  support" in line
    assert "rules=complaint,needs_response.label_from_scores" in line


def test_rules_test_decides_a_listed_source_at_its_own_threshold(tmp_path: Path) -> None:
    # replay lines are source "replay": its own 0.6 is over the score 0.55, so not queued
    settings = AgentSettings(model={"needs_response_threshold_by_source": {"replay": 0.6}})
    out = io.StringIO()
    posts = read_posts(_posts(tmp_path), io.StringIO())[1:2]
    assert run(posts, settings, SplitClassifier(), out) == 0
    assert "other@0.45  nr=0.55-  -" in out.getvalue()
    other = AgentSettings(model={"needs_response_threshold_by_source": {"x": 0.6}})
    assert run(posts, other, SplitClassifier(), io.StringIO()) == 1


def test_rules_test_without_the_model_decision_shows_no_score(
    tmp_path: Path, keyword_classifier: type
) -> None:
    out = io.StringIO()
    run(read_posts(_posts(tmp_path), io.StringIO())[2:], AgentSettings(), keyword_classifier(), out)
    assert "praise@0.85  nr=n/a  -  P4  community" in out.getvalue()


def test_rules_test_marks_and_keeps_brand_replies_out_of_the_queue(
    tmp_path: Path, keyword_classifier: type
) -> None:
    brands = tmp_path / "listen.yaml"
    brands.write_text(
        "brands:\n  - name: acme\n    keywords: [acme]\n"
        "    own_accounts: {bluesky: [acme.bsky.social]}\n"
    )
    posts_file = tmp_path / "thread.jsonl"
    lines = [
        {"id": "1", "source": "bluesky", "text": "acme my order is broken", "author": "cust"},
        {
            "id": "2",
            "source": "bluesky",
            "text": "We're very sorry, your order is broken? Please DM us",
            "author": "acme.bsky.social",
            "reply_to_id": "bluesky:1",
        },
        {
            "id": "3",
            "source": "bluesky",
            "text": "still broken after a week",
            "author": "cust",
            "reply_to_id": "bluesky:2",
            "thread_id": "bluesky:1",
        },
        {"id": "4", "text": "explicit: broken, sorry", "own_account_of": "acme"},
    ]
    posts_file.write_bytes(b"\n".join(orjson.dumps(line) for line in lines))
    out = io.StringIO()
    assert main(["rules", "test", str(posts_file), "--brands", str(tmp_path / "nope.yaml")]) == 2
    from listener.replay import load_brands

    posts = read_posts(posts_file, io.StringIO(), load_brands(brands))
    assert run(posts, AgentSettings(), keyword_classifier(), out) == 2
    first, reply, follow_up, explicit = out.getvalue().splitlines()
    assert "QUEUE" in first and "own=" not in first
    assert "  -  -  -  sla=-  sinks=*  rules=own_account  own=acme  " in reply
    assert "QUEUE" in follow_up and "reply_to_own=acme  in_thread=acme" in follow_up
    assert "rules=own_account  own=acme" in explicit
