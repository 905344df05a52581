"""Backoff, circuit breaker and Deliverer logic, on a fake clock (no network, no sleeping)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import ClassVar

import pytest
from fake_clock import FakeClock
from prometheus_client import CollectorRegistry

from agents.delivery.ledger import MemoryLedger
from agents.delivery.metrics import SinkMetrics, create
from agents.delivery.policy import CircuitBreaker, Deliverer, RetryPolicy
from agents.sinks.base import DeliveryResult
from agents.sinks.memory import MemorySink
from listener.errors import FatalError, RetryableError, SkippableError
from listener.record import Mention


def mention(n: int = 1) -> Mention:
    return Mention.create(source="test", native_id=str(n), text=f"post {n}")


def deliverer(
    sink: MemorySink, clock: FakeClock, policy: RetryPolicy | None = None
) -> tuple[Deliverer, SinkMetrics, CollectorRegistry]:
    registry = CollectorRegistry()
    metrics = create(registry)
    d = Deliverer(
        sink,
        MemoryLedger(),
        metrics,
        policy,
        CircuitBreaker(failure_threshold=3, reset_s=10, clock=clock),
        sleep=clock.sleep,
        clock=clock,
        rand=lambda: 1.0,
    )
    return d, metrics, registry


def retryable(n: int, after: float | None = None) -> Iterator[Exception]:
    return iter([RetryableError("503", after=after) for _ in range(n)])


def test_backoff_full_jitter_is_bounded_by_exponential_cap() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    assert [policy.backoff(a, None, lambda: 1.0) for a in range(1, 6)] == [0.5, 1, 2, 4, 4]
    assert policy.backoff(3, None, lambda: 0.0) == 0.0
    assert policy.backoff(3, None, lambda: 0.25) == 0.5


def test_backoff_never_sooner_than_retry_after() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    assert policy.backoff(1, 7.0, lambda: 1.0) == 7.0
    assert policy.backoff(5, 1.0, lambda: 1.0) == 4.0


def test_breaker_opens_after_threshold_then_half_open_trial() -> None:
    clock = FakeClock(1000.0)
    breaker = CircuitBreaker(failure_threshold=2, reset_s=10, clock=clock)
    assert breaker.state == "closed" and breaker.wait_s() == 0
    breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open" and breaker.wait_s() == pytest.approx(10)
    clock.now += 10
    assert breaker.state == "half_open"
    assert breaker.wait_s() == 0  # the one trial
    assert breaker.wait_s() > 0  # others wait for it
    breaker.failure()  # trial failed: open again
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.wait_s() == 0
    breaker.success()
    assert breaker.state == "closed" and breaker.wait_s() == 0


def test_retries_until_success_honouring_retry_after() -> None:
    clock = FakeClock(1000.0)
    sink = MemorySink(failures=retryable(2, after=5.0))
    d, _, registry = deliverer(sink, clock, RetryPolicy(base_s=0.5, max_attempts=5))
    outcome = asyncio.run(d.deliver(mention()))
    assert outcome.ok and outcome.attempts == 3 and outcome.result is not None
    assert outcome.result.created
    assert clock.sleeps == [5.0, 5.0]
    assert registry.get_sample_value("brandlistener_sink_retries_total", {"sink": "memory"}) == 2
    assert (
        registry.get_sample_value(
            "brandlistener_sink_deliveries_total", {"sink": "memory", "outcome": "created"}
        )
        == 1
    )


def test_budget_spent_returns_failure_with_error() -> None:
    clock = FakeClock(1000.0)
    sink = MemorySink(failures=retryable(100))
    d, _, registry = deliverer(sink, clock, RetryPolicy(max_attempts=4, max_elapsed_s=1e6))
    outcome = asyncio.run(d.deliver(mention()))
    assert not outcome.ok and isinstance(outcome.error, RetryableError)
    assert outcome.reason == "sink:memory"
    assert sink.calls == 4
    labels = {"sink": "memory", "outcome": "dead_letter"}
    assert registry.get_sample_value("brandlistener_sink_deliveries_total", labels) == 1


def test_breaker_opens_and_waits_instead_of_hammering() -> None:
    clock = FakeClock(1000.0)
    sink = MemorySink(failures=retryable(3))
    d, _, registry = deliverer(sink, clock, RetryPolicy(base_s=0.1, max_attempts=10))
    outcome = asyncio.run(d.deliver(mention()))
    assert outcome.ok and sink.calls == 4
    assert any(s > 9 for s in clock.sleeps)  # waited out the open breaker
    assert registry.get_sample_value("brandlistener_sink_breaker_open", {"sink": "memory"}) == 0


def test_elapsed_budget_covers_breaker_waits() -> None:
    clock = FakeClock(1000.0)
    sink = MemorySink(failures=retryable(100))
    d, _, _ = deliverer(sink, clock, RetryPolicy(base_s=0.1, max_attempts=100, max_elapsed_s=30))
    outcome = asyncio.run(d.deliver(mention()))
    assert not outcome.ok
    assert clock.now - 1000.0 <= 30


@pytest.mark.parametrize("error", [FatalError("401 bad token"), SkippableError("rejected", "422")])
def test_non_retryable_errors_fail_at_once(error: Exception) -> None:
    clock = FakeClock(1000.0)
    sink = MemorySink(failures=iter([error]))
    d, _, _ = deliverer(sink, clock)
    outcome = asyncio.run(d.deliver(mention()))
    assert not outcome.ok and outcome.error is error and sink.calls == 1 and not clock.sleeps


class LedgerSink(MemorySink):
    name: ClassVar[str] = "noidem"
    uses_ledger: ClassVar[bool] = True

    async def deliver(self, mention: Mention) -> DeliveryResult:
        await super().deliver(mention)
        return DeliveryResult(f"T-{self.calls}", created=True)


def test_ledger_prevents_second_create_for_non_idempotent_sink() -> None:
    clock = FakeClock(1000.0)
    sink = LedgerSink()
    d, _, registry = deliverer(sink, clock)
    first = asyncio.run(d.deliver(mention()))
    second = asyncio.run(d.deliver(mention()))
    assert sink.calls == 1
    assert first.result == DeliveryResult("T-1", True)
    assert second.result == DeliveryResult("T-1", False)
    labels = {"sink": "noidem", "outcome": "existing"}
    assert registry.get_sample_value("brandlistener_sink_deliveries_total", labels) == 1


def test_memory_ledger_roundtrip() -> None:
    ledger = MemoryLedger()
    assert asyncio.run(ledger.get("jira_sm", "x:1")) is None
    asyncio.run(ledger.record("jira_sm", "x:1", "SD-7"))
    assert asyncio.run(ledger.get("jira_sm", "x:1")) == "SD-7"
    assert asyncio.run(ledger.get("freshdesk", "x:1")) is None
    assert ledger.entries == {"jira_sm:x:1": "SD-7"}
