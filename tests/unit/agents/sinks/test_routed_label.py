"""Tickets and alerts name the label a post was routed as, not only its top label."""

from __future__ import annotations

from agents.sinks.base import routed_label, summary
from listener.record import Classification, Mention, Routing


def post(needs_response: bool | None) -> Mention:
    scores = {"complaint": 0.30, "praise": 0.0, "question": 0.25, "other": 0.45}
    classification = Classification(
        label="other",
        scores=scores,
        model="m@1",
        needs_response=needs_response,
        needs_response_score=0.55,
    )
    return Mention.create(
        source="t",
        native_id="1",
        text="the app logs me out and I cannot find where to report it",
        brands=("acme",),
        classification=classification,
        routing=Routing(needs_response=bool(needs_response), priority="P2"),
    )


def test_a_post_queued_by_the_model_decision_is_named_by_its_routed_label() -> None:
    assert routed_label(post(True)) == "complaint"
    assert summary(post(True)).startswith("[P2] [complaint] [acme]")


def test_without_the_decision_the_top_label_stands() -> None:
    assert routed_label(post(None)) == "other" and routed_label(post(False)) == "other"
    unclassified = post(None).model_copy(update={"classification": None})
    assert routed_label(unclassified) is None
