"""Sync-back pieces without a network: settings, signatures, payloads, resolver, poll loop."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any, ClassVar

import orjson
import pytest
from async_support import sync
from pydantic import SecretStr

from agents.delivery.ledger import MemoryLedger
from agents.delivery.sync.base import Resolver, Solved, run_poll
from agents.delivery.sync.config import FreshdeskSync, JiraSync, SyncConfig, ZendeskSync
from agents.delivery.sync.freshdesk import FreshdeskWebhook
from agents.delivery.sync.jira_sm import JiraWebhook
from agents.delivery.sync.jira_sm import signature as jira_signature
from agents.delivery.sync.pagerduty import event_action
from agents.delivery.sync.zendesk import ZendeskWebhook
from agents.delivery.sync.zendesk import signature as zendesk_signature
from agents.queue.action_writer import MemoryActionWriter
from agents.queue.actions import Action, ActionKind, ItemState
from agents.settings import AgentSettings

SECRET = "0123456789abcdef"
ZENDESK_SINK = {"url": "https://acme.zendesk.com", "email": "a@acme.test", "api_token": "t"}


def test_sync_is_off_by_default_and_needs_its_sink_and_a_secret() -> None:
    assert AgentSettings().sync.enabled() == []
    with pytest.raises(ValueError, match="without that sink"):
        AgentSettings.model_validate({"sync": {"zendesk": {"enabled": True, "secret": SECRET}}})
    with pytest.raises(ValueError, match="needs a secret"):
        SyncConfig.model_validate({"jira_sm": {"enabled": True}})
    settings = AgentSettings.model_validate(
        {
            "sinks": {"zendesk": ZENDESK_SINK},
            "sync": {"zendesk": {"enabled": True, "secret": SECRET}, "port": 0},
        }
    )
    assert settings.sync.webhooks() == ["zendesk"] and settings.sync.polls() == []
    assert SECRET not in repr(settings.sync)


def test_sync_block_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_SINKS", orjson.dumps({"zendesk": ZENDESK_SINK}).decode())
    monkeypatch.setenv("AGENTS_SYNC__ZENDESK__ENABLED", "true")
    monkeypatch.setenv("AGENTS_SYNC__ZENDESK__SECRET", SECRET)
    assert AgentSettings().sync.zendesk.enabled


def test_zendesk_signature_is_checked_in_full_and_its_timestamp_must_be_recent() -> None:
    hook = ZendeskWebhook(ZendeskSync(enabled=True, secret=SecretStr(SECRET)), lambda: 1.7e9)
    stamp = "2023-11-14T22:13:20Z"  # 1.7e9
    body = b'{"ticket_id": "7", "status": "Solved"}'
    digest = hmac.new(SECRET.encode(), stamp.encode() + body, hashlib.sha256).digest()
    sig = base64.b64encode(digest).decode()
    assert sig == zendesk_signature(SECRET, stamp, body)
    headers = {"X-Zendesk-Webhook-Signature": sig, "X-Zendesk-Webhook-Signature-Timestamp": stamp}
    assert hook.verify(headers, body)
    assert not hook.verify(headers, body + b" ")
    assert not hook.verify({**headers, "X-Zendesk-Webhook-Signature": sig[:-2]}, body)
    assert not hook.verify({"X-Zendesk-Webhook-Signature": sig}, body)
    late = ZendeskWebhook(ZendeskSync(enabled=True, secret=SecretStr(SECRET)), lambda: 1.7e9 + 301)
    assert not late.verify(headers, body)
    odd = "not a time"
    odd_sig = zendesk_signature(SECRET, odd, body)
    headers_odd = {
        "X-Zendesk-Webhook-Signature": odd_sig,
        "X-Zendesk-Webhook-Signature-Timestamp": odd,
    }
    assert not hook.verify(headers_odd, body)
    assert hook.solved({"ticket_id": 7, "status": "Solved", "external_id": "x:1"}) == Solved(
        "7", "solved", "x:1"
    )
    assert hook.solved({"ticket_id": "7", "status": "open"}) is None
    with pytest.raises(ValueError):
        hook.solved({"ticket_id": "../7", "status": "solved"})
    with pytest.raises(ValueError):
        hook.solved(["not", "an", "object"])


def test_jira_signature_and_done_category() -> None:
    hook = JiraWebhook(JiraSync(enabled=True, secret=SecretStr(SECRET)))
    body = b"{}"
    assert hook.verify({"X-Hub-Signature": jira_signature(SECRET, body)}, body)
    assert not hook.verify({"X-Hub-Signature": jira_signature("x" * 16, body)}, body)
    assert not hook.verify({}, body)

    def event(category: str, name: str = "jira:issue_updated", key: str = "SD-12") -> Any:
        status = {"name": "Resolved", "statusCategory": {"key": category}}
        return {"webhookEvent": name, "issue": {"key": key, "fields": {"status": status}}}

    assert hook.solved(event("done")) == Solved("SD-12", "Resolved")
    assert hook.solved(event("indeterminate")) is None
    assert hook.solved(event("done", "jira:issue_created")) is None
    with pytest.raises(ValueError):
        hook.solved(event("done", key="SD-1 OR 1=1"))


def test_freshdesk_secret_header_and_status_names_or_numbers() -> None:
    hook = FreshdeskWebhook(FreshdeskSync(enabled=True, secret=SecretStr(SECRET)))
    assert hook.verify({"X-Brand-Listener-Token": SECRET}, b"")
    assert not hook.verify({"X-Brand-Listener-Token": SECRET[:-1]}, b"")
    assert not hook.verify({}, b"")
    wrapped = {"freshdesk_webhook": {"ticket_id": "42", "ticket_status": "Closed"}}
    assert hook.solved(wrapped) == Solved("42", "closed")
    assert hook.solved({"ticket_id": 42, "ticket_status": 4}) == Solved("42", "resolved")
    assert hook.solved({"ticket_id": 42, "ticket_status": "Pending"}) is None


def _action(kind: ActionKind, by: str = "ann") -> Action:
    return Action(kind=kind, by=by, at=10.0)


def test_pagerduty_event_follows_the_latest_action() -> None:
    def after(*kinds: ActionKind) -> ItemState:
        return ItemState(id="x:1", history=tuple(_action(k) for k in kinds))

    assert event_action(ItemState(id="x:1")) is None
    assert event_action(after("claim")) == "acknowledge"
    assert event_action(after("first_response")) == "acknowledge"
    assert event_action(after("claim", "take_over")) == "acknowledge"
    assert event_action(after("claim", "resolve")) == "resolve"
    assert event_action(after("resolve", "correct_label")) is None
    assert event_action(after("release")) is None


@sync
async def test_resolver_writes_one_resolve_and_acks_every_report() -> None:
    ledger, actions = MemoryLedger(), MemoryActionWriter()
    await ledger.record("zendesk", "x:1", "7")
    resolver = Resolver(ledger, actions, clock=lambda: 50.0)
    ticket = Solved("7", "solved")
    assert await resolver.mention_of("zendesk", ticket) == "x:1"
    assert await resolver.mention_of("zendesk", Solved("8", "solved", "x:hint")) == "x:hint"
    assert await resolver.mention_of("freshdesk", ticket) is None
    assert await resolver.resolve("zendesk", "x:1", ticket)
    assert not await resolver.resolve("zendesk", "x:1", ticket)
    state = actions.state("x:1")
    assert state is not None and state.status == "resolved" and state.first_response_at == 50.0
    assert state.history[-1].note == "zendesk ticket 7 solved"
    assert len(actions.records) == 1
    assert [orjson.loads(v) for _, v in actions.acks] == [{"acked_at": 50.0, "by": "zendesk"}] * 2
    await actions.act("x:1", _action("reopen"))
    assert await resolver.resolve("zendesk", "x:1", ticket), "a reopened item resolves again"


class Poll:
    name: ClassVar[str] = "request_tracker"

    def __init__(self, solved: set[str]) -> None:
        self.asked: list[list[str]] = []
        self.solved_ids = solved
        self.fail = False

    async def solved(self, external_ids: list[str]) -> list[Solved]:
        self.asked.append(external_ids)
        if self.fail:
            self.fail = False
            raise RuntimeError("RT is down")
        return [Solved(e, "resolved") for e in external_ids if e in self.solved_ids]

    async def close(self) -> None:
        return None


@sync
async def test_poll_loop_reads_open_tickets_in_bounded_round_robin_batches() -> None:
    ledger, actions = MemoryLedger(), MemoryActionWriter()
    for n in range(5):
        await ledger.record("request_tracker", f"x:{n}", str(100 + n))
    await ledger.record("servicenow", "x:9", "INC9")
    poll = Poll({"101", "104"})
    poll.fail = True
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_poll(poll, Resolver(ledger, actions), stop, interval_s=0.001, batch=2)
    )
    while len(poll.asked) < 6:
        await asyncio.sleep(0.005)
    stop.set()
    await task
    assert all(len(batch) <= 2 for batch in poll.asked)
    assert {"100", "101", "102", "103", "104"} <= {e for b in poll.asked for e in b}
    assert "INC9" not in {e for b in poll.asked for e in b}, "another sink's tickets"
    assert {m for m, _ in actions.records} == {"x:1", "x:4"}
    later = {e for b in poll.asked[-2:] for e in b}
    assert not later & {"101", "104"}, "resolved items are not polled again"
