"""Delivery end to end: real broker, the worker subprocess with the real model, local sink servers.

The worker runs with three sinks configured through ``AGENTS_SINKS``: a
Zendesk-shaped server (which starts with an outage: 503s, then creates and
loses two answers), a PagerDuty-shaped one (P1 only) and a Slack-shaped one
whose webhook was revoked (403 ``invalid_token``: a permanent failure). Every
queued Mention must become exactly one Zendesk ticket and, when P1, one
PagerDuty alert, through the outage, a replay of the same posts and a worker
restart; every Slack delivery must end in the dead-letter topic as
``sink:slack``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from contract.sink_servers import PagerDutyServer, SinkServer, SlackServer, ZendeskServer

from listener.record import decode_mention, encode_mention
from listener.topics import TopicNames

from .test_pipeline import (  # noqa: F401 - classifier is a fixture
    Tail,
    Worker,
    classifier,
    committed_lag,
    make_posts,
    needing_response,
    produce,
    running,
)

T = TypeVar("T")
FAST_RETRIES = {"retry_base_s": 0.05, "retry_cap_s": 0.5, "breaker_reset_s": 0.5}


class Servers:
    """Sink servers on their own event loop in a background thread."""

    def __init__(self, *servers: SinkServer) -> None:
        self.servers = servers
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn`` on the servers' loop (their state is only touched there)."""

        async def call() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def __enter__(self) -> Servers:
        self.thread.start()
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self.servers:
            asyncio.run_coroutine_threadsafe(server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


@contextmanager
def tails(bootstrap: str, topics: TopicNames) -> Iterator[tuple[Tail, Tail]]:
    queue, dead = Tail(bootstrap, topics.needs_response), Tail(bootstrap, topics.dead_letter)
    try:
        yield queue, dead
    finally:
        queue.close()
        dead.close()


def test_one_ticket_per_mention_through_outage_replay_and_restart(
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
    classifier: Any,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    posts = make_posts("dlv", 15)
    expected = needing_response(classifier, posts)
    assert expected
    records = [(p.id.encode(), encode_mention(p)) for p in posts]
    zendesk, pagerduty, slack = ZendeskServer(), PagerDutyServer(), SlackServer()
    with (
        Servers(zendesk, pagerduty, slack) as servers,
        tails(kafka_bootstrap, topics) as (
            queue,
            dead,
        ),
    ):
        zendesk.script(503, count=8)  # an outage as the first items arrive ...
        zendesk.lose_after_create = 2  # ... then two answers lost after creating the ticket
        sinks = {
            "zendesk": {"url": zendesk.url, "email": "agent@acme.test", "api_token": "tok"},
            "pagerduty": {"url": pagerduty.url, "routing_key": "R0UTINGKEY" + "0" * 22},
            "slack": {"url": f"{slack.url}/services/T000/B000/revoked", "min_interval_s": 0},
        }

        def tickets() -> Counter[str]:
            return servers.run(lambda: Counter(t["external_id"] for t in zendesk.created.values()))

        def pages() -> Counter[str]:
            posts_ = servers.run(lambda: [orjson.loads(r[3]) for r in pagerduty.requests])
            return Counter(p["dedup_key"] for p in posts_)

        def slack_letters() -> Counter[str]:
            letters = [orjson.loads(v) for _, v in dead.records]
            assert {(d["stage"], d["reason"]) for d in letters} <= {("deliver", "sink:slack")}
            return Counter(orjson.loads(d["payload"])["id"] for d in letters)

        def settle(rounds: int, p1: set[str]) -> None:
            queue.until(lambda: len(queue.records) >= rounds * len(expected), timeout=60)
            assert Counter(queue.ids()) == {i: rounds for i in expected}
            wait_for(lambda: set(tickets()) >= expected, 30, "a ticket for every queued id")
            wait_for(lambda: set(pages()) >= p1, 30, "a page for every P1 id")
            # At-least-once: a delivery repeated after a restart may dead-letter an id again,
            # so wait for every id's letter rather than for a total.
            dead.until(lambda: all(slack_letters()[i] >= rounds for i in expected), 30)
            wait_for(
                lambda: committed_lag(kafka_bootstrap, topics.needs_response, deliver_group) == 0,
                30,
                "the delivery group to commit the queue",
            )
            assert tickets() == {i: 1 for i in expected}, "one ticket per Mention id"
            assert pages() == {i: 1 for i in p1}, "one page per P1 Mention id, ledger-guarded"
            letters = slack_letters()
            assert set(letters) == expected, "only queued ids are dead-lettered by slack"
            assert min(letters.values()) >= rounds, "every failed slack delivery is dead-lettered"

        deliver_group = f"{group_id}-deliver"
        worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
        worker.env["AGENTS_SINKS"] = orjson.dumps(sinks).decode()
        worker.env["AGENTS_DELIVERY"] = orjson.dumps(FAST_RETRIES).decode()
        with running(worker):
            produce(kafka_bootstrap, topics.raw, records)
            queue.until(lambda: set(queue.ids()) >= expected, timeout=60)
            queued = [decode_mention(v) for _, v in queue.records]
            p1 = {m.id for m in queued if m.routing is not None and m.routing.priority == "P1"}
            settle(1, p1)
            first_pass = time.monotonic() - started
            produce(kafka_bootstrap, topics.raw, records)  # the same posts again
            settle(2, p1)
            assert worker.stop(signal.SIGTERM) == 0, worker.tail()
        restarted = Worker(tmp_path, kafka_bootstrap, topics, group_id)
        restarted.env = worker.env
        with running(restarted):  # the ledger is read back from its compacted topic
            produce(kafka_bootstrap, topics.raw, records)
            settle(3, p1)
        outage = servers.run(lambda: sum(1 for r in zendesk.requests if r[0] == "POST"))
    assert outage > len(expected), "the outage and lost answers made the sink retry"
    print(
        f"\n{len(expected)} queued ({len(p1)} P1), first pass {first_pass:.1f}s, "
        f"total {time.monotonic() - started:.1f}s, {outage} Zendesk POSTs"
    )
