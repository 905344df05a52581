"""Sync-back against local servers speaking each helpdesk's and PagerDuty's wire format.

A ticket is created through the real sink (so the ledger maps it), then the
helpdesk reports it solved its documented way: Zendesk's signed trigger
webhook, Jira's signed ``jira:issue_updated``, Freshdesk's automation webhook
with its shared-secret header (all sent over HTTP to the receiver running
here), ServiceNow's Table API and RT's REST2 ticket read by the poll. The item
must be resolved through ``apply`` (``by`` = ``source`` = the system) and
acknowledged in the ``brand-listener ack`` format; a bad signature is a 401
that writes nothing. PagerDuty receives ``acknowledge``/``resolve`` with the
Mention id (or the alert id) as ``dedup_key``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from async_support import sync
from pydantic import SecretStr

from agents.delivery.ledger import MemoryLedger
from agents.delivery.sync.base import Resolver, WebhookSystem, poll_once
from agents.delivery.sync.config import FreshdeskSync, JiraSync, ZendeskSync
from agents.delivery.sync.freshdesk import FreshdeskWebhook
from agents.delivery.sync.jira_sm import JiraWebhook
from agents.delivery.sync.pagerduty import PagerDutyUpdates
from agents.delivery.sync.request_tracker import RequestTrackerPoll
from agents.delivery.sync.server import WebhookServer, webhook_app
from agents.delivery.sync.servicenow import ServiceNowPoll
from agents.delivery.sync.zendesk import ZendeskWebhook
from agents.queue.action_writer import MemoryActionWriter
from agents.sinks.alerts import alert_text

from .delivery_support import FakeClock, deliverer, mention
from .helpdesk_webhooks import post, zendesk_headers
from .sink_server_base import SinkServer
from .sink_servers import PagerDutyServer, SlackServer, ZendeskServer
from .ticket_servers import FreshdeskServer, JiraSMServer, RequestTrackerServer, ServiceNowServer

SECRET = "webhook-signing-secret-0123456789"
FD_HEADER = "X-Brand-Listener-Token"


class Receiver:
    """The worker's webhook receiver on a free port, with a memory ledger and action log."""

    def __init__(self, systems: dict[str, WebhookSystem], max_body: int = 64 * 1024) -> None:
        self.ledger = MemoryLedger()
        self.actions = MemoryActionWriter()
        self.resolver = Resolver(self.ledger, self.actions)
        self.server = WebhookServer(webhook_app(systems, self.resolver, max_body), "127.0.0.1", 0)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.port}/sync/{name}"

    def resolved_by(self, mention_id: str) -> str | None:
        state = self.actions.state(mention_id)
        if state is None or state.status != "resolved":
            return None
        last = state.history[-1]
        assert last.kind == "resolve" and last.source == last.by
        return last.by

    def acked(self, mention_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(v) for k, v in self.actions.acks if k == mention_id]


@asynccontextmanager
async def running(server: SinkServer, receiver: Receiver | None = None) -> AsyncIterator[None]:
    await server.start()
    if receiver is not None:
        await receiver.server.start()
    try:
        yield
    finally:
        if receiver is not None:
            await receiver.server.stop()
        await server.stop()


async def ticket(server: SinkServer, ledger: MemoryLedger, n: int) -> tuple[str, str]:
    """Deliver post ``n`` through the real sink; its (Mention id, ticket id)."""
    m = mention(n)
    sink = server.sink()
    try:
        outcome = await deliverer(sink, FakeClock(), ledger).deliver(m)
    finally:
        await sink.close()
    assert outcome.ok and outcome.result is not None
    return m.id, outcome.result.external_id


def zendesk_receiver(**kw: Any) -> Receiver:
    hook = ZendeskWebhook(ZendeskSync(enabled=True, secret=SecretStr(SECRET)), clock=_now)
    return Receiver({"zendesk": hook}, **kw)


def _now() -> float:
    return datetime.now(UTC).timestamp()


@sync
async def test_zendesk_signed_trigger_webhook_resolves_the_item_once() -> None:
    server, receiver = ZendeskServer(), zendesk_receiver()
    async with running(server, receiver):
        mention_id, ticket_id = await ticket(server, receiver.ledger, 1)
        other_id, _ = await ticket(server, receiver.ledger, 2)
        status, answer = await server.solve(ticket_id, receiver.url("zendesk"), SECRET)
        assert (status, answer) == (200, {"resolved": mention_id, "changed": True})
        assert receiver.resolved_by(mention_id) == "zendesk"
        assert receiver.resolved_by(other_id) is None
        acks = receiver.acked(mention_id)
        assert len(acks) == 1 and acks[0]["by"] == "zendesk" and acks[0]["acked_at"] > 0
        status, answer = await server.solve(ticket_id, receiver.url("zendesk"), SECRET, "closed")
        assert (status, answer["changed"]) == (200, False), "a repeat writes no second resolve"
        assert len(receiver.actions.records) == 1


@sync
async def test_zendesk_bad_signature_stale_timestamp_or_open_status_write_nothing() -> None:
    server, receiver = ZendeskServer(), zendesk_receiver(max_body=4096)
    async with running(server, receiver):
        _, ticket_id = await ticket(server, receiver.ledger, 1)
        url = receiver.url("zendesk")
        assert (await server.solve(ticket_id, url, "another-secret-entirely"))[0] == 401
        stale = datetime.now(UTC) - timedelta(hours=1)
        assert (await server.solve(ticket_id, url, SECRET, at=stale))[0] == 401
        status, answer = await server.solve(ticket_id, url, SECRET, status="pending")
        assert status == 200 and "ignored" in answer
        assert (await post(url, b"{}", {}))[0] == 401, "unsigned"
        body = b'{"ticket_id": "1", "status": '
        assert (await post(url, body, zendesk_headers(SECRET, body)))[0] == 400, "bad JSON"
        body = orjson.dumps({"ticket_id": "1; DROP", "status": "solved"})
        assert (await post(url, body, zendesk_headers(SECRET, body)))[0] == 400, "bad id"
        big = orjson.dumps({"ticket_id": ticket_id, "status": "solved", "x": "a" * 8000})
        assert (await post(url, big, zendesk_headers(SECRET, big)))[0] == 413
        unknown = orjson.dumps({"ticket_id": "999", "status": "Solved"})
        status, answer = await post(url, unknown, zendesk_headers(SECRET, unknown))
        assert status == 200 and answer == {"ignored": "unknown ticket"}
        assert receiver.actions.records == [] and receiver.actions.acks == []


@sync
async def test_jira_issue_updated_into_done_resolves_and_a_bad_signature_is_refused() -> None:
    server = JiraSMServer()
    receiver = Receiver({"jira_sm": JiraWebhook(JiraSync(enabled=True, secret=SecretStr(SECRET)))})
    async with running(server, receiver):
        mention_id, key = await ticket(server, receiver.ledger, 1)
        url = receiver.url("jira_sm")
        assert (await server.transition(key, url, "wrong-secret-value"))[0] == 401
        status, answer = await server.transition(key, url, SECRET, "In Progress", "indeterminate")
        assert status == 200 and "ignored" in answer
        assert receiver.actions.records == [] and receiver.actions.acks == []
        status, answer = await server.transition(key, url, SECRET, "Resolved", "done")
        assert (status, answer["resolved"]) == (200, mention_id)
        assert receiver.resolved_by(mention_id) == "jira_sm"
        assert [a["by"] for a in receiver.acked(mention_id)] == ["jira_sm"]


@sync
async def test_freshdesk_automation_webhook_resolves_and_needs_its_secret_header() -> None:
    server = FreshdeskServer()
    hook = FreshdeskWebhook(FreshdeskSync(enabled=True, secret=SecretStr(SECRET)))
    receiver = Receiver({"freshdesk": hook})
    async with running(server, receiver):
        mention_id, ticket_id = await ticket(server, receiver.ledger, 1)
        url = receiver.url("freshdesk")
        assert (await server.set_status(ticket_id, url, (FD_HEADER, "guess"), 5))[0] == 401
        assert (await server.set_status(ticket_id, url, (FD_HEADER, SECRET), 3))[1] == {
            "ignored": "not a solved ticket"
        }
        assert receiver.actions.records == []
        status, answer = await server.set_status(ticket_id, url, (FD_HEADER, SECRET), 4)
        assert (status, answer["resolved"]) == (200, mention_id)
        assert receiver.resolved_by(mention_id) == "freshdesk"
        assert receiver.acked(mention_id)[0]["by"] == "freshdesk"


async def polled(server: SinkServer, poll: Any, solve: Callable[[str], Awaitable[None]]) -> None:
    ledger, actions = MemoryLedger(), MemoryActionWriter()
    resolver = Resolver(ledger, actions)
    solved_id, solved_ticket = await ticket(server, ledger, 1)
    open_id, open_ticket = await ticket(server, ledger, 2)
    await solve(solved_ticket)
    asked = {solved_ticket: solved_id, open_ticket: open_id, "999999": "mastodon:gone"}
    try:
        assert await poll_once(poll, resolver, asked) == 1
        assert await poll_once(poll, resolver, asked) == 0, "already resolved"
    finally:
        await poll.close()
    state = actions.state(solved_id)
    assert state is not None and state.status == "resolved"
    assert state.history[-1].by == state.history[-1].source == poll.name
    assert actions.state(open_id) is None
    assert {k for k, _ in actions.acks} == {solved_id}


@sync
async def test_servicenow_poll_reads_resolved_incidents_with_one_table_query() -> None:
    server = ServiceNowServer()
    async with running(server):

        async def solve(number: str) -> None:
            server.set_state(number, "6")

        await polled(server, ServiceNowPoll(server.sink().settings), solve)
        queries = [r[1] for r in server.requests if r[0] == "GET" and "numberIN" in r[1]]
        assert len(queries) == 2 and "%5EstateIN6,7,8&" in queries[0]


@sync
async def test_request_tracker_poll_reads_ticket_status_and_skips_a_missing_ticket() -> None:
    server = RequestTrackerServer()
    async with running(server):

        async def solve(ticket_id: str) -> None:
            server.set_status(ticket_id, "resolved")

        await polled(server, RequestTrackerPoll(server.sink().settings), solve)
        shown = [r[1] for r in server.requests if r[0] == "GET" and "/ticket/" in r[1]]
        assert "/REST/2.0/ticket/999999" in shown, "asked, answered 404, skipped"


@sync
async def test_pagerduty_acknowledge_and_resolve_use_the_mention_id_as_dedup_key() -> None:
    server = PagerDutyServer()
    async with running(server):
        sink = server.sink()
        clock, ledger = FakeClock(), MemoryLedger()
        m = mention(1)
        assert (await deliverer(sink, clock, ledger).deliver(m)).ok
        updates = deliverer(PagerDutyUpdates(sink), clock, ledger)
        for action in ("acknowledge", "acknowledge", "resolve"):  # at-least-once: repeats pass
            assert (await updates.deliver_alert({"id": m.id, "action": action})).ok
        await sink.close()
    sent = [(e["event_action"], e["dedup_key"]) for e in server.events]
    assert sent == [("trigger", m.id), *[("acknowledge", m.id)] * 2, ("resolve", m.id)]
    assert all(e["routing_key"] == "R0UTINGKEY0000000000000000000000" for e in server.events)


@sync
async def test_a_resolved_spike_alert_resolves_the_pagerduty_alert_and_posts_to_slack() -> None:
    alert = {"id": "spike:acme:complaint:1200", "kind": "spike", "brand": "acme",
             "label": "complaint", "window_start": 1200.0, "window_s": 300.0, "count": 40,
             "baseline_mean": 2.0, "threshold": 5.0}  # fmt: skip
    ended = {"id": alert["id"], "kind": "spike", "status": "resolved", "brand": "acme",
             "label": "complaint", "window_start": 1200.0, "window_s": 300.0,
             "ended_at": 2400.0, "count": 1}  # fmt: skip
    pd, slack = PagerDutyServer(), SlackServer()
    async with running(pd), running(slack):
        clock, ledger = FakeClock(), MemoryLedger()
        for server in (pd, slack):
            sink = server.sink()
            d = deliverer(sink, clock, ledger)
            for record in (alert, ended, ended):  # the repeat is absorbed by the ledger
                assert (await d.deliver_alert(record)).ok
            await sink.close()
        await asyncio.sleep(0)
    assert [(e["event_action"], e["dedup_key"]) for e in pd.events] == [
        ("trigger", alert["id"]),
        ("resolve", alert["id"]),
    ]
    texts = [orjson.loads(r[3])["text"] for r in slack.requests]
    assert len(texts) == 2 and texts[1].startswith("Resolved: complaint spike for acme")
    assert alert_text(ended).startswith("Resolved:")
