"""A delivery loop whose partitions move while a sink is down keeps running; one ticket per post.

Real broker, a real HTTP server speaking Zendesk's API, two delivery loops of one
group in this process. Found by the chaos suite (a worker SIGTERMed during a
Zendesk outage, about 1 run in 20 under load): the loop waits for in-flight room
while the sink is down, a second member joins, the first one's partitions are
revoked meanwhile, and the records it had fetched for them were still
submitted, so its next commit named partitions it no longer owned; aiokafka
refused it (``IllegalStateError``) and the worker crashed. Here the wait is made
certain: room for 4 items in flight, the sink down until the second member has
its partitions.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from contract.sink_servers import ZendeskServer
from kafka import KafkaAdminClient
from prometheus_client import CollectorRegistry

from agents.delivery.ledger import KafkaLedger, ledger_topic
from agents.delivery.loop import run_delivery
from agents.delivery.metrics import create as create_sink_metrics
from agents.delivery.service import build_deliverers
from agents.settings import AgentSettings
from integration.helpers import FAST_RETRIES, Servers, committed_lag, make_posts, produce
from listener.record import Routing, encode_mention
from listener.topics import TopicNames

POSTS = 40
IN_FLIGHT = 4


def members_with_partitions(bootstrap: str, group: str) -> int:
    """Members of ``group`` the broker has given at least one partition."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_groups([group])[group]
        assignments = [m["member_assignment"] for m in described["members"]]
        return sum(  # an assignment is '' while the group rebalances
            isinstance(a, dict) and any(t["partitions"] for t in a["assigned_partitions"])
            for a in assignments
        )
    finally:
        admin.close()


def test_a_delivery_loop_survives_losing_partitions_while_a_sink_is_down(
    kafka_bootstrap: str, topics: TopicNames, group_id: str
) -> None:
    posts = [
        p.model_copy(update={"routing": Routing(needs_response=True, priority="P2")})
        for p in make_posts("rebal", POSTS)
    ]
    produce(
        kafka_bootstrap, topics.needs_response, [(p.id.encode(), encode_mention(p)) for p in posts]
    )
    zendesk = ZendeskServer()
    down = threading.Event()
    down.set()
    zendesk.down = down.is_set
    group = f"{group_id}-deliver"
    with Servers(zendesk) as servers:
        settings = AgentSettings.model_validate(
            {
                "kafka": {"bootstrap_servers": kafka_bootstrap, "topic_prefix": topics.prefix},
                "sinks": {
                    "zendesk": {"url": zendesk.url, "email": "agent@acme.test", "api_token": "tok"}
                },
                "delivery": {**FAST_RETRIES, "max_attempts": 10_000},
            }
        )

        def tickets() -> Counter[str]:
            return servers.run(lambda: Counter(t["external_id"] for t in zendesk.created.values()))

        async def scenario() -> list[BaseException | None]:
            stop = asyncio.Event()
            metrics = create_sink_metrics(CollectorRegistry())
            ledgers: list[KafkaLedger] = []

            async def member() -> asyncio.Task[None]:
                # Each member is a worker of its own: its own ledger and sink clients.
                ledger = KafkaLedger(settings.kafka, ledger_topic(topics.prefix), 4)
                await asyncio.to_thread(ledger.start)
                ledgers.append(ledger)
                deliverers = build_deliverers(settings, ledger, metrics)
                return asyncio.create_task(
                    run_delivery(
                        settings.kafka,
                        topics,
                        group,
                        deliverers,
                        ledger,
                        stop,
                        commit_interval_s=0.2,
                        lag_gauge=metrics.delivery_lag,
                        max_in_flight=IN_FLIGHT,
                    )  # fmt: skip
                )

            tasks: list[asyncio.Task[None]] = []

            async def until(check: Any, timeout: float, what: str) -> None:
                for _ in range(int(timeout / 0.2)):
                    for task in tasks:
                        if task.done():
                            raise AssertionError(f"a member died: {task.exception()!r}")
                    if await asyncio.to_thread(check):
                        return
                    await asyncio.sleep(0.2)
                raise AssertionError(f"timed out waiting for {what}")

            try:
                tasks.append(await member())
                # The first member holds every partition and waits for room: the sink is down.
                await until(lambda: servers.run(lambda: len(zendesk.requests)) >= IN_FLIGHT, 60,
                            "the first member's attempts on the down sink")  # fmt: skip
                tasks.append(await member())
                await until(lambda: members_with_partitions(kafka_bootstrap, group) == 2, 60,
                            "the second member to get partitions")  # fmt: skip
                await asyncio.sleep(1.0)  # the first member's loop runs on after its revocation
                down.clear()
                await until(lambda: len(tickets()) == POSTS, 120, "a ticket for every post")
                queue = topics.needs_response
                await until(lambda: committed_lag(kafka_bootstrap, queue, group) == 0, 60,
                            "the group to commit every post")  # fmt: skip
                alive = [not task.done() for task in tasks]
            finally:
                stop.set()
                outcomes = await asyncio.wait_for(
                    asyncio.gather(*tasks, return_exceptions=True), timeout=60
                )
                for ledger in ledgers:
                    ledger.close()
            assert alive == [True, True], f"a member died: {outcomes}"
            return list(outcomes)

        outcomes = asyncio.run(scenario())
        assert outcomes == [None, None], outcomes
        made = tickets()
    assert set(made) == {p.id for p in posts}
    assert max(made.values()) == 1, {i: n for i, n in made.items() if n > 1}
