"""The inbox's action rules (agents/queue/actions.py)."""

from __future__ import annotations

import pytest

from agents.queue.actions import Action, ActionRefused, ItemState, apply, decode_state


def act(kind: str, by: str = "alice", at: float = 100.0, **kw: object) -> Action:
    return Action.model_validate({"kind": kind, "by": by, "at": at, **kw})


def test_claim_take_over_and_release_follow_the_holder_and_the_role() -> None:
    s = apply(ItemState(id="x:1"), act("claim"))
    assert (s.status, s.holder) == ("claimed", "alice")
    with pytest.raises(ActionRefused, match="claimed by alice"):
        apply(s, act("claim", by="bob"))
    with pytest.raises(ActionRefused, match="only a lead"):
        apply(s, act("take_over", by="bob"))
    s = apply(s, act("take_over", by="lea"), role="lead")
    assert s.holder == "lea"
    with pytest.raises(ActionRefused, match="held by lea"):
        apply(s, act("release", by="alice"))
    s = apply(s, act("release", by="lea"))
    assert (s.status, s.holder) == ("open", None)


def test_the_first_response_stops_the_clock_once_and_resolve_counts_as_one() -> None:
    s = apply(ItemState(id="x:1"), act("first_response", at=120.0))
    s = apply(s, act("first_response", at=500.0))
    assert (s.status, s.first_response_at) == ("responded", 120.0)
    r = apply(ItemState(id="x:2"), act("resolve", at=300.0, by="zendesk", source="zendesk"))
    assert (r.status, r.first_response_at, r.resolved_at) == ("resolved", 300.0, 300.0)
    with pytest.raises(ActionRefused, match="resolved"):
        apply(r, act("claim"))
    assert apply(r, act("reopen")).status == "responded"


def test_reassign_needs_a_lead_and_a_team_and_labels_are_corrected() -> None:
    s = ItemState(id="x:1", holder="alice", status="claimed")
    with pytest.raises(ActionRefused, match="lead"):
        apply(s, act("reassign_team", team="billing"))
    s = apply(s, act("reassign_team", by="lea", team="billing"), role="lead")
    assert (s.team, s.holder, s.status) == ("billing", None, "open")
    s = apply(s, act("correct_label", label="praise"))
    assert s.label == "praise"


def test_state_round_trips_with_a_bounded_history() -> None:
    s = ItemState(id="x:<script>1")
    for n in range(60):
        s = apply(s, act("mark_spam", at=float(n)))
    assert len(s.history) == 50 and s.history[0].at == 10.0
    assert decode_state(s.encode()) == s
