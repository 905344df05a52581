"""Sync-back on the real broker: helpdesk solved -> item resolved and acked, PagerDuty resolved.

The worker's :class:`~agents.delivery.sync.service.SyncRunner` runs as the
delivery service starts it (a real :class:`KafkaLedger`, the
:class:`ActionWriter`, the webhook receiver, the RT poll and the PagerDuty
consumer), against local servers speaking Zendesk's, Request Tracker's and
PagerDuty's wire formats. Two queue items get tickets through the real sinks
(ledger entries on the compacted ledger topic; the first also pages
PagerDuty); Zendesk then sends its signed "solved" webhook for the first and
RT reports the second resolved to the poll. Both must appear on
``mentions.inbox-actions`` as resolved :class:`ItemState` records (by the
system that solved them), each with an acknowledgement on ``mentions.acks``,
and PagerDuty must receive ``resolve`` for the first item's dedup key.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from contract.delivery_support import FakeClock, deliverer, mention
from contract.sink_servers import PagerDutyServer, ZendeskServer
from contract.ticket_servers import RequestTrackerServer
from prometheus_client import CollectorRegistry

from agents.delivery.ledger import KafkaLedger, ledger_topic
from agents.delivery.metrics import create
from agents.delivery.sync.service import SyncRunner
from agents.queue.action_writer import ActionWriter
from agents.queue.actions import Action, ActionRefused, ItemState, decode_state
from agents.settings import AgentSettings
from integration.helpers import FAST_RETRIES, produce, read_all
from listener.record import encode_mention
from listener.topics import TopicNames

SECRET = "integration-webhook-secret"


def settings(bootstrap: str, topics: TopicNames, servers: dict[str, Any]) -> AgentSettings:
    zendesk, rt, pd = servers["zendesk"], servers["request_tracker"], servers["pagerduty"]
    return AgentSettings.model_validate(
        {
            "bootstrap_servers": bootstrap,
            "topic_prefix": topics.prefix,
            "app_id": f"sync-{uuid.uuid4().hex[:8]}",
            "topic_partitions": 2,
            "delivery": FAST_RETRIES,
            "sinks": {
                "zendesk": {"url": zendesk.url, "email": "agent@acme.test", "api_token": "tok"},
                "request_tracker": {"url": rt.url, "token": "1-14-abcdef"},
                "pagerduty": {"url": pd.url, "routing_key": "R0UTINGKEY0000000000000000000000"},
            },
            "sync": {
                "host": "127.0.0.1",
                "port": 0,
                "zendesk": {"enabled": True, "secret": SECRET},
                "request_tracker": {"enabled": True, "interval_s": 1, "batch": 10},
                "pagerduty": {"enabled": True},
            },
        }
    )


async def until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.3)


def test_solved_tickets_resolve_items_ack_them_and_resolve_the_pagerduty_alert(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    zendesk, rt, pd = ZendeskServer(), RequestTrackerServer(), PagerDutyServer()
    first, second = mention(1), mention(2)
    produce(
        kafka_bootstrap,
        topics.needs_response,
        [(m.id.encode(), encode_mention(m)) for m in (first, second)],
    )

    async def scenario() -> None:
        for server in (zendesk, rt, pd):
            await server.start()
        s = settings(kafka_bootstrap, topics, {s.name: s for s in (zendesk, rt, pd)})
        ledger = KafkaLedger([kafka_bootstrap], ledger_topic(topics.prefix), partitions=2)
        await asyncio.to_thread(ledger.start)
        stop = asyncio.Event()
        runner = SyncRunner(s, ledger, create(CollectorRegistry()))
        tasks: list[asyncio.Task[None]] = []
        try:
            clock = FakeClock()
            for server, m in ((zendesk, first), (pd, first), (rt, second)):
                sink = server.sink()
                assert (await deliverer(sink, clock, ledger).deliver(m)).ok  # type: ignore[arg-type]
                await sink.close()
            tasks = await runner.start(stop)
            ticket = await ledger.get("zendesk", first.id)
            assert ticket is not None
            url = f"http://127.0.0.1:{runner.port}/sync/zendesk"
            assert (await zendesk.solve(ticket, url, "not-the-secret"))[0] == 401
            status, answer = await zendesk.solve(ticket, url, SECRET)
            assert (status, answer["resolved"]) == (200, first.id)
            rt_ticket = await ledger.get("request_tracker", second.id)
            assert rt_ticket is not None
            rt.set_status(rt_ticket, "resolved")

            async def states() -> dict[str, ItemState] | None:
                records = await asyncio.to_thread(read_all, kafka_bootstrap, topics.inbox_actions)
                found = {k.decode(): decode_state(v) for k, v in records if k is not None}
                done = {k: v for k, v in found.items() if v.status == "resolved"}
                return done if len(done) == 2 else None

            resolved = await until(states, 30, "both items resolved on inbox-actions")
            assert resolved[first.id].history[-1].by == "zendesk"
            assert resolved[second.id].history[-1].by == "request_tracker"
            assert resolved[second.id].history[-1].source == "request_tracker"
            acks = await asyncio.to_thread(read_all, kafka_bootstrap, topics.acks)
            by = {k.decode(): orjson.loads(v)["by"] for k, v in acks if k is not None}
            assert by == {first.id: "zendesk", second.id: "request_tracker"}

            async def pd_resolved() -> bool:
                return any(e["event_action"] == "resolve" for e in pd.events)

            await until(pd_resolved, 30, "PagerDuty resolve")
            events = [(e["event_action"], e["dedup_key"]) for e in pd.events]
            assert events == [("trigger", first.id), ("resolve", first.id)], "only paged items"
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await runner.stop()
            ledger.close()
            for server in (zendesk, rt, pd):
                await server.stop()

    asyncio.run(scenario())


def test_action_writers_see_each_others_records_and_a_restart_rebuilds_the_state(
    kafka_bootstrap: str, topics: TopicNames
) -> None:
    def writer() -> ActionWriter:
        w = ActionWriter([kafka_bootstrap], topics.inbox_actions, 2, acks_topic=topics.acks)
        w.start()
        return w

    async def scenario() -> None:
        inbox, worker = writer(), writer()
        try:
            await inbox.act("mastodon:1", Action(kind="claim", by="ann", at=1.0))
            with pytest.raises(ActionRefused, match="claimed by ann"):
                await worker.act("mastodon:1", Action(kind="claim", by="bob", at=2.0))
            state = await worker.act(
                "mastodon:1", Action(kind="resolve", by="zendesk", source="zendesk", at=3.0)
            )
            assert state.holder == "ann" and state.status == "resolved"
        finally:
            inbox.close()
            worker.close()
        restarted = writer()
        try:
            loaded = restarted.state("mastodon:1")
            assert loaded is not None and [a.kind for a in loaded.history] == ["claim", "resolve"]
        finally:
            restarted.close()

    asyncio.run(scenario())
