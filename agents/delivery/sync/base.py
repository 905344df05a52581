"""What every helpdesk sync-back shares: the resolver, the webhook and poll shapes, the poll loop.

A helpdesk reports "this ticket is solved" either by a webhook (Zendesk, Jira
Service Management, Freshdesk: a :class:`WebhookSystem` verifies and reads one
request) or by being asked (ServiceNow, Request Tracker: a :class:`PollSystem`
reads a bounded batch of the tickets the ledger knows). Either way the ticket's
external id is mapped back to its Mention id through the sink ledger and
:class:`Resolver` writes a ``resolve`` action (``by`` = ``source`` = the system)
through :func:`~agents.queue.actions.apply` onto ``mentions.inbox-actions`` and
an acknowledgement on ``mentions.acks`` (the value ``brand-listener ack``
writes), each acknowledged by Kafka (``acks=all``) before the webhook is
answered 2xx or the poll moves on. A ticket solved twice (a redelivered
webhook, the next poll) finds the item resolved: ``apply`` refuses the second
resolve, nothing more is written but the acknowledgement, which is harmless to
repeat. Guarantee: at-least-once from the helpdesk's signal to both records.
Auth and rate limits are each system's (its module says which); the poll
loop here asks at most ``batch`` tickets a round, one round per ``interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from agents.queue.actions import Action, ActionRefused, ItemState

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class TicketIndex(Protocol):
    """The sink ledger seen from the sync-back: external id <-> Mention id."""

    def mention_for(self, sink: str, external_id: str) -> str | None:
        """The Mention id delivered to ``sink`` as ``external_id``, or None."""
        ...

    def tickets(self, sink: str) -> list[tuple[str, str]]:
        """Every (Mention id, external id) recorded for ``sink``."""
        ...

    async def catch_up(self) -> None:
        """Read entries other workers recorded since the last read."""
        ...


class ActionLog(Protocol):
    """Where actions and acknowledgements are written (:mod:`agents.queue.action_writer`)."""

    def state(self, mention_id: str) -> ItemState | None:
        """The item's latest known state."""
        ...

    async def act(self, mention_id: str, action: Action) -> ItemState:
        """Apply and record ``action``; raises ActionRefused."""
        ...

    async def ack(self, mention_id: str, at: float, by: str | None = None) -> None:
        """Write an acknowledgement of ``mention_id``."""
        ...


@dataclass(frozen=True, slots=True)
class Solved:
    """A helpdesk says a ticket is solved.

    Attributes:
        external_id: The helpdesk's ticket id as the ledger holds it.
        status: The helpdesk's word for it (``solved``, ``Done``, ``resolved``...).
        mention_id: The Mention id the payload itself carries, used when the
            ledger does not know the ticket (Zendesk's ``external_id``).
    """

    external_id: str
    status: str
    mention_id: str | None = None


class WebhookSystem(Protocol):
    """A helpdesk that calls us: checks a request's authenticity and reads its payload."""

    name: ClassVar[str]

    def verify(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request is genuine (signature or shared secret, constant time)."""
        ...

    def solved(self, payload: Any) -> Solved | None:
        """The solved ticket the payload reports, or None for any other event.

        Raises:
            ValueError: The payload is not the documented shape.
        """
        ...


class PollSystem(Protocol):
    """A helpdesk we ask: which of these tickets are solved."""

    name: ClassVar[str]

    async def solved(self, external_ids: list[str]) -> list[Solved]:
        """The solved ones among ``external_ids`` (one round; raises the sink error kinds)."""
        ...

    async def close(self) -> None:
        """Close the HTTP session."""
        ...


class Resolver:
    """Resolves queue items for a helpdesk: the action record, then the acknowledgement.

    Args:
        index: The sink ledger.
        actions: The action writer.
        clock: Wall-clock seconds.
    """

    def __init__(self, index: TicketIndex, actions: ActionLog, clock: Clock = time.time) -> None:
        self.index = index
        self.actions = actions
        self._clock = clock

    async def mention_of(self, system: str, solved: Solved) -> str | None:
        """The Mention id of a solved ticket: the ledger (caught up if need be), or the hint."""
        found = self.index.mention_for(system, solved.external_id)
        if found is None:
            await self.index.catch_up()
            found = self.index.mention_for(system, solved.external_id)
        return found or solved.mention_id

    async def resolve(self, system: str, mention_id: str, solved: Solved) -> bool:
        """Record that ``system`` solved ``mention_id``'s ticket; True if this changed the item.

        Raises:
            kafka.errors.KafkaError: A record was not written (the caller lets the helpdesk retry).
        """
        now = self._clock()
        note = f"{system} ticket {solved.external_id} {solved.status}"[:2000]
        action = Action(kind="resolve", by=system, source=system, at=now, note=note)
        try:
            await self.actions.act(mention_id, action)
            changed = True
        except ActionRefused:  # already resolved: only the acknowledgement may be missing
            changed = False
        await self.actions.ack(mention_id, now, system)
        if changed:
            log.info("%s: %s resolved (ticket %s)", system, mention_id, solved.external_id)
        return changed


async def run_poll(
    system: PollSystem,
    resolver: Resolver,
    stop: asyncio.Event,
    *,
    interval_s: float,
    batch: int,
) -> None:
    """Poll ``system`` every ``interval_s`` for the open items' tickets, ``batch`` at a time.

    Each round takes the next ``batch`` tickets (round robin) among the ledger's
    tickets for this sink whose item is not resolved; a round that fails (the
    helpdesk down, a 429) is logged and the next one tries again.
    """
    cursor = 0
    while not stop.is_set():
        await resolver.index.catch_up()
        open_tickets = [
            (mention_id, external_id)
            for mention_id, external_id in sorted(resolver.index.tickets(system.name))
            if _open(resolver.actions.state(mention_id))
        ]
        if open_tickets:
            cursor %= len(open_tickets)
            chunk = open_tickets[cursor : cursor + batch]
            cursor += len(chunk)
            await poll_once(system, resolver, dict((e, m) for m, e in chunk))
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass


async def poll_once(system: PollSystem, resolver: Resolver, tickets: dict[str, str]) -> int:
    """Ask ``system`` about ``tickets`` (external id -> Mention id); return how many resolved."""
    try:
        solved = await system.solved(list(tickets))
    except Exception as exc:  # noqa: BLE001 - one failed round; the next one retries
        log.warning("%s: poll failed: %r", system.name, exc)
        return 0
    changed = 0
    for ticket in solved:
        mention_id = tickets.get(ticket.external_id)
        if mention_id is None:
            continue  # not what we asked about
        try:
            changed += await resolver.resolve(system.name, mention_id, ticket)
        except Exception as exc:  # noqa: BLE001 - Kafka: the next round finds it again
            log.error("%s: could not record %s resolved: %r", system.name, mention_id, exc)
    return changed


def _open(state: ItemState | None) -> bool:
    return state is None or state.status != "resolved"
