"""The inbox's Prometheus metrics, on an injected registry (served on the inbox's ``/metrics``).

* ``brandlistener_inbox_time_to_first_response_seconds{team,priority}``: from the
  item reaching the queue to its first response (or its resolution, if it was
  resolved without one), observed by the replica that recorded the action;
* ``brandlistener_inbox_time_to_resolution_seconds{team,priority}``: to resolution;
* ``brandlistener_inbox_items{status}``: items per status (open, claimed,
  responded, resolved), as every replica sees them (same on each: use ``max``);
* ``brandlistener_inbox_actions_total{kind}``: actions recorded by this replica.

Team values are capped (:class:`~agents.observability.metrics.LabelCap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agents.observability.metrics import QUEUE_BUCKETS, LabelCap
from agents.queue.actions import Action, ItemState

if TYPE_CHECKING:
    from agents.inbox.state import InboxState, Item


class InboxMetrics:
    """The inbox's metric families.

    Args:
        registry: Where to register them (a fresh one per test).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        by = ("team", "priority")
        self.first_response = Histogram(
            "brandlistener_inbox_time_to_first_response_seconds",
            "Seconds from reaching the queue to the first response, by team and priority.",
            by,
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.resolution = Histogram(
            "brandlistener_inbox_time_to_resolution_seconds",
            "Seconds from reaching the queue to resolution, by team and priority.",
            by,
            buckets=QUEUE_BUCKETS,
            registry=registry,
        )
        self.items = Gauge(
            "brandlistener_inbox_items",
            "Queue items in the inbox by status (every replica reports the same view).",
            ("status",),
            registry=registry,
        )
        self.actions = Counter(
            "brandlistener_inbox_actions",
            "Actions recorded through this inbox replica, by kind.",
            ("kind",),
            registry=registry,
        )
        self._team = LabelCap(50)

    def observe(self, item: Item, action: Action, after: ItemState) -> None:
        """Count ``action`` and observe the clocks it stopped (``after``: the item's new state)."""
        self.actions.labels(action.kind).inc()
        labels = (self._team(item.team), item.priority)
        if after.first_response_at == action.at:  # set by this action (later ones keep the first)
            waited = max(0.0, action.at - item.queued_at)
            self.first_response.labels(*labels).observe(waited)
        if after.resolved_at == action.at:
            self.resolution.labels(*labels).observe(max(0.0, action.at - item.queued_at))

    def refresh(self, state: InboxState) -> None:
        """Set the per-status gauge from the current view (before each scrape)."""
        for status, count in state.by_status().items():
            self.items.labels(status).set(count)
