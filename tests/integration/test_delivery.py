"""Delivery end to end: real broker, the worker subprocess with the real model, local sink servers.

The worker runs with three sinks configured through ``AGENTS_SINKS``: a
Zendesk-shaped server (which starts with an outage: 503s, then creates and
loses two answers), a PagerDuty-shaped one (P1 only) and a Slack-shaped one
whose webhook was revoked (403 ``invalid_token``: a permanent failure). Every
queued Mention must become exactly one Zendesk ticket and, when P1, one
PagerDuty alert, through the outage, a replay of the same posts and a worker
restart; every Slack delivery must end in the dead-letter topic as
``sink:slack``. While Zendesk is down, the worker's /metrics must report the
whole queue as ``brandlistener_delivery_lag`` of the delivery group (read but not
finished by every sink); once everything is delivered, 0 for both delivery loops.
Every wait is bounded.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from contract.sink_servers import PagerDutyServer, SlackServer, ZendeskServer
from prometheus_client.parser import text_string_to_metric_families

from integration.helpers import (
    FAST_RETRIES,
    Servers,
    Tail,
    Worker,
    committed_lag,
    make_posts,
    needing_response,
    produce,
    running,
    wait_for,
)
from listener.record import decode_mention, encode_mention
from listener.topics import TopicNames


@contextmanager
def tails(bootstrap: str, topics: TopicNames) -> Iterator[tuple[Tail, Tail]]:
    queue, dead = Tail(bootstrap, topics.needs_response), Tail(bootstrap, topics.dead_letter)
    try:
        yield queue, dead
    finally:
        queue.close()
        dead.close()


def delivery_lag(worker: Worker) -> dict[tuple[str, str, str], float]:
    """``brandlistener_delivery_lag`` by (group, topic, partition), from the worker's /metrics."""
    status, body = worker.get("/metrics")
    assert status == 200, worker.tail()
    return {
        (s.labels["group"], s.labels["topic"], s.labels["partition"]): s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "brandlistener_delivery_lag"
        for s in family.samples
    }


def test_one_ticket_per_mention_through_outage_replay_and_restart(
    kafka_bootstrap: str,
    topics: TopicNames,
    group_id: str,
    classifier: Any,
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
        zendesk_down = threading.Event()  # an outage as the first items arrive ...
        zendesk.down = zendesk_down.is_set
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

        def queue_lag(worker: Worker) -> float:
            return sum(v for (g, t, _), v in delivery_lag(worker).items() if g == deliver_group)

        def settle(rounds: int, p1: set[str], worker: Worker) -> None:
            # At-least-once: a restart may put an id on the queue once more (its batch was
            # produced but not yet committed), so wait for every id, not for a total.
            queue.until(lambda: all(Counter(queue.ids())[i] >= rounds for i in expected), 60)
            counts = Counter(queue.ids())
            missing = {i: counts[i] for i in expected if counts[i] < rounds}
            assert not missing, f"queued fewer than {rounds} times: {missing}\n{worker.tail(80)}"
            assert set(counts) == expected, "only ids that need a response are queued"
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
            loops = {(deliver_group, topics.needs_response), (f"{group_id}-alerts", topics.alerts)}

            def lag_is_zero() -> bool:
                lags = delivery_lag(worker)
                return {(g, t) for g, t, _ in lags} == loops and set(lags.values()) == {0}

            wait_for(lag_is_zero, 10, f"a delivery lag of 0 for {loops} on /metrics")
            assert tickets() == {i: 1 for i in expected}, "one ticket per Mention id"
            assert pages() == {i: 1 for i in p1}, "one page per P1 Mention id, ledger-guarded"
            letters = slack_letters()
            assert set(letters) == expected, "only queued ids are dead-lettered by slack"
            assert min(letters.values()) >= rounds, "every failed slack delivery is dead-lettered"

        deliver_group = f"{group_id}-deliver"
        worker = Worker(tmp_path, kafka_bootstrap, topics, group_id)
        worker.env["AGENTS_SINKS"] = orjson.dumps(sinks).decode()
        # Enough attempts for every item to outlast the outage (the breaker paces them).
        delivery = {**FAST_RETRIES, "max_attempts": 40}
        worker.env["AGENTS_DELIVERY"] = orjson.dumps(delivery).decode()
        with running(worker):
            zendesk_down.set()
            produce(kafka_bootstrap, topics.raw, records)
            queue.until(lambda: set(queue.ids()) >= expected, timeout=60)
            queued = [decode_mention(v) for _, v in queue.records]
            p1 = {m.id for m in queued if m.routing is not None and m.routing.priority == "P1"}
            # Nothing is finished by every sink: the whole queue is the delivery group's lag.
            wait_for(
                lambda: queue_lag(worker) == len(expected),
                30,
                f"a delivery lag of {len(expected)} on /metrics while Zendesk is down",
            )
            zendesk_down.clear()
            settle(1, p1, worker)
            first_pass = time.monotonic() - started
            produce(kafka_bootstrap, topics.raw, records)  # the same posts again
            settle(2, p1, worker)
            assert worker.stop(signal.SIGTERM) == 0, worker.tail()
        restarted = Worker(tmp_path, kafka_bootstrap, topics, group_id)
        restarted.env = worker.env
        with running(restarted):  # the ledger is read back from its compacted topic
            produce(kafka_bootstrap, topics.raw, records)
            settle(3, p1, restarted)
        outage = servers.run(lambda: sum(1 for r in zendesk.requests if r[0] == "POST"))
    assert outage > len(expected), "the outage and lost answers made the sink retry"
    print(
        f"\n{len(expected)} queued ({len(p1)} P1), first pass {first_pass:.1f}s, "
        f"total {time.monotonic() - started:.1f}s, {outage} Zendesk POSTs"
    )
