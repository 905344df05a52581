"""Every sink in the registry against a local server speaking its target's wire format.

For each sink: the request carries the documented shape and auth; the same
Mention delivered twice creates exactly one ticket/alert; 429 + Retry-After is
honoured; an outage (503s, then recovery) loses and duplicates nothing; bad
credentials are a fatal error with a clear message, given up at once.
Retries run on a fake clock, so nothing here really waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agents.delivery.config import DeliverySettings
from agents.delivery.ledger import MemoryLedger
from agents.delivery.metrics import create
from agents.delivery.policy import CircuitBreaker, Deliverer, Outcome
from agents.sinks import SINKS
from listener.errors import FatalError
from listener.record import Mention

from .delivery_support import FakeClock, delivered, deliverer, mention
from .sink_servers import SERVERS, SinkServer

NAMES = sorted(name for name in SINKS if name != "memory")
CASES = sorted(SERVERS)
"""Every sink's server, and each further wire format of a sink (``slack-api``)."""
NATIVE_DEDUP = ("zendesk", "pagerduty", "webhook", "servicenow")
"""Targets that deduplicate by themselves (key, dedup_key, webhook-id, correlation_id)."""


def test_every_registered_sink_has_a_server() -> None:
    assert set(NAMES) == {server.name for server in SERVERS.values()}


def run(name: str, scenario: Callable[[SinkServer], Awaitable[None]]) -> None:
    async def main() -> None:
        server = SERVERS[name]()
        await server.start()
        try:
            await scenario(server)
        finally:
            await server.stop()

    asyncio.run(main())


async def deliver_with(sink: Any, clock: FakeClock, m: Mention, ledger: MemoryLedger) -> Outcome:
    try:
        return await deliverer(sink, clock, ledger).deliver(m)
    finally:
        await sink.close()
        await sink.close()  # close() is safe twice


@pytest.mark.parametrize("name", CASES)
def test_request_shape_and_auth(name: str) -> None:
    async def scenario(server: SinkServer) -> None:
        m = mention()
        sink = server.sink()
        assert sink.accepts(m)
        try:
            result = await sink.deliver(m)
        finally:
            await sink.close()
        assert result.created and result.external_id
        assert len(server.created) == 1
        server.check(next(iter(server.created.values())), m.id)

    run(name, scenario)


def counted(m: Mention, count: int) -> Mention:
    """``m`` as the route stage re-produces it when a copy arrives (agents/pipeline/dedup.py)."""
    signals = {**m.signals, "duplicates": {"of": m.id, "count": count}}
    return m.model_copy(update={"signals": signals})


@pytest.mark.parametrize("update", [False, True], ids=["redelivery", "count-update"])
@pytest.mark.parametrize("name", CASES)
def test_same_mention_twice_creates_one(name: str, update: bool) -> None:
    """A redelivery (restart, rebalance) or the original re-produced with a copy count:
    a fresh sink instance, the durable ledger kept."""

    async def scenario(server: SinkServer) -> None:
        clock, ledger, m = FakeClock(), MemoryLedger(), mention()
        first = await deliver_with(server.sink(), clock, m, ledger)
        again = counted(m, 5) if update else m
        second = await deliver_with(server.sink(), clock, again, ledger)
        assert first.ok and second.ok and first.result and second.result
        assert first.result.created
        if SINKS[server.name].uses_ledger:  # else the receiver dedupes on webhook-id
            assert not second.result.created
            assert second.result.external_id == first.result.external_id
        assert len(server.created) == 1

    run(name, scenario)


@pytest.mark.parametrize("name", NATIVE_DEDUP)
def test_target_dedups_without_ledger_even_when_a_response_is_lost(name: str) -> None:
    """The target created the object but its answer was lost (503): the retry creates nothing."""

    async def scenario(server: SinkServer) -> None:
        clock, m = FakeClock(), mention()
        server.lose_after_create = 1
        outcome = await deliver_with(server.sink(), clock, m, MemoryLedger())
        again = await deliver_with(server.sink(), clock, m, MemoryLedger())
        assert outcome.ok and outcome.attempts == 2 and again.ok
        assert len(server.created) == 1

    run(name, scenario)


@pytest.mark.parametrize("name", CASES)
def test_429_retry_after_is_honoured(name: str) -> None:
    async def scenario(server: SinkServer) -> None:
        clock = FakeClock()
        server.script(429, retry_after="7")
        outcome = await deliver_with(server.sink(clock=clock), clock, mention(), MemoryLedger())
        assert outcome.ok and outcome.attempts == 2
        assert clock.sleeps and clock.sleeps[0] >= 7
        assert len(server.created) == 1

    run(name, scenario)


@pytest.mark.parametrize("name", CASES)
def test_outage_then_recovery_loses_and_duplicates_nothing(name: str) -> None:
    """An outage compressed in time: 503 for the next 12 requests, then healthy."""

    async def scenario(server: SinkServer) -> None:
        clock, ledger = FakeClock(), MemoryLedger()
        server.script(503, count=12)
        sink = server.sink()
        d = deliverer(sink, clock, ledger)
        mentions = [mention(n) for n in range(5)]
        try:
            outcomes = await asyncio.gather(*(d.deliver(m) for m in mentions))
            again = await asyncio.gather(*(d.deliver(m) for m in mentions))
        finally:
            await sink.close()
        assert all(o.ok for o in outcomes + again)
        assert sorted(delivered(server)) == ["0", "1", "2", "3", "4"]  # each exactly once
        assert any(s >= 4 for s in clock.sleeps)  # the breaker opened and was waited out

    run(name, scenario)


@pytest.mark.parametrize("name", CASES)
def test_a_five_minute_outage_with_the_default_retry_budget_loses_and_duplicates_nothing(
    name: str,
) -> None:
    """503 for 300 s of (fake) time, then healthy; the worker's default retry budget and breaker."""

    async def scenario(server: SinkServer) -> None:
        clock, ledger, defaults = FakeClock(), MemoryLedger(), DeliverySettings()
        server.down = lambda: clock.now < 300
        sink = server.sink(clock=clock)
        breaker = CircuitBreaker(defaults.breaker_failures, defaults.breaker_reset_s, clock=clock)
        d = Deliverer(
            sink,
            ledger,
            create(CollectorRegistry()),
            defaults.policy(),
            breaker,
            sleep=clock.sleep,
            clock=clock,
        )
        mentions = [mention(n) for n in range(5)]
        try:
            outcomes = await asyncio.gather(*(d.deliver(m) for m in mentions))
            again = await asyncio.gather(*(d.deliver(m) for m in mentions))  # a redelivery
        finally:
            await sink.close()
        assert [o.ok for o in outcomes] == [True] * 5, [str(o.error) for o in outcomes]
        assert all(o.ok for o in again)
        assert clock.now >= 300, "delivered only once the outage was over"
        assert sorted(delivered(server)) == ["0", "1", "2", "3", "4"]  # each exactly once
        failed = sum(1 for r in server.requests if r[0] == "POST") - len(server.created)
        assert failed <= 30, f"the breaker kept the outage's load low ({failed} refused calls)"

    run(name, scenario)


@pytest.mark.parametrize("name", CASES)
def test_bad_credentials_are_fatal_with_a_clear_error(name: str) -> None:
    async def scenario(server: SinkServer) -> None:
        clock = FakeClock()
        outcome = await deliver_with(server.sink(good_auth=False), clock, mention(), MemoryLedger())
        assert not outcome.ok and isinstance(outcome.error, FatalError)
        assert outcome.attempts == 1 and not clock.sleeps
        sink = server.name
        assert outcome.reason == f"sink:{sink}"
        assert sink in str(outcome.error) and any(c in str(outcome.error) for c in ("40", "auth"))
        assert not server.created

    run(name, scenario)
