"""Reliable delivery to one sink: retries with backoff, a circuit breaker, the ledger, metrics.

:class:`Deliverer` wraps one :class:`~agents.sinks.base.Sink`. For each mention it

1. consults the idempotency ledger first when ``sink.uses_ledger`` (the
   target's own deduplication is missing or bounded in time);
2. calls ``sink.deliver`` until it succeeds, retrying
   :class:`~listener.errors.RetryableError` with exponential backoff and full
   jitter (never sooner than the target's Retry-After), while a per-sink
   :class:`CircuitBreaker` keeps a failing target from being hammered;
3. records the external id in the ledger;
4. returns an :class:`Outcome`. A failed outcome (retry budget spent, or a
   fatal/skippable error) is never dropped: the caller dead-letters it with
   reason ``"sink:<name>"`` and :attr:`Outcome.error`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agents.delivery.ledger import Ledger
from agents.delivery.metrics import SinkMetrics
from agents.sinks.base import DeliveryResult, Sink
from listener.errors import FatalError, RetryableError
from listener.record import Mention
from listener.retry import backoff_delay

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long and how often to retry one item.

    Attributes:
        base_s: Backoff before the first retry (upper bound of the jitter window).
        cap_s: Longest backoff between two attempts.
        max_attempts: Attempts (calls to the sink) before giving up.
        max_elapsed_s: Longest time one item may spend in retries, breaker waits included.
    """

    base_s: float = 0.5
    cap_s: float = 60.0
    max_attempts: int = 12
    max_elapsed_s: float = 900.0

    def backoff(self, attempt: int, after: float | None, rand: Callable[[], float]) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter: uniform in ``[0, min(cap, base * 2**(attempt-1))]``, but never
        less than the target's ``after`` (Retry-After).
        """
        return backoff_delay(attempt, after, base=self.base_s, cap=self.cap_s, rand=rand)


class CircuitBreaker:
    """Closed / open / half-open breaker for one sink.

    Closed: calls go through; ``failure_threshold`` consecutive failures open it.
    Open: no calls for ``reset_s``; then half-open. Half-open: one trial call at
    a time; success closes it, failure opens it again.

    Args:
        failure_threshold: Consecutive failures that open the breaker.
        reset_s: How long it stays open before a trial call.
        clock: Monotonic clock (for tests).
    """

    def __init__(
        self, failure_threshold: int = 5, reset_s: float = 30.0, clock: Clock = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half_open"``."""
        if self._opened_at is None:
            return "closed"
        return "open" if self._clock() - self._opened_at < self.reset_s else "half_open"

    def wait_s(self) -> float:
        """Seconds until a call may go through; 0 means call now (and holds the trial slot)."""
        state = self.state
        if state == "closed":
            return 0.0
        if state == "open":
            assert self._opened_at is not None
            return self._opened_at + self.reset_s - self._clock()
        if self._trial:
            return min(1.0, self.reset_s)
        self._trial = True
        return 0.0

    def success(self) -> None:
        """Record a successful call: close the breaker."""
        self._failures, self._opened_at, self._trial = 0, None, False

    def failure(self) -> None:
        """Record a failed call: open the breaker at the threshold or after a failed trial."""
        self._failures += 1
        if self._trial or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
        self._trial = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one mention's delivery to one sink.

    Attributes:
        sink: The sink name.
        result: What the target did, if delivered.
        error: Why it was given up (the caller dead-letters the item), if not.
        attempts: Calls made to the sink.
    """

    sink: str
    result: DeliveryResult | None
    error: BaseException | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        """True if delivered (created now or found existing)."""
        return self.result is not None

    @property
    def reason(self) -> str:
        """The dead-letter reason: ``"sink:<name>"``."""
        return f"sink:{self.sink}"


class Deliverer:
    """Delivers mentions to one sink with retries, a breaker, the ledger and metrics.

    Args:
        sink: The target.
        ledger: Consulted before and written after delivery when ``sink.uses_ledger`` is True.
        metrics: The sink metrics bundle.
        policy: The retry budget and backoff.
        breaker: This sink's breaker (a fresh default one if None).
        sleep: Awaitable sleep (tests pass a fake clock's).
        clock: Monotonic clock.
        rand: Uniform [0, 1) source for the jitter.
    """

    def __init__(
        self,
        sink: Sink,
        ledger: Ledger,
        metrics: SinkMetrics,
        policy: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.sink = sink
        self.ledger = ledger
        self.metrics = metrics
        self.policy = policy or RetryPolicy()
        self.breaker = breaker or CircuitBreaker(clock=clock)
        self._sleep = sleep
        self._clock = clock
        self._rand = rand

    @property
    def name(self) -> str:
        """The wrapped sink's name."""
        return self.sink.name

    async def deliver(self, mention: Mention) -> Outcome:
        """Deliver ``mention`` or give up within the retry budget; never raises for sink errors.

        Returns:
            The outcome; when not :attr:`Outcome.ok`, the caller must dead-letter the item.
        """
        return await self._measured(mention.id, lambda: self.sink.deliver(mention))

    async def deliver_alert(self, alert: Mapping[str, Any]) -> Outcome:
        """Deliver an alert record (key: ``alert["id"]``) with the same retries, breaker, ledger.

        So one alert id is sent once, even when redelivered after a restart; its
        ``"status": "resolved"`` record is keyed ``<id>:resolved``, sent once too.

        Raises:
            TypeError: The sink has no ``deliver_alert``.
        """
        send = getattr(self.sink, "deliver_alert", None)
        if send is None:
            raise TypeError(f"sink {self.name} does not deliver alerts")
        key = str(alert["id"]) + (":resolved" if alert.get("status") == "resolved" else "")
        return await self._measured(key, lambda: send(alert))

    async def _measured(self, key: str, call: Callable[[], Awaitable[DeliveryResult]]) -> Outcome:
        started = self._clock()
        outcome = await self._deliver(key, call, started)
        kind = (
            "dead_letter"
            if outcome.result is None
            else ("created" if outcome.result.created else "existing")
        )
        self.metrics.deliveries.labels(sink=self.name, outcome=kind).inc()
        self.metrics.delivery_seconds.labels(sink=self.name).observe(self._clock() - started)
        return outcome

    async def _deliver(
        self, key: str, call: Callable[[], Awaitable[DeliveryResult]], started: float
    ) -> Outcome:
        if self.sink.uses_ledger:
            existing = await self.ledger.get(self.name, key)
            if existing is not None:
                return Outcome(self.name, DeliveryResult(existing, created=False))
        attempt = 0
        while True:
            wait = self.breaker.wait_s()
            if wait > 0:
                if self._clock() + wait - started > self.policy.max_elapsed_s:
                    error = RetryableError(f"{self.name}: circuit breaker open, retry budget spent")
                    return Outcome(self.name, None, error, attempt)
                self._set_gauge()
                await self._sleep(wait)
                continue
            attempt += 1
            try:
                result = await call()
            except RetryableError as exc:
                self.breaker.failure()
                self._set_gauge()
                delay = self.policy.backoff(attempt, exc.after, self._rand)
                elapsed = self._clock() + delay - started
                if attempt >= self.policy.max_attempts or elapsed > self.policy.max_elapsed_s:
                    log.warning(
                        "%s: giving up on %s after %d attempts: %s",
                        *(self.name, key, attempt, exc),
                    )
                    return Outcome(self.name, None, exc, attempt)
                self.metrics.retries.labels(sink=self.name).inc()
                log.info(
                    "%s: attempt %d for %s failed (%s); retrying in %.2fs",
                    *(self.name, attempt, key, exc, delay),
                )
                await self._sleep(delay)
                continue
            except FatalError as exc:
                # Credentials/config: every item would fail alike. Count it on the
                # breaker (it opens, the gauge alerts) and dead-letter this item.
                self.breaker.failure()
                self._set_gauge()
                log.critical("%s: fatal error for %s: %s", self.name, key, exc)
                return Outcome(self.name, None, exc, attempt)
            except Exception as exc:  # noqa: BLE001 - skippable or a bug: this item is dead-lettered
                self.breaker.success()  # the target answered: it is up
                self._set_gauge()
                log.warning("%s: %s rejected: %r", self.name, key, exc)
                return Outcome(self.name, None, exc, attempt)
            self.breaker.success()
            self._set_gauge()
            if self.sink.uses_ledger:
                await self._record(key, result)
            return Outcome(self.name, result, None, attempt)

    async def _record(self, key: str, result: DeliveryResult) -> None:
        """Write the ledger entry, retrying a few times: the ticket exists whatever happens."""
        for attempt in range(1, 6):
            try:
                await self.ledger.record(self.name, key, result.external_id)
                return
            except Exception as exc:  # noqa: BLE001 - logged; the delivery itself succeeded
                log.error(
                    "%s: ledger write for %s failed (attempt %d): %r",
                    *(self.name, key, attempt, exc),
                )
                await self._sleep(self.policy.backoff(attempt, None, self._rand))
        log.critical(
            "%s: %s delivered as %s but not recorded; a redelivery may duplicate it",
            self.name,
            key,
            result.external_id,
        )

    def _set_gauge(self) -> None:
        is_open = 0.0 if self.breaker.state == "closed" else 1.0
        self.metrics.breaker_open.labels(sink=self.name).set(is_open)
