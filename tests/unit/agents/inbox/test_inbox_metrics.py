"""Inbox metrics: the clocks an action stops, items by status."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from agents.inbox.metrics import InboxMetrics
from agents.inbox.state import InboxState, Item
from agents.queue.actions import Action, ItemState, apply
from listener.record import Mention, Routing, encode_mention

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def item() -> Item:
    mention = Mention(
        id="x:1", source="x", text="help", created_at=T0, ingested_at=T0,
        routing=Routing(needs_response=True, priority="P1", team="billing"),
        stage_times={"routed": 1000.0},
    )  # fmt: skip
    return Item(mention, ItemState(id=mention.id))


def test_first_response_and_resolution_are_observed_once() -> None:
    registry = CollectorRegistry()
    metrics = InboxMetrics(registry)
    queued = item()
    state = queued.state
    for kind, at in (("claim", 1010.0), ("first_response", 1060.0), ("first_response", 1100.0)):
        action = Action(kind=kind, by="ann", at=at)  # type: ignore[arg-type]
        state = apply(state, action)
        metrics.observe(queued, action, state)
    labels = {"team": "billing", "priority": "P1"}
    count = "brandlistener_inbox_time_to_first_response_seconds_count"
    total = "brandlistener_inbox_time_to_first_response_seconds_sum"
    assert registry.get_sample_value(count, labels) == 1.0
    assert registry.get_sample_value(total, labels) == 60.0
    action = Action(kind="resolve", by="ann", at=1300.0)
    metrics.observe(queued, action, apply(state, action))
    resolved = "brandlistener_inbox_time_to_resolution_seconds_sum"
    assert registry.get_sample_value(resolved, labels) == 300.0
    assert registry.get_sample_value(count, labels) == 1.0
    actions = "brandlistener_inbox_actions_total"
    assert registry.get_sample_value(actions, {"kind": "first_response"}) == 2.0


def test_resolve_without_a_response_counts_as_the_first_response() -> None:
    registry = CollectorRegistry()
    metrics = InboxMetrics(registry)
    queued = item()
    action = Action(kind="resolve", by="ann", at=1030.0)
    metrics.observe(queued, action, apply(queued.state, action))
    labels = {"team": "billing", "priority": "P1"}
    sample = "brandlistener_inbox_time_to_first_response_seconds_sum"
    assert registry.get_sample_value(sample, labels) == 30.0


def test_items_by_status_gauge() -> None:
    registry = CollectorRegistry()
    metrics = InboxMetrics(registry)
    state = InboxState()
    state.on_queue_record(None, encode_mention(item().mention))
    metrics.refresh(state)
    assert registry.get_sample_value("brandlistener_inbox_items", {"status": "open"}) == 1.0
    assert registry.get_sample_value("brandlistener_inbox_items", {"status": "resolved"}) == 0.0
