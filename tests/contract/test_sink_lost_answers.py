"""A target that creates the ticket and then loses the answer: one ticket per Mention id.

For every sink, the local server creates the object and then loses its
answer: it holds it past the sink's HTTP timeout, drops the connection, or
answers 503. The real :class:`~agents.delivery.policy.Deliverer` retries (fast
policy, fake clock for the backoff; the HTTP timeout is real and short).
Afterwards exactly one object exists for the Mention id and the result and
the ledger carry its id: Zendesk replays its Idempotency-Key, PagerDuty and
webhook receivers deduplicate by key, ServiceNow queries ``correlation_id``
before every create, and Jira SM, Freshdesk and Request Tracker search for
the item carrying the Mention id before creating again. Slack cannot look a
message up: there, a lost answer repeats the message (at-least-once), and
the test pins that down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from agents.delivery.ledger import MemoryLedger
from agents.delivery.policy import Outcome
from agents.sinks import SINKS
from agents.sinks.lookup import mention_tag
from listener.record import Author, Mention

from .delivery_support import FakeClock, deliverer, mention
from .sink_server_base import LoseAs
from .sink_servers import SERVERS, JiraSMServer, SinkServer

TIMEOUT_S = 0.3
"""The sinks' HTTP timeout here; a held answer comes after ``hang_s`` (5 s), far later."""
MODES: tuple[LoseAs, ...] = ("timeout", "drop", "503")
ONE_PER_ID = sorted(name for name in SERVERS if not name.startswith("slack"))
"""Every target but Slack keeps one object per Mention id through a lost answer."""
LOOKUP = ("freshdesk", "jira_sm", "request_tracker")
"""Targets without an idempotency key: the sink searches before re-creating."""
HOSTILE = "10'7\" OR labels = \"x\" \\' AND 'CF.{Mention Id}' = 'y' ^ \\"
"""A native id with both quotes, backslashes and query syntax in it."""


async def deliver_once(server: SinkServer, m: Mention, ledger: MemoryLedger) -> Outcome:
    """One delivery of ``m`` by a fresh sink (a worker), nothing lost."""
    clock = FakeClock()
    sink = server.sink(clock=clock)
    try:
        return await deliverer(sink, clock, ledger).deliver(m)
    finally:
        await sink.close()


def run(name: str, scenario: Callable[[SinkServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = SERVERS[name]()
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


async def deliver_losing(
    server: SinkServer, m: Mention, mode: LoseAs, ledger: MemoryLedger, lose: int = 1
) -> Outcome:
    """Deliver ``m`` while the server loses the answer of its next ``lose`` creates."""
    server.lose_after_create, server.lose_as = lose, mode
    clock = FakeClock()
    sink = server.sink(clock=clock, timeout_s=TIMEOUT_S)
    try:
        return await deliverer(sink, clock, ledger).deliver(m)
    finally:
        await sink.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ONE_PER_ID)
def test_a_lost_answer_after_create_leaves_one_ticket(name: str, mode: LoseAs) -> None:
    async def scenario(server: SinkServer) -> None:
        ledger, m = MemoryLedger(), mention()
        outcome = await deliver_losing(server, m, mode, ledger)
        assert outcome.result is not None, outcome.error
        assert server.lost == 1 and outcome.attempts == 2
        assert len(server.created) == 1, server.created
        ticket_id = next(iter(server.created))
        assert outcome.result.external_id == ticket_id
        if name in LOOKUP:
            assert not outcome.result.created  # found, not made
        if SINKS[server.name].uses_ledger:
            assert await ledger.get(server.name, m.id) == ticket_id
        again = await deliver_once(server, m, ledger)  # a redelivery
        assert again.ok and len(server.created) == 1

    run(name, scenario)


@pytest.mark.parametrize("name", LOOKUP)
def test_a_failed_search_keeps_the_create_pending(name: str) -> None:
    """The search after the lost answer fails too (503): the create stays pending, and the
    next attempt searches again instead of creating."""

    async def scenario(server: SinkServer) -> None:
        server.down = lambda: len(server.requests) == 2  # the 1st search
        outcome = await deliver_losing(server, mention(), "timeout", MemoryLedger())
        assert outcome.ok and outcome.attempts == 3
        assert len(server.created) == 1
        assert [r[0] for r in server.requests] == ["POST", "GET", "GET"]

    run(name, scenario)


def hostile_mention() -> Mention:
    m = mention(7)
    author = Author(id="u'7\" \\x", handle="o'brien", name='O\'Brien "the" \\ one')
    return m.model_copy(update={"id": f"mastodon:{HOSTILE}", "author": author})


@pytest.mark.parametrize("name", LOOKUP)
def test_an_id_with_quotes_is_looked_up_exactly(name: str) -> None:
    """Quotes, backslashes and query syntax in the id and author reach no query unescaped."""

    async def scenario(server: SinkServer) -> None:
        ledger, bystander, m = MemoryLedger(), mention(8), hostile_mention()
        first = await deliver_once(server, bystander, ledger)
        outcome = await deliver_losing(server, m, "timeout", ledger)
        assert first.result is not None and outcome.result is not None, outcome.error
        assert len(server.created) == 2
        (ours,) = (key for key in server.created if key != first.result.external_id)
        assert outcome.result.external_id == ours
        assert [r for r in server.requests if r[0] == "GET"], "it searched"

    run(name, scenario)


def test_rt_takes_only_an_exact_match_of_the_id() -> None:
    """RT compares custom field values without case: a ticket for another case is not ours."""

    async def scenario(server: SinkServer) -> None:
        ledger = MemoryLedger()
        upper = mention(9).model_copy(update={"id": "mastodon:AbC"})
        lower = mention(9).model_copy(update={"id": "mastodon:abc"})
        other = await deliver_once(server, upper, ledger)
        outcome = await deliver_losing(server, lower, "drop", ledger)
        assert other.result is not None and outcome.result is not None
        assert len(server.created) == 2
        assert outcome.result.external_id != other.result.external_id
        ticket = server.created[outcome.result.external_id]
        assert ticket["CustomFields"] == {"Mention Id": "mastodon:abc"}

    run("request_tracker", scenario)


def test_jira_without_a_labels_field_creates_unlabelled(caplog: pytest.LogCaptureFixture) -> None:
    """A request type whose form lacks Labels: the sink says so once and creates without them."""

    async def scenario(server: SinkServer) -> None:
        assert isinstance(server, JiraSMServer)
        server.labels_on_form = False
        sink = server.sink()
        try:
            first = await sink.deliver(mention(1))
            second = await sink.deliver(mention(2))
        finally:
            await sink.close()
        assert first.created and second.created and len(server.created) == 2
        assert all("labels" not in t["requestFieldValues"] for t in server.created.values())
        posts = [r for r in server.requests if r[0] == "POST"]
        assert len(posts) == 3  # the refused labelled one, then two without
        assert sum("Labels field" in r.getMessage() for r in caplog.records) == 1

    with caplog.at_level(logging.WARNING, logger="agents.sinks.jira_sm"):
        run("jira_sm", scenario)


@pytest.mark.parametrize("name", ["freshdesk", "jira_sm"])
def test_the_lookup_tag_is_the_digest_of_the_id(name: str) -> None:
    async def scenario(server: SinkServer) -> None:
        m, sink = mention(), server.sink()
        try:
            await sink.deliver(m)
        finally:
            await sink.close()
        (obj,) = server.created.values()
        tags = obj.get("tags") or obj["requestFieldValues"]["labels"]
        assert mention_tag(m.id) in tags

    run(name, scenario)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(n for n in SERVERS if n.startswith("slack")))
def test_slack_is_at_least_once_a_lost_answer_repeats_the_message(name: str, mode: LoseAs) -> None:
    """Slack has no way to find a message by our id: the retry posts it again (documented)."""

    async def scenario(server: SinkServer) -> None:
        outcome = await deliver_losing(server, mention(), mode, MemoryLedger())
        assert outcome.ok and server.lost == 1
        assert len(server.created) == 2

    run(name, scenario)


def test_servicenow_takes_no_other_record_for_an_id_with_a_caret() -> None:
    """An encoded query has no quoting: ``^OR`` in an id widens the query; the sink checks."""

    async def scenario(server: SinkServer) -> None:
        ledger = MemoryLedger()
        other = await deliver_once(server, mention(1), ledger)
        sneaky = mention(2).model_copy(update={"id": "mastodon:2^ORcontact_type=social"})
        outcome = await deliver_once(server, sneaky, ledger)
        assert other.result is not None and outcome.result is not None
        assert outcome.result.created and outcome.result.external_id != other.result.external_id
        assert len(server.created) == 2

    run("servicenow", scenario)
