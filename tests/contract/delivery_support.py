"""What the sink contract tests share: a sample queued Mention, a fake clock, a fast Deliverer."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fake_clock import FakeClock
from prometheus_client import CollectorRegistry

from agents.delivery.ledger import MemoryLedger
from agents.delivery.metrics import create
from agents.delivery.policy import CircuitBreaker, Deliverer, RetryPolicy
from listener.record import Author, Classification, Mention, Routing

from .sink_servers import SinkServer

POST = re.compile(r"mastodon:10(\d+)|example\.test/p/(\d+)")


def mention(n: int = 1) -> Mention:
    scores = {"complaint": 0.9, "praise": 0.02, "question": 0.05, "other": 0.03}
    due = datetime.now(UTC) + timedelta(hours=1)
    return Mention.create(
        source="mastodon",
        native_id=f"10{n}",
        text=f"@acme my order {n} never arrived and support ignores me",
        url=f"https://example.test/p/{n}",
        author=Author(id=f"u{n}", handle=f"angry{n}", name="Angry Customer"),
        brands=("acme",),
        classification=Classification(label="complaint", scores=scores, model="kw@1"),
        routing=Routing(needs_response=True, priority="P1", team="support", sla_due_at=due,
                        rule_ids=("complaint-p1",)),
    )  # fmt: skip


def delivered(server: SinkServer) -> list[str]:
    """The post numbers each created object is about (a Slack digest is about several)."""
    numbers: list[str] = []
    for obj in server.created.values():
        text = orjson.dumps(obj).decode()
        numbers += sorted({a or b for a, b in POST.findall(text)})
    return numbers


def deliverer(sink: Any, clock: FakeClock, ledger: MemoryLedger | None = None) -> Deliverer:
    return Deliverer(
        sink,
        ledger if ledger is not None else MemoryLedger(),
        create(CollectorRegistry()),
        RetryPolicy(base_s=0.5, cap_s=8, max_attempts=20, max_elapsed_s=3600),
        CircuitBreaker(failure_threshold=3, reset_s=5, clock=clock),
        sleep=clock.sleep,
        clock=clock,
    )
