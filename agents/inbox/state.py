"""The inbox's view of the queue, rebuilt from ``mentions.needs-response`` and the action topic.

Each item is the latest routed :class:`~listener.record.Mention` of one id plus
its :class:`~agents.queue.actions.ItemState` (the latest record of
``mentions.inbox-actions``). Both topics are keyed by the Mention id and read
from the start, so every replica that has read to the same offsets holds the
same view. Subscribers (the server-sent-event streams) are told the id of every
item that changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from agents.queue.actions import ItemState, decode_state
from listener.errors import SkippableError
from listener.record import Mention, decode_mention

log = logging.getLogger(__name__)

PRIORITY_ORDER = {"P1": 0, "P2": 1, "P3": 2, "P4": 3}
FILTERS: tuple[str, ...] = ("brand", "team", "priority", "label", "source", "status")
"""The filter dimensions of the queue page, in display order."""
ACTIVE = "active"
"""The default status filter: every item that is not resolved."""
NONE = "(none)"
"""The filter value of an item that has no team, priority or brand."""


@dataclass
class Item:
    """One queue item: the routed post and its inbox state.

    ``dims`` (the item's value(s) per filter dimension) and ``key`` (its queue
    order) are computed once per change (:meth:`reindex`), not per request.
    """

    mention: Mention
    state: ItemState
    dims: dict[str, tuple[str, ...]] = field(default_factory=dict)
    key: tuple[int, float, str] = (9, 0.0, "")

    def __post_init__(self) -> None:
        self.reindex()

    def reindex(self) -> None:
        """Recompute :attr:`dims` and :attr:`key` after the state changed."""
        self.dims = {dimension: self.values(dimension) for dimension in FILTERS}
        self.key = self.sort_key()

    @property
    def id(self) -> str:
        """The Mention id."""
        return self.mention.id

    @property
    def label(self) -> str:
        """The label as corrected by a person, else the model's."""
        if self.state.label:
            return self.state.label
        return self.mention.classification.label if self.mention.classification else NONE

    @property
    def priority(self) -> str:
        """``P1``..``P4`` or :data:`NONE`."""
        routing = self.mention.routing
        return routing.priority if routing and routing.priority else NONE

    @property
    def team(self) -> str:
        """The team as reassigned, else the router's, else :data:`NONE`."""
        routing = self.mention.routing
        return self.state.team or (routing.team if routing and routing.team else None) or NONE

    @property
    def due_at(self) -> datetime | None:
        """The SLA due time, if the router set one."""
        return self.mention.routing.sla_due_at if self.mention.routing else None

    @property
    def queued_at(self) -> float:
        """Unix seconds the item reached the queue (routed stage, else ingested)."""
        times = self.mention.stage_times
        return times.get("routed") or times.get("ingested") or self.mention.ingested_at.timestamp()

    def values(self, dimension: str) -> tuple[str, ...]:
        """The item's values for a filter dimension (an item has several brands)."""
        if dimension == "brand":
            return self.mention.brands or (NONE,)
        if dimension == "source":
            return (self.mention.source,)
        if dimension == "status":
            return (self.state.status,)
        return (str(getattr(self, dimension)),)

    def sort_key(self) -> tuple[int, float, str]:
        """Priority first (P1 first, none last), then SLA due time (none last), then id."""
        due = self.due_at
        return (
            PRIORITY_ORDER.get(self.priority, 9),
            due.timestamp() if due else float("inf"),
            self.id,
        )


def _passes(item: Item, dimension: str, wanted: str) -> bool:
    if dimension == "status" and wanted == ACTIVE:
        return item.state.status != "resolved"
    return wanted in item.dims[dimension]


def _active(filters: dict[str, str]) -> list[tuple[str, str]]:
    """The filters that narrow anything: status defaults to :data:`ACTIVE`, ``all`` is none."""
    wanted = {dimension: filters.get(dimension, "") for dimension in FILTERS}
    wanted["status"] = wanted["status"] or ACTIVE
    return [(d, v) for d, v in wanted.items() if v and v != "all"]


def matches(item: Item, filters: dict[str, str], skip: str | None = None) -> bool:
    """Whether ``item`` passes every filter but ``skip``.

    A missing status filter means :data:`ACTIVE`; ``status=all`` shows every item.
    """
    return all(_passes(item, d, v) for d, v in _active(filters) if d != skip)


@dataclass
class Facets:
    """Counts per value of each filter dimension, over the items the *other* filters pass."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    total: int = 0


class InboxState:
    """Every queue item by id, updated record by record; tells listeners what changed."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self._states: dict[str, ItemState] = {}
        self._listeners: list[Callable[[str], None]] = []
        self.skipped = 0

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(id)`` after each change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _changed(self, mention_id: str) -> None:
        for listener in list(self._listeners):
            listener(mention_id)

    def state_of(self, mention_id: str) -> ItemState:
        """The item's inbox state (a fresh open state if nobody acted on it yet)."""
        return self._states.get(mention_id) or ItemState(id=mention_id)

    def on_queue_record(self, key: bytes | None, value: bytes | None) -> str | None:
        """Take one ``mentions.needs-response`` record; returns the changed id, if any."""
        if not value:
            mention_id = key.decode("utf-8", "replace") if key else None
            if mention_id and self.items.pop(mention_id, None) is not None:
                self._changed(mention_id)
            return mention_id
        try:
            mention = decode_mention(value)
        except SkippableError as exc:
            self.skipped += 1
            log.warning("inbox: skipping a queue record: %s", exc)
            return None
        self.items[mention.id] = Item(mention, self.state_of(mention.id))
        self._changed(mention.id)
        return mention.id

    def on_action_record(self, key: bytes | None, value: bytes | None) -> str | None:
        """Take one ``mentions.inbox-actions`` record (the item's whole state after an action)."""
        if not value:
            return None  # a tombstone: keep what we know
        try:
            state = decode_state(value)
        except ValueError as exc:
            self.skipped += 1
            log.warning("inbox: skipping an action record: %s", exc)
            return None
        self.put_state(state)
        return state.id

    def put_state(self, state: ItemState) -> None:
        """Set an item's inbox state (read from the topic, or just written by this replica)."""
        self._states[state.id] = state
        item = self.items.get(state.id)
        if item is not None:
            item.state = state
            item.reindex()
            self._changed(state.id)

    def select(self, filters: dict[str, str]) -> list[Item]:
        """The items that pass ``filters``, in queue order."""
        active = _active(filters)
        chosen = [i for i in self.items.values() if all(_passes(i, d, v) for d, v in active)]
        chosen.sort(key=lambda item: item.key)
        return chosen

    def facets(self, filters: dict[str, str]) -> Facets:
        """Counts per filter value, each dimension counted under the other filters (one pass)."""
        active = _active(filters)
        counts: dict[str, dict[str, int]] = {dimension: {} for dimension in FILTERS}
        total = 0
        for item in self.items.values():
            failed = [d for d, v in active if not _passes(item, d, v)]
            if len(failed) > 1:
                continue
            total += not failed
            for dimension in failed or FILTERS:
                bucket = counts[dimension]
                for value in item.dims[dimension]:
                    bucket[value] = bucket.get(value, 0) + 1
        facets = Facets({d: dict(sorted(c.items())) for d, c in counts.items()}, total)
        status = facets.counts["status"]
        everything = sum(status.values())
        status[ACTIVE] = everything - status.get("resolved", 0)
        status["all"] = everything
        return facets

    def by_status(self) -> dict[str, int]:
        """How many items are in each status (the open-items gauge)."""
        counts = dict.fromkeys(("open", "claimed", "responded", "resolved"), 0)
        for item in self.items.values():
            counts[item.state.status] += 1
        return counts

    def load(self, queue: Iterable[bytes], actions: Iterable[bytes]) -> None:
        """Take whole topics' values at once (tests and benchmarks)."""
        for value in queue:
            self.on_queue_record(None, value)
        for value in actions:
            self.on_action_record(None, value)
