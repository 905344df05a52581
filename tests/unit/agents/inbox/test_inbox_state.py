"""The inbox view: rebuild from the two topics' records, filters, counts, order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.inbox.state import InboxState
from agents.queue.actions import Action, ItemState, apply
from listener.record import Classification, Mention, Routing, encode_mention

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def routed(
    native: str,
    priority: str | None = "P2",
    due_min: float | None = 60,
    team: str = "support",
    label: str = "complaint",
    brands: tuple[str, ...] = ("Acme",),
    source: str = "bluesky",
) -> Mention:
    scores = {"complaint": 0.1, "praise": 0.1, "question": 0.1, "other": 0.1}
    scores[label] = 0.7
    return Mention(
        id=f"{source}:{native}",
        source=source,
        text=f"post {native}",
        created_at=T0,
        ingested_at=T0,
        brands=brands,
        classification=Classification(label=label, scores=scores, model="m@1"),  # type: ignore[arg-type]
        routing=Routing(
            needs_response=True,
            priority=priority,  # type: ignore[arg-type]
            team=team,
            sla_due_at=T0 + timedelta(minutes=due_min) if due_min is not None else None,
            rule_ids=("r1",),
        ),
    )


def act(state: ItemState, kind: str, by: str = "ann", **fields: object) -> ItemState:
    action = Action.model_validate({"kind": kind, "by": by, "at": 1000.0, **fields})
    return apply(state, action, "lead")


def test_rebuild_takes_both_topics_in_any_order_and_keeps_the_latest() -> None:
    first = routed("1")
    claimed = act(ItemState(id=first.id), "claim")
    responded = act(claimed, "first_response")
    state = InboxState()
    # The action record arrives before the queue record (other partition, other topic).
    state.on_action_record(first.id.encode(), claimed.encode())
    state.on_queue_record(first.id.encode(), encode_mention(first))
    state.on_action_record(first.id.encode(), responded.encode())
    item = state.items[first.id]
    assert item.state.status == "responded" and item.state.holder == "ann"
    # The same records in another order give the same view: replicas agree.
    other = InboxState()
    other.load([encode_mention(first)], [claimed.encode(), responded.encode()])
    assert other.items[first.id].state == item.state


def test_bad_records_and_tombstones() -> None:
    state = InboxState()
    mention = routed("1")
    state.on_queue_record(b"x", b"not json")
    state.on_action_record(b"x", b"{}")
    state.on_queue_record(mention.id.encode(), encode_mention(mention))
    assert state.skipped == 2 and list(state.items) == [mention.id]
    state.on_action_record(mention.id.encode(), None)
    assert mention.id in state.items
    state.on_queue_record(mention.id.encode(), None)
    assert not state.items


def test_listeners_hear_every_change() -> None:
    state = InboxState()
    heard: list[str] = []
    stop = state.subscribe(heard.append)
    mention = routed("1")
    state.on_queue_record(None, encode_mention(mention))
    state.put_state(act(ItemState(id=mention.id), "claim"))
    stop()
    state.put_state(act(ItemState(id=mention.id), "resolve"))
    assert heard == [mention.id, mention.id]


def test_sorted_by_priority_then_due_time() -> None:
    state = InboxState()
    state.load(
        [
            encode_mention(m)
            for m in (
                routed("p3", "P3", 5),
                routed("p1-late", "P1", 90),
                routed("none", None, None),
                routed("p1-soon", "P1", 10),
                routed("p2-nodue", "P2", None),
                routed("p2", "P2", 500),
            )
        ],
        [],
    )
    order = [item.mention.id.split(":")[1] for item in state.select({})]
    assert order == ["p1-soon", "p1-late", "p2", "p2-nodue", "p3", "none"]


def test_filters_and_counts_per_filter() -> None:
    state = InboxState()
    mentions = [
        routed("a", "P1", team="billing", brands=("Acme", "Volt")),
        routed("b", "P2", label="question"),
        routed("c", "P2", source="reddit", brands=()),
        routed("d", "P3"),
    ]
    state.load([encode_mention(m) for m in mentions], [])
    state.put_state(act(ItemState(id="bluesky:d"), "resolve"))
    state.put_state(act(ItemState(id="bluesky:b"), "claim", label=None))
    # Default: everything but resolved.
    assert {i.id for i in state.select({})} == {"bluesky:a", "bluesky:b", "reddit:c"}
    assert [i.id for i in state.select({"status": "resolved"})] == ["bluesky:d"]
    assert len(state.select({"status": "all"})) == 4
    assert [i.id for i in state.select({"brand": "Volt"})] == ["bluesky:a"]
    assert [i.id for i in state.select({"brand": "(none)"})] == ["reddit:c"]
    assert [i.id for i in state.select({"team": "billing"})] == ["bluesky:a"]
    assert [i.id for i in state.select({"label": "question"})] == ["bluesky:b"]
    assert [i.id for i in state.select({"source": "reddit", "priority": "P2"})] == ["reddit:c"]
    facets = state.facets({"priority": "P2"})
    assert facets.total == 2
    # Each dimension is counted under the other filters; priority under none but status.
    assert facets.counts["priority"] == {"P1": 1, "P2": 2}
    assert facets.counts["label"] == {"complaint": 1, "question": 1}
    assert facets.counts["status"] == {
        "claimed": 1, "open": 1, "active": 2, "all": 2
    }  # fmt: skip
    assert state.by_status() == {"open": 2, "claimed": 1, "responded": 0, "resolved": 1}


def test_corrected_label_and_reassigned_team_win() -> None:
    state = InboxState()
    mention = routed("1")
    state.load([encode_mention(mention)], [])
    state.put_state(act(ItemState(id=mention.id), "correct_label", label="praise"))
    state.put_state(act(state.state_of(mention.id), "reassign_team", team="billing"))
    item = state.items[mention.id]
    assert (item.label, item.team) == ("praise", "billing")
    assert state.select({"label": "praise", "team": "billing"}) == [item]
